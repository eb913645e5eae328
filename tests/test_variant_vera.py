"""VeRA: hand-computed update, init, defaults, shared frozen bases and the PEFT mapping."""

import copy
import math

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import (
    adapter_layers,
    adapter_parameters,
    adapter_state_dict,
    build_params,
    get_variant,
    inject,
)
from lorabench.variants.vera import VeRALinear, VeRAParams


class Net(nn.Module):
    """Three differently shaped layers, so every layer takes a different slice of the bases."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(6, 9)
        self.down = nn.Linear(9, 4)
        self.sq = nn.Linear(4, 4)

    def forward(self, x):
        return self.sq(torch.tanh(self.down(torch.tanh(self.up(x)))))


def test_defaults_and_registration():
    assert VeRAParams() == VeRAParams(d_initial=0.1, projection_prng_key=0)  # PEFT's defaults
    assert build_params("vera", None) == VeRAParams()
    spec = get_variant("vera")
    assert spec.family == "rank" and spec.merges and spec.peft
    layer = VeRALinear(nn.Linear(5, 4), rank=8, alpha=16)
    assert layer.scaling == 2.0  # Eq. (26): alpha / r


def test_hand_computed_delta_and_forward():
    # in = 3, out = 2, r = 2, alpha = 4: s = 2.
    layer = VeRALinear(nn.Linear(3, 2), rank=2, alpha=4.0)
    with torch.no_grad():
        layer.shared.vera_A.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))
        layer.shared.vera_B.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
        layer.vera_lambda_d.copy_(torch.tensor([2.0, -1.0]))
        layer.vera_lambda_b.copy_(torch.tensor([0.5, -1.0]))
    # diag(d) A = [[2, 0, 4], [0, -1, 1]]; B diag(d) A = [[2, -2, 6], [6, 1, 11]];
    # diag(b) . = [[1, -1, 3], [-6, -1, -11]]; times s = 2:
    expected = torch.tensor([[2.0, -2.0, 6.0], [-12.0, -2.0, -22.0]])
    assert torch.allclose(layer.delta_weight(), expected, atol=1e-6)
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, torch.tensor([[7.0, -21.0]]), atol=1e-5)  # [2+2+3, -12+2-11]


def test_initial_update_is_zero_with_d_initial():
    layer = VeRALinear(nn.Linear(7, 5), rank=3, alpha=6, params=VeRAParams(d_initial=0.25))
    assert torch.equal(layer.vera_lambda_d, torch.full((3,), 0.25))
    assert torch.equal(layer.vera_lambda_b, torch.zeros(5))
    assert torch.count_nonzero(layer.delta_weight()) == 0
    x = torch.randn(4, 7)
    assert torch.equal(layer(x), layer.base(x))
    # Only b and d are trained: r + out per layer, bases frozen.
    assert [n for n, _ in layer.adapter_named_parameters()] == ["vera_lambda_d", "vera_lambda_b"]


def test_bases_are_seeded_kaiming_uniform_and_equal_peft_defaults():
    peft = pytest.importorskip("peft")
    model = Net()
    inject(model, "vera", targets=("up", "down", "sq"), rank=3, alpha=6)
    shared = model.adapter_shared
    assert shared.vera_A.shape == (3, 9) and shared.vera_B.shape == (9, 3)  # max in, max out
    assert shared.vera_A.abs().max() <= math.sqrt(6 / 9)
    assert shared.vera_B.abs().max() <= math.sqrt(6 / 3)
    again = Net()
    inject(again, "vera", targets=("up", "down", "sq"), rank=3, alpha=6)
    assert torch.equal(again.adapter_shared.vera_A, shared.vera_A)
    other = Net()
    inject(other, "vera", targets=("up", "down", "sq"), rank=3, alpha=6,
           params={"projection_prng_key": 1})  # fmt: skip
    assert not torch.equal(other.adapter_shared.vera_A, shared.vera_A)
    # Same seed, same draws as PEFT's VeRA: even its own bases agree with ours.
    theirs = peft.get_peft_model(Net(), peft.VeraConfig(r=3, target_modules=["up", "down", "sq"]))
    assert torch.equal(theirs.base_model.vera_A["default"], shared.vera_A)
    assert torch.equal(theirs.base_model.vera_B["default"], shared.vera_B)


def test_layers_slice_the_one_shared_pair():
    model = Net()
    inject(model, "vera", targets=("up", "down", "sq"), rank=3, alpha=6)
    randomise(model)
    shared = model.adapter_shared
    for name, layer in adapter_layers(model):
        assert layer.shared is shared, name
        a = shared.vera_A[:, : layer.in_features]
        b = shared.vera_B[: layer.out_features]
        expected = 2.0 * torch.diag(layer.vera_lambda_b) @ b @ torch.diag(layer.vera_lambda_d) @ a
        assert torch.allclose(layer.delta_weight(), expected, atol=1e-5), name
    # A reference, not a copy: changing the shared bases changes every layer.
    with torch.no_grad():
        shared.vera_A.zero_()
    assert all(torch.count_nonzero(m.delta_weight()) == 0 for _, m in adapter_layers(model))


def test_shared_bases_registered_once():
    model = Net()
    report = inject(model, "vera", targets=("up", "down", "sq"), rank=3, alpha=6)
    buffers = [n for n, _ in model.named_buffers(remove_duplicate=False)]
    assert buffers == ["adapter_shared.vera_A", "adapter_shared.vera_B"]
    state = model.state_dict()
    assert [k for k in state if "vera_A" in k or "vera_B" in k] == buffers
    # Frozen bases are buffers: trainable = d and b of each layer, each once (optimizer too).
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(trainable) == sorted(
        f"{layer}.vera_lambda_{v}" for layer in ("up", "down", "sq") for v in "db"
    )
    assert report.adapter_params == (3 + 9) + (3 + 4) + (3 + 4)
    opt = torch.optim.AdamW(adapter_parameters(model))
    ids = [id(p) for group in opt.param_groups for p in group["params"]]
    assert len(ids) == len(set(ids)) == 6
    assert set(adapter_state_dict(model)) == set(trainable)
    # A standalone layer owns its bases (a group of one), again once.
    layer = VeRALinear(nn.Linear(3, 2), rank=2, alpha=4)
    assert [n for n, _ in layer.named_buffers()] == ["own_shared.vera_A", "own_shared.vera_B"]


def test_fresh_inject_gives_the_base_output():
    model = Net()
    x = torch.randn(5, 6)
    with torch.no_grad():
        before = model(x)
        inject(model, "vera", targets=("up", "down", "sq"), rank=3, alpha=6)
        assert torch.equal(model(x), before)


def test_peft_export_folds_scaling_into_b_for_uneven_shapes():
    pytest.importorskip("peft")
    from lorabench.variants.peft_export import to_peft

    base = Net()
    ours = copy.deepcopy(base)
    inject(ours, "vera", targets=("up", "down", "sq"), rank=3, alpha=7.5)
    randomise(ours)
    x = torch.randn(4, 6)
    theirs = to_peft(ours, lambda: copy.deepcopy(base), "vera", rank=3, alpha=7.5, dropout=0.0,
                     params=VeRAParams())  # fmt: skip
    with torch.no_grad():
        assert (theirs(x) - ours(x)).abs().max().item() <= 1e-6
    peft_down = theirs.base_model.model.down
    assert torch.allclose(peft_down.vera_lambda_b["default"], ours.down.vera_lambda_b * 2.5)
    assert torch.equal(peft_down.vera_lambda_d["default"], ours.down.vera_lambda_d)


def test_variants_command_says_the_scaling_differs_from_peft():
    from typer.testing import CliRunner

    from lorabench.cli import app

    spec = get_variant("vera")
    assert "alpha/r times PEFT's update" in spec.notes
    result = CliRunner().invoke(app, ["variants"], terminal_width=200)
    assert result.exit_code == 0
    assert f"vera: {spec.notes}" in result.output
    assert "2x PEFT's at the default alpha = 2r" in result.output
