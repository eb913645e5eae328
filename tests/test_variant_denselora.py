"""DenseLoRA (Eq. (33)): shared A^S, B^S per module kind, a module-specific r x r C."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import adapter_parameters, build_params, get_variant, inject
from lorabench.variants.denselora import DenseLoRALinear


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)


class Net(nn.Module):
    def __init__(self, layers: int = 3, dim: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(Block(dim) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.tanh(block.value(block.query(x)))
        return x


def test_registration_and_defaults():
    spec = get_variant("denselora")
    assert spec.family == "rank" and spec.merges and spec.peft_export is None
    # No hyperparameters of its own: the paper's r = 192, alpha = 384 are the job's rank/alpha.
    assert dataclasses.fields(build_params("denselora", None)) == ()
    assert "r=192" in spec.summary and "alpha=384" in spec.summary
    layer = DenseLoRALinear(nn.Linear(4, 4), rank=192, alpha=384)
    assert layer.scaling == 2.0


def test_hand_computed_delta_and_forward():
    layer = DenseLoRALinear(nn.Linear(3, 2), rank=2, alpha=4.0)  # s = alpha / r = 2
    with torch.no_grad():
        layer.group.lora_A.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))
        layer.lora_C.copy_(torch.tensor([[1.0, 1.0], [0.0, 2.0]]))
        layer.group.lora_B.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
    # B C = [[1, 5], [3, 1]];  B C A = [[1, 5, -3], [3, 1, 5]];  times s = 2.
    expected = torch.tensor([[2.0, 10.0, -6.0], [6.0, 2.0, 10.0]])
    assert torch.allclose(layer.delta_weight(), expected)
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, torch.tensor([[-11.0, 9.0]]), atol=1e-6)


def test_initialisation_follows_official_code():
    layer = DenseLoRALinear(nn.Linear(64, 32), rank=16, alpha=32)
    # Encoder A^S and C kaiming-uniform (a=sqrt(5)), decoder B^S zero: zero initial update.
    assert torch.count_nonzero(layer.group.lora_B) == 0
    for weight, fan_in in ((layer.group.lora_A, 64), (layer.lora_C, 16)):
        bound = 1 / math.sqrt(fan_in)
        assert 0.9 * bound < weight.abs().max().item() <= bound
    assert torch.count_nonzero(layer.delta_weight()) == 0


def test_a_and_b_shared_per_kind_c_per_module():
    model = Net(layers=3)
    report = inject(model, "denselora", targets=("query", "value"), rank=4, alpha=8)
    queries = [b.query for b in model.blocks]
    values = [b.value for b in model.blocks]
    assert all(q.group is queries[0].group for q in queries)
    assert all(v.group is values[0].group for v in values)
    assert queries[0].group is not values[0].group
    assert len({id(q.lora_C) for q in queries + values}) == 6
    shared = list(model.adapter_shared.parameters())
    assert len(shared) == 4 and all(p.requires_grad for p in shared)  # trainable, as officially
    ids = [id(p) for p in model.parameters()]
    assert all(ids.count(id(p)) == 1 for p in shared)
    assert sum(k.startswith("adapter_shared.") for k in model.state_dict()) == 4
    # Six C matrices plus one (A^S, B^S) pair per kind.
    assert report.adapter_params == 6 * 4 * 4 + 2 * 4 * (8 + 8)


def test_shared_factors_train_from_every_member():
    model = Net(layers=3)
    inject(model, "denselora", targets=("query",), rank=4, alpha=8)
    randomise(model)
    params = adapter_parameters(model)
    assert len(params) == 3 + 2
    opt = torch.optim.SGD(params, lr=0.1)
    group = model.blocks[0].query.group
    before = group.lora_A.detach().clone()
    # A loss through the third block's query alone still moves the shared encoder.
    model.blocks[2].query(torch.randn(4, 8)).pow(2).sum().backward()
    assert model.blocks[0].query.lora_C.grad is None
    opt.step()
    assert not torch.equal(group.lora_A, before)


def test_update_rank_is_bounded_by_r():
    layer = DenseLoRALinear(nn.Linear(12, 10), rank=3, alpha=6)
    randomise(nn.Sequential(layer))
    with torch.no_grad():
        assert torch.linalg.matrix_rank(layer.delta_weight()).item() == 3


@pytest.mark.parametrize(("in_f", "out_f", "tokens"), [(6, 4, 2), (6, 4, 9), (4, 6, 9)])
def test_every_matmul_order_gives_the_dense_update(in_f, out_f, tokens):
    layer = get_variant("denselora").layer_cls(nn.Linear(in_f, out_f), rank=3, alpha=6.0)
    randomise(nn.Sequential(layer))
    x = torch.randn(tokens, in_f)
    with torch.no_grad():
        expected = x @ layer.delta_weight().T
        assert torch.allclose(layer.adapter_forward(x), expected, atol=1e-5)
