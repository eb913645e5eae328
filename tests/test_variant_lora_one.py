"""LoRA-One: B A = top-r SVD of -G normalised by sigma_1 over gamma (hand-computed), the base
weight untouched, the initial update along -G, a first step that beats zero-init LoRA, and
prepare/restore determinism."""

import io
import math

import pytest
import torch
from helpers import HAND_G, HAND_W, hand_model, linear_loss, prepare_context
from torch import nn

from lorabench.variants import (
    InvalidVariantParams,
    adapter_layers,
    adapter_parameters,
    build_params,
    get_variant,
    inject,
)
from lorabench.variants.lora_one import LoRAOneLinear, LoRAOneParams, lora_one_factors

SPEC = get_variant("lora-one")


def context(model, batches, loss, **params):
    return prepare_context(model, batches, loss, LoRAOneParams(**params))


# --- hand-computed case -----------------------------------------------------------------------
# G (out=4, in=3) = 4 e1 f1^T - 1 e3 f2^T + 0.5 e4 f3^T, so -G has singular values 4, 1, 0.5
# with v1 = f1, u1 = -e1 and v2 = f2, u2 = e3 (each v's largest entry positive).


def test_hand_computed_factors_and_initial_update():
    model = hand_model()
    inject(model, "lora-one", targets=("0",), rank=2, alpha=4 * math.sqrt(2))  # s = 4
    batch = {"x": torch.eye(3), "t": torch.tensor(HAND_G).T}
    state = SPEC.prepare(context(model, [batch], linear_loss, steps=2, gamma=4.0))
    layer = model[0]
    # Eq. (104): S / sigma_1 = [1, 1/4]; Eqs. (105)-(106): sqrt, / sqrt(4) -> [1/2, 1/4].
    assert torch.allclose(
        layer.lora_A, torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.25, 0.0]]), atol=1e-6
    )
    assert torch.allclose(
        layer.lora_B, torch.tensor([[-0.5, 0.0], [0.0, 0.0], [0.0, 0.25], [0.0, 0.0]]), atol=1e-6
    )
    # B A = -G_2 / (gamma sigma_1) = -G_2 / 16; s B A = [[-1, 0, 0], 0, [0, 0.25, 0], 0].
    expected_delta = torch.zeros(4, 3)
    expected_delta[0, 0], expected_delta[2, 1] = -1.0, 0.25
    assert torch.allclose(layer.delta_weight(), expected_delta, atol=1e-6)
    assert torch.equal(layer.base.weight, torch.tensor(HAND_W))  # no weight manipulation
    assert torch.equal(state["0.lora_B"], layer.lora_B)
    x = torch.tensor([[1.0, -2.0, 3.0]])
    with torch.no_grad():
        # W x = [-3, -5, 5, -3]; s B A x = [-1, 0, -0.5, 0].
        assert torch.allclose(model(x), torch.tensor([[-4.0, -5.0, 4.5, -3.0]]), atol=1e-6)


def test_factors_pad_when_rank_exceeds_the_gradient_rank_and_skip_a_zero_gradient():
    lora_a, lora_b = lora_one_factors(torch.tensor(HAND_G), rank=4, gamma=1.0)
    assert lora_a.shape == (4, 3) and lora_b.shape == (4, 4)
    assert torch.count_nonzero(lora_a[3]) == 0 and torch.count_nonzero(lora_b[:, 3]) == 0
    assert torch.allclose(lora_b @ lora_a, -torch.tensor(HAND_G) / 4.0, atol=1e-6)  # full rank
    assert lora_one_factors(torch.zeros(4, 3), rank=2, gamma=1.0) is None


def test_defaults_and_registration():
    assert LoRAOneParams() == LoRAOneParams(steps=64, gamma=128.0)  # paper, line ~1273
    assert build_params("lora-one", None) == LoRAOneParams()
    assert SPEC.family == "initialization" and SPEC.merges and SPEC.peft
    assert SPEC.prepare is not None and SPEC.restore is not None
    assert not LoRAOneLinear.modifies_base and LoRAOneLinear.zero_init
    layer = LoRAOneLinear(nn.Linear(5, 4), rank=4, alpha=16)
    assert layer.scaling == pytest.approx(8.0)  # rsLoRA's alpha / sqrt(r), as LoRA-One runs
    for bad in ({"steps": 0}, {"gamma": 0.0}, {"gamma": float("inf")}):
        with pytest.raises(InvalidVariantParams):
            build_params("lora-one", bad)


# --- regression problem with a known gradient ----------------------------------------------------
IN, OUT, N, RANK, ALPHA = 10, 8, 64, 2, 4.0


def regression():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(N, IN, generator=gen)
    y = x @ torch.randn(OUT, IN, generator=gen).T
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, OUT, bias=False))
    residual = x @ model[0].weight.detach().T - y
    grad = residual.T @ x / N  # d/dW of 0.5 * mean ||x W^T - y||^2
    batches = [{"x": x[i : i + 16], "y": y[i : i + 16]} for i in range(0, N, 16)]
    return model, batches, {"x": x, "y": y}, grad


def mse(model, batch):
    return 0.5 * (model(batch["x"]) - batch["y"]).pow(2).sum(1).mean()


def cosine(a, b):
    return (a.flatten() @ b.flatten() / (a.norm() * b.norm())).item()


def test_initial_update_is_the_normalised_top_r_negative_gradient():
    model, batches, full, grad = regression()
    original = model[0].weight.detach().clone()
    inject(model, "lora-one", targets=("0",), rank=RANK, alpha=ALPHA)
    with torch.no_grad():
        start = mse(model, full).item()
    SPEC.prepare(context(model, batches, mse, steps=4))
    layer = model[0]
    u, s, vh = torch.linalg.svd(grad)
    top_r = u[:, :RANK] @ torch.diag(s[:RANK]) @ vh[:RANK]
    delta = layer.delta_weight().detach()
    assert cosine(delta, -top_r) > 0.99
    # Exactly one gradient step of size s / (gamma sigma_1) along G_r (Eqs. (104)-(106)).
    assert torch.allclose(delta, -layer.scaling / (128.0 * s[0]) * top_r, atol=1e-6)
    assert torch.equal(layer.base.weight, original)
    with torch.no_grad():
        assert mse(model, full).item() < start  # the initialisation itself is a descent step


@pytest.mark.parametrize("plain", ["lora", "rslora"])
def test_first_step_loss_drop_beats_zero_init_lora(plain):
    # At a small learning rate, the regime the paper credits these inits for: LoRA-One's start
    # is a fixed gradient step, while zero-init LoRA's first step is lr-bound and off-subspace.
    drops = {}
    for variant in ("lora-one", plain):
        model, batches, full, _ = regression()
        with torch.no_grad():
            start = mse(model, full).item()
        torch.manual_seed(0)
        inject(model, variant, targets=("0",), rank=RANK, alpha=ALPHA)
        if variant == "lora-one":
            SPEC.prepare(context(model, batches, mse, steps=4))
        opt = torch.optim.SGD(adapter_parameters(model), lr=1e-3)
        mse(model, full).backward()
        opt.step()
        with torch.no_grad():
            drops[variant] = start - mse(model, full).item()
    assert drops[plain] > 0
    assert drops["lora-one"] > 2 * drops[plain]


# --- prepare / restore ---------------------------------------------------------------------------
class Net(nn.Module):
    """Two adapted layers with dropout between them, and one the loss never reaches."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(6, 9)
        self.drop = nn.Dropout(0.3)
        self.down = nn.Linear(9, 4)
        self.unused = nn.Linear(6, 3)

    def forward(self, x):
        return self.down(self.drop(torch.tanh(self.up(x))))


def net_and_batches():
    model = Net()
    inject(model, "lora-one", targets=("up", "down", "unused"), rank=3, alpha=6.0)
    gen = torch.Generator().manual_seed(1)
    batches = [
        {"x": torch.randn(5, 6, generator=gen), "y": torch.randn(5, 4, generator=gen)}
        for _ in range(3)
    ]
    return model, batches


def prepared(seed, **params):
    model, batches = net_and_batches()
    torch.manual_seed(seed)
    state = SPEC.prepare(context(model, batches, mse, **params))
    return model, batches, state


def test_prepare_is_deterministic_under_the_seed():
    _, _, first = prepared(0, steps=5)
    _, _, again = prepared(0, steps=5)
    _, _, other = prepared(1, steps=5)
    assert len(first) == 6 and first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)  # dropout uses the seed


def test_restore_reproduces_the_prepared_model_exactly():
    model, _, state = prepared(0, steps=5)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh, _ = net_and_batches()
    SPEC.restore(fresh, torch.load(buffer, weights_only=True), LoRAOneParams(steps=5))
    ours, theirs = model.state_dict(), fresh.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    with pytest.raises(ValueError, match="lacks"):
        SPEC.restore(fresh, {k: v for k, v in state.items() if not k.startswith("up.")}, None)


def test_every_layer_starts_with_spectral_norm_s_over_gamma_and_the_base_untouched():
    model, batches = net_and_batches()
    fresh = {n: layer.lora_A.detach().clone() for n, layer in adapter_layers(model)}
    bases = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    torch.manual_seed(0)
    SPEC.prepare(context(model, batches, mse, steps=3, gamma=32.0))
    for name, layer in adapter_layers(model):
        if name == "unused":
            # No gradient reaches it: plain LoRA's init stays (A as drawn, B = 0).
            assert torch.equal(layer.lora_A, fresh[name])
            assert torch.count_nonzero(layer.lora_B) == 0
        else:
            top = torch.linalg.matrix_norm(layer.delta_weight().detach(), ord=2)
            assert top.item() == pytest.approx(layer.scaling / 32.0, rel=1e-5)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, bases[name]), name
    assert all(p.grad is None for p in model.parameters())
