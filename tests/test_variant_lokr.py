"""LoKr (Eqs. (18)-(21)): factorisation, hand-computed update, init, reshape path, PEFT export."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise
from torch import nn

from lorabench.variants import InvalidVariantParams, build_params, get_variant, inject
from lorabench.variants.lokr import LoKrParams, small_factor
from lorabench.variants.peft_export import to_peft

LoKr = get_variant("lokr").layer_cls


@pytest.mark.parametrize(
    "dim,k,expected",
    [(384, -1, 16), (1536, -1, 32), (4096, -1, 64), (4096, 32, 32), (12, -1, 3), (12, 2, 2),
     (7, -1, 1), (1, -1, 1), (100, 7, 5), (36, -1, 6)],
)  # fmt: skip
def test_small_factor_eq18(dim, k, expected):
    # Eq. (18): the largest u <= min(k, sqrt(dim)) dividing dim.
    assert small_factor(dim, k) == expected


def test_small_factor_matches_peft_factorization():
    lokr_layer = pytest.importorskip("peft.tuners.lokr.layer")
    for dim in range(1, 700):
        assert lokr_layer.factorization(dim, -1) == (small_factor(dim), dim // small_factor(dim))
        for k in (2, 3, 5, 8):
            if dim % k or k * k <= dim:  # PEFT takes k itself when it divides dim, even > sqrt
                d = small_factor(dim, k)
                assert lokr_layer.factorization(dim, k) == (d, dim // d), (dim, k)


def test_hand_computed_delta_and_forward():
    # in = out = 4: in_d = out_d = 2, C is 2 x 2. r = 1, alpha = 2: s = 2.
    # B A = [[1], [-1]] [[1, 2]] = [[1, 2], [-1, -2]]; C = [[1, 0], [2, 1]];
    # (B A) kron C = [[1, 0, 2, 0], [2, 1, 4, 2], [-1, 0, -2, 0], [-2, -1, -4, -2]].
    layer = LoKr(nn.Linear(4, 4), rank=1, alpha=2.0)
    assert (layer.in_d, layer.out_d, tuple(layer.lokr_C.shape)) == (2, 2, (2, 2))
    with torch.no_grad():
        layer.lokr_A.copy_(torch.tensor([[1.0, 2.0]]))
        layer.lokr_B.copy_(torch.tensor([[1.0], [-1.0]]))
        layer.lokr_C.copy_(torch.tensor([[1.0, 0.0], [2.0, 1.0]]))
    kron = [[1.0, 0.0, 2.0, 0.0], [2.0, 1.0, 4.0, 2.0], [-1.0, 0.0, -2.0, 0.0],
            [-2.0, -1.0, -4.0, -2.0]]  # fmt: skip
    assert torch.equal(layer.delta_weight(), 2 * torch.tensor(kron))
    x = torch.tensor([[1.0, 0.0, -1.0, 3.0]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    # rows . x: [1 - 2, 2 - 4 + 6, -1 + 2, -2 + 4 - 6] = [-1, 4, 1, -4], times s = 2
    assert torch.allclose(got, torch.tensor([[-2.0, 8.0, 2.0, -8.0]]), atol=1e-5)


def test_init_and_shapes():
    layer = LoKr(nn.Linear(384, 1536), rank=4, alpha=8)
    # Eq. (20): A (r, in_d), B (out_d, r), C (out / out_d, in / in_d); 384 = 16 * 24, 1536 = 32 * 48
    assert layer.lokr_A.shape == (4, 16) and layer.lokr_B.shape == (32, 4)
    assert layer.lokr_C.shape == (48, 24)
    for weight, fan_in in ((layer.lokr_A, 16), (layer.lokr_C, 24)):
        bound = 1 / math.sqrt(fan_in)  # kaiming-uniform(a = sqrt 5)
        assert bound >= weight.abs().max().item() > 0.9 * bound
    assert torch.count_nonzero(layer.lokr_B) == 0
    assert torch.count_nonzero(layer.delta_weight()) == 0
    assert LoKr.expected_param_count(384, 1536, 4) == 4 * (16 + 32) + 48 * 24
    assert LoKr.expected_param_count(4096, 4096, 8, LoKrParams(k=32)) == 8 * 64 + 128 * 128


def test_defaults_and_validation():
    assert build_params("lokr", None) == LoKrParams(k=-1)
    assert LoKr(nn.Linear(8, 8), rank=2, alpha=8).scaling == 4.0  # Eq. (21): alpha / r
    for bad in (0, -2):
        with pytest.raises(InvalidVariantParams, match="k"):
            build_params("lokr", {"k": bad})


def test_rank_is_product_of_factor_ranks():
    # rank(M kron C) = rank(M) rank(C): LoKr reaches r * rank(C) with r (in_d + out_d) + |C|.
    for rank in (1, 2):
        layer = LoKr(nn.Linear(16, 16), rank=rank, alpha=1).double()
        randomise(nn.Sequential(layer))
        assert torch.linalg.matrix_rank(layer.delta_weight()).item() == 4 * rank


@pytest.mark.parametrize("in_f,out_f", [(24, 40), (7, 5), (36, 9)])
def test_reshape_path_never_forms_the_kronecker_product(in_f, out_f, monkeypatch):
    layer = LoKr(nn.Linear(in_f, out_f), rank=3, alpha=6)
    randomise(nn.Sequential(layer))
    x = torch.randn(2, 3, in_f)
    with torch.no_grad():
        dense = layer.base(x) + F.linear(x, layer.delta_weight())
        monkeypatch.setattr(torch, "kron", lambda *a: pytest.fail("dense Kronecker product"))
        assert torch.allclose(layer(x), dense, atol=1e-5)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 7))


def test_peft_export_on_uneven_shapes():
    pytest.importorskip("peft")
    model, x = _mlp(), torch.randn(5, 12)
    inject(model, "lokr", targets=("0", "2"), rank=2, alpha=6)
    randomise(model)
    with torch.no_grad():
        expected = model(x)
        theirs = to_peft(model, _mlp, "lokr", rank=2, alpha=6, dropout=0.0, params=LoKrParams())
        assert (theirs(x) - expected).abs().max().item() <= 1e-5
        layer = theirs.base_model.model[0]
        assert torch.allclose(layer.get_delta_weight("default"), model[0].delta_weight())


def test_peft_export_refuses_a_different_factorisation():
    # k = 32 divides 64 but exceeds sqrt(64): Eq. (18) gives 8, PEFT's decompose_factor 32.
    pytest.importorskip("peft")
    model = _mlp()
    inject(model, "lokr", targets=("0",), rank=2, alpha=6, params={"k": 32})
    assert model[0].out_d == 8
    with pytest.raises(ValueError, match="k = -1"):
        to_peft(model, lambda: copy.deepcopy(_mlp()), "lokr", rank=2, alpha=6, dropout=0.0,
                params=LoKrParams(k=32))  # fmt: skip
