"""MoRA: square r^ x r^ matrix between parameter-free compression and decompression."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lorabench.variants import InvalidVariantParams, build_params, get_variant, inject
from lorabench.variants.mora import MoRALinear, MoRAParams, mora_rank

SHARING = MoRAParams(compression="sharing")
M_HAND = [[1.0, 2.0], [3.0, 4.0]]


def layer_with_m(in_f, out_f, rank, params=None, m=M_HAND):
    layer = MoRALinear(nn.Linear(in_f, out_f), rank=rank, alpha=16.0, params=params)
    with torch.no_grad():
        layer.mora_M.copy_(torch.tensor(m))
    return layer


def test_defaults_and_spec():
    assert build_params("mora", None) == MoRAParams(compression="rope")
    assert build_params("mora", {"compression": "sharing"}) == SHARING
    with pytest.raises(InvalidVariantParams, match="compression"):
        build_params("mora", {"compression": "truncation"})
    spec = get_variant("mora")
    assert spec.family == "rank" and spec.merges and spec.peft_export is None


def test_r_hat_matches_lora_budget():
    # r^ = round(sqrt((in + out) r)); the rotation needs it even.
    assert mora_rank(4096, 4096, 8, "sharing") == mora_rank(4096, 4096, 8, "rope") == 256
    assert mora_rank(384, 384, 8, "sharing") == 78  # sqrt(6144) = 78.38
    assert mora_rank(384, 384, 4, "sharing") == 55  # sqrt(3072) = 55.43
    assert mora_rank(384, 384, 4, "rope") == 54
    assert mora_rank(3, 4, 1, "sharing") == 3  # sqrt(7) = 2.65 rounds up
    assert mora_rank(1, 1, 1, "sharing") == 1 and mora_rank(1, 1, 1, "rope") == 2
    layer = MoRALinear(nn.Linear(384, 384), rank=8, alpha=16)
    assert layer.mora_M.shape == (78, 78)
    assert MoRALinear.expected_param_count(384, 384, 8) == 78 * 78 <= 8 * (384 + 384)


def test_hand_computed_sharing():
    # in 3, out 3, r 1 -> r^ = round(sqrt 6) = 2, k = 2 blocks: [x0, x1], [x2, x0] (cyclic pad).
    # Compress (sum): c = [x0 + x2, x0 + x1]; o = M c; decompress repeats o: y = [o0, o1, o0].
    # o0 = 1 (x0 + x2) + 2 (x0 + x1) = 3 x0 + 2 x1 + 1 x2; o1 = 7 x0 + 4 x1 + 3 x2.
    layer = layer_with_m(3, 3, 1, SHARING)
    expected = torch.tensor([[3.0, 2.0, 1.0], [7.0, 4.0, 3.0], [3.0, 2.0, 1.0]])
    assert torch.allclose(layer.delta_weight(), expected)
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, torch.tensor([[1.5, 4.5, 1.5]]), atol=1e-6)


def test_hand_computed_rope():
    # in 3, out 4, r 1 -> round(sqrt 7) = 3 -> even 2; blocks v0 = [x0, x1] (position 0, no
    # rotation) and v1 = [x2, x0] rotated by angle 1 (theta_0 = 1):
    # z1 = [c x2 - s x0, c x0 + s x2], c = cos 1, s = sin 1; y = [M v0, M z1].
    # Row 2: 1 (c x2 - s x0) + 2 (c x0 + s x2) = (2c - s) x0 + (c + 2s) x2
    # Row 3: 3 (c x2 - s x0) + 4 (c x0 + s x2) = (4c - 3s) x0 + (3c + 4s) x2
    layer = layer_with_m(3, 4, 1)
    expected = torch.tensor(
        [
            [1.0, 2.0, 0.0],
            [3.0, 4.0, 0.0],
            [0.2391336, 0.0, 2.2232443],
            [-0.3632037, 0.0, 4.9867909],
        ]
    )
    assert torch.allclose(layer.delta_weight(), expected, atol=1e-6)
    x = torch.tensor([[1.0, -1.0, 0.5]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, (expected @ x.T).T, atol=1e-6)
    assert torch.allclose(got, torch.tensor([[-1.0, -1.0, 1.3507557, 2.1301917]]), atol=1e-6)


def official_mora(x, m, in_f, out_f, compression):
    """Independent transcription of MoRA's official _apply_mora (types 1 and 6)."""
    r = m.shape[0]
    k = in_f // r
    if in_f % r:
        x = torch.cat([x, x[..., : r - in_f % r]], dim=-1)
        k += 1
    blocks = x.view(*x.shape[:-1], k, r)
    if compression == "sharing":
        out = blocks.sum(dim=-2) @ m.T
        reps = -(-out_f // r)
        return torch.cat([out] * reps, dim=-1)[..., :out_f]
    inv = 1.0 / (10000 ** (torch.arange(0, r, 2).float() / r))
    freqs = torch.outer(torch.arange(k).float(), inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    rot = torch.cat((-blocks[..., r // 2 :], blocks[..., : r // 2]), dim=-1)
    out = ((blocks * emb.cos() + rot * emb.sin()) @ m.T).reshape(*x.shape[:-1], -1)[..., :out_f]
    if out.shape[-1] < out_f:
        reps = -(-out_f // out.shape[-1])
        out = torch.cat([out] * reps, dim=-1)[..., :out_f]
    return out


@pytest.mark.parametrize("compression", ["rope", "sharing"])
@pytest.mark.parametrize("shape", [(64, 64, 8), (96, 32, 2), (20, 50, 3), (30, 7, 1)])
def test_matches_official_algorithm(compression, shape):
    in_f, out_f, rank = shape
    layer = MoRALinear(nn.Linear(in_f, out_f), rank=rank, alpha=8, params=MoRAParams(compression))
    randomise(nn.Sequential(layer))
    x = torch.randn(2, 3, in_f)
    with torch.no_grad():
        ours = layer.adapter_forward(x)
        ref = official_mora(x, layer.mora_M, in_f, out_f, compression)
        dense = F.linear(x, layer.delta_weight())
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(dense, ref, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(in_f=st.integers(1, 9), out_f=st.integers(1, 9), rank=st.integers(1, 6))
def test_sharing_efficient_path_equals_dense_and_merges(in_f, out_f, rank):
    layer = MoRALinear(nn.Linear(in_f, out_f), rank=rank, alpha=3, params=SHARING)
    randomise(nn.Sequential(layer))
    x = torch.randn(4, in_f)
    with torch.no_grad():
        out = layer(x)
        assert torch.allclose(out, layer.base(x) + F.linear(x, layer.delta_weight()), atol=1e-5)
        weight = layer.base.weight.clone()
        layer.merge()
        assert torch.allclose(layer(x), out, atol=1e-5)
        layer.unmerge()
    assert torch.allclose(layer.base.weight, weight, atol=1e-6)


def test_zero_init_and_scaling_ignores_alpha():
    layer = MoRALinear(nn.Linear(12, 10), rank=2, alpha=64)
    assert torch.count_nonzero(layer.mora_M) == 0
    assert torch.count_nonzero(layer.delta_weight()) == 0
    assert layer.scaling == 1.0
    x = torch.randn(3, 12)
    with torch.no_grad():
        assert torch.equal(layer(x), layer.base(x))


@pytest.mark.parametrize("compression", ["rope", "sharing"])
def test_update_rank_exceeds_lora_rank(compression):
    torch.manual_seed(0)
    layer = MoRALinear(nn.Linear(64, 64), rank=1, alpha=2, params=MoRAParams(compression))
    r_hat = layer.mora_rank
    assert r_hat == (10 if compression == "rope" else 11)  # round(sqrt(128)) = 11
    with torch.no_grad():
        layer.mora_M.normal_()
    rank = torch.linalg.matrix_rank(layer.delta_weight()).item()
    # Same budget as a rank-1 LoRA (128 params), yet the update reaches rank r^ or more.
    assert rank >= r_hat > 1
    assert layer.mora_M.numel() <= 1 * (64 + 64)


def test_index_buffers_not_in_state_dict_and_inject_count():
    model = nn.Sequential(nn.Linear(20, 12))
    report = inject(model, "mora", targets=("0",), rank=2, alpha=4)
    r_hat = mora_rank(20, 12, 2)
    assert r_hat == 8 and report.adapter_params == 64
    assert set(model.state_dict()) == {"0.base.weight", "0.base.bias", "0.mora_M"}
    assert math.isclose(model[0].scaling, 1.0)
