"""RaSA (Eq. (27)): local ranks plus a rank pool shared by modules of the same kind."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import (
    InvalidVariantParams,
    adapter_layers,
    adapter_parameters,
    build_params,
    get_variant,
    inject,
)
from lorabench.variants.rasa import RaSALinear, RaSAParams


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)


class Net(nn.Module):
    """`layers` blocks with "query" and "value", plus a "query" of another shape in `head`."""

    def __init__(self, layers: int = 3, dim: int = 8, out: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(Block(dim) for _ in range(layers))
        self.head = nn.Module()
        self.head.query = nn.Linear(dim, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.tanh(block.value(block.query(x)))
        return self.head.query(x)


def test_registration_and_paper_defaults():
    spec = get_variant("rasa")
    assert spec.family == "rank" and spec.merges and spec.peft_export is None
    # Paper: "The shared rank k is set to 1".
    assert build_params("rasa", None) == RaSAParams(shared_rank=1)
    with pytest.raises(InvalidVariantParams, match="shared_rank"):
        build_params("rasa", {"shared_rank": 0})


def test_hand_computed_delta_and_forward():
    # r = 2, k = 1, one module: one local rank and a pool of k * L = 1 shared rank.
    layer = RaSALinear(nn.Linear(3, 2), rank=2, alpha=4.0)
    group = layer.group
    assert layer.lora_A.shape == (1, 3) and group.lora_A.shape == (1, 3)
    assert group.lora_D.shape == (1, 2)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0, 2.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0], [3.0]]))
        group.lora_A.copy_(torch.tensor([[0.0, 1.0, -1.0]]))
        group.lora_B.copy_(torch.tensor([[2.0], [-1.0]]))
        group.lora_D.copy_(torch.tensor([[2.0, 0.5]]))
    # 2 * [[1, 0, 2], [3, 0, 6]] + 0.5 * [[0, 2, -2], [0, -1, 1]]
    expected = torch.tensor([[2.0, 1.0, 3.0], [6.0, -0.5, 12.5]])
    assert torch.allclose(layer.delta_weight(), expected)
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, torch.tensor([[2.5, 12.75]]), atol=1e-6)


def test_initial_update_is_zero_and_d_carries_alpha():
    model = Net(layers=2)
    x = torch.randn(5, 8)
    before = model(x)
    inject(model, "rasa", targets=("query", "value"), rank=4, alpha=16)
    assert torch.equal(model(x), before)
    layer = model.blocks[1].query
    group = layer.group
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(group.lora_B) == 0
    bound = 1 / math.sqrt(8)
    for a in (layer.lora_A, group.lora_A):
        assert 0 < a.abs().max().item() <= bound
    # LoRAFactory: alpha/2 over the r-k = 3 local ranks, alpha/2 over the k*L = 2 pooled ones.
    assert layer.scaling == 1.0
    d = group.lora_D[layer.member]
    assert torch.allclose(d, torch.tensor([16 / 6] * 3 + [16 / 4] * 2))


def test_groups_by_kind_and_shape_and_registers_shared_once():
    model = Net(layers=3)
    report = inject(model, "rasa", targets=("query", "value"), rank=3, alpha=6)
    shared = model.adapter_shared
    assert sorted(shared.groups) == ["g_query_8x4", "g_query_8x8", "g_value_8x8"]
    queries = [b.query for b in model.blocks]
    assert all(q.group is shared.groups["g_query_8x8"] for q in queries)
    assert [q.member for q in queries] == [0, 1, 2]
    assert model.head.query.group is shared.groups["g_query_8x4"]
    assert model.blocks[0].value.group is shared.groups["g_value_8x8"]
    # Pool of k * L = 3 shared ranks for the 3 query modules, 1 for the lone head query.
    assert shared.groups["g_query_8x8"].lora_A.shape == (3, 8)
    assert shared.groups["g_query_8x4"].lora_B.shape == (4, 1)

    # Once in parameters(), state_dict and the optimizer; never under a layer's name.
    group_params = list(shared.parameters())
    assert len(group_params) == 9
    all_ids = [id(p) for p in model.parameters()]
    assert all(all_ids.count(id(p)) == 1 for p in group_params)
    keys = [k for k in model.state_dict() if "lora_" in k]
    assert sum(k.startswith("adapter_shared.") for k in keys) == 9
    assert all("lora_D" not in k for k in keys if not k.startswith("adapter_shared."))
    params = adapter_parameters(model)
    assert len({id(p) for p in params}) == len(params)
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    assert sum(len(g["params"]) for g in opt.param_groups) == 9 + 2 * 7

    # LoRA's count at rank r for every module, plus one diagonal D of width r-k+kL each.
    lora = 6 * 3 * (8 + 8) + 3 * (8 + 4)
    d = 6 * (2 + 3) + 1 * (2 + 1)
    assert report.adapter_params == lora + d


def test_gradient_reaches_pool_from_every_member_but_only_own_d_row():
    model = Net(layers=3)
    inject(model, "rasa", targets=("query",), rank=2, alpha=4)
    randomise(model)
    group = model.blocks[0].query.group
    out = model.blocks[1].query(torch.randn(4, 8))
    out.pow(2).sum().backward()
    assert group.lora_A.grad.abs().sum() > 0 and group.lora_B.grad.abs().sum() > 0
    row_has_grad = group.lora_D.grad.abs().sum(dim=1) > 0
    assert row_has_grad.tolist() == [False, True, False]


@pytest.mark.parametrize("shared_rank", [1, 2])
def test_effective_rank_is_r_minus_k_plus_kl(shared_rank):
    layers, rank = 4, 3
    model = Net(layers=layers, dim=16)
    inject(model, "rasa", targets=("query",), rank=rank, alpha=6,
           params={"shared_rank": shared_rank})  # fmt: skip
    randomise(model)
    expected = rank - shared_rank + shared_rank * layers
    assert expected > rank
    for block in model.blocks:
        layer = block.query
        assert layer.effective_rank == expected
        with torch.no_grad():
            delta = layer.delta_weight()
        assert torch.linalg.matrix_rank(delta).item() == expected


def test_all_ranks_shared_when_k_equals_r():
    layer = RaSALinear(nn.Linear(5, 4), rank=2, alpha=4.0, params=RaSAParams(shared_rank=2))
    assert layer.lora_A is None and layer.lora_B is None
    assert RaSALinear.expected_param_count(5, 4, 2, RaSAParams(shared_rank=2)) == 0
    assert torch.allclose(layer.group.lora_D, torch.full((1, 2), 1.0))  # alpha / (2 k L)
    randomise(nn.Sequential(layer))
    x = torch.randn(3, 5)
    with torch.no_grad():
        assert torch.allclose(layer(x), layer.base(x) + x @ layer.delta_weight().T, atol=1e-6)


def test_shared_rank_above_rank_is_rejected():
    with pytest.raises(ValueError, match="cannot exceed the rank"):
        inject(Net(), "rasa", targets=("query",), rank=2, alpha=4, params={"shared_rank": 3})
    with pytest.raises(ValueError, match="cannot exceed the rank"):
        RaSALinear(nn.Linear(4, 4), rank=1, alpha=2.0, params=RaSAParams(shared_rank=2))


def test_merge_folds_every_member_exactly():
    model = Net(layers=3)
    inject(model, "rasa", targets=("query", "value"), rank=3, alpha=6)
    randomise(model)
    x = torch.randn(6, 8)
    with torch.no_grad():
        unmerged = model(x)
        for _, layer in adapter_layers(model):
            layer.merge()
        merged = model(x)
    assert (merged - unmerged).abs().max().item() <= 1e-5
