"""RandLoRA: Eq. (31)-(32) by hand, init, defaults, full rank, shared bases, leanness, PEFT."""

import copy
import math

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import (
    InvalidVariantParams,
    adapter_layers,
    adapter_parameters,
    adapter_state_dict,
    build_params,
    get_variant,
    inject,
)
from lorabench.variants.randlora import (
    RandLoRALinear,
    RandLoRAParams,
    _ScaledBasis,
    count_bases,
    dense_is_cheaper,
)

SQRT2 = math.sqrt(2.0)


class Net(nn.Module):
    """in < out, in > out and square layers with different numbers of bases."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(8, 16)
        self.down = nn.Linear(16, 5)
        self.sq = nn.Linear(5, 5)

    def forward(self, x):
        return self.sq(torch.tanh(self.down(torch.tanh(self.up(x)))))


TARGETS = ("up", "down", "sq")


def layer_with(in_f, out_f, **params) -> RandLoRALinear:
    torch.manual_seed(1)
    return RandLoRALinear(nn.Linear(in_f, out_f), rank=8, alpha=16, params=RandLoRAParams(**params))


def test_paper_defaults_and_validation():
    # Paper: "The rank of low-rank bases is set to 32 ... upper bound ... set to 1024".
    assert RandLoRAParams() == RandLoRAParams(basis_rank=32, max_basis_dim=1024)
    assert RandLoRAParams().projection_prng_key == 0  # PEFT's default seed
    spec = get_variant("randlora")
    assert spec.family == "rank" and spec.merges and spec.peft
    with pytest.raises(InvalidVariantParams, match="basis_rank"):
        build_params("randlora", {"basis_rank": -1})
    with pytest.raises(InvalidVariantParams, match="max_basis_dim"):
        build_params("randlora", {"max_basis_dim": 0})


@pytest.mark.parametrize(
    ("in_f", "out_f", "r", "cap", "expected"),
    [
        (4096, 4096, 32, 1024, 32),  # Llama q/o: U caps the total rank at 1024
        (4096, 1024, 32, 1024, 32),
        (768, 768, 32, 1024, 24),  # RoBERTa-base: full rank, uncapped
        (384, 1536, 32, 1024, 12),
        (10, 3, 2, 1024, 2),  # ceil(3 / 2)
        (100, 100, 8, 20, 3),  # ceil(min(100, 20) / 8)
    ],
)
def test_number_of_bases_eq31(in_f, out_f, r, cap, expected):
    assert count_bases(in_f, out_f, r, cap) == expected


def test_layer_shapes_scaling_and_param_count():
    layer = layer_with(384, 1536)
    assert layer.num_bases == 12 and layer.basis_rank == 32
    assert layer.randlora_lambda.shape == (32, 12) and layer.randlora_gamma.shape == (12, 384)
    assert layer.scaling == pytest.approx(2 / math.sqrt(12))  # Eq. (32)
    assert sum(p.numel() for _, p in layer.adapter_named_parameters()) == 12 * (32 + 384)
    # basis_rank = 0 falls back on the layer's rank argument (8): 48 bases of rank 8.
    assert layer_with(384, 1536, basis_rank=0).randlora_lambda.shape == (8, 48)


def test_initial_update_is_zero():
    layer = layer_with(12, 20, basis_rank=4)
    assert torch.count_nonzero(layer.randlora_lambda) == 0
    assert torch.equal(layer.randlora_gamma, torch.full((3, 12), 1 / 12))  # PEFT: 1/max(shape)
    assert torch.count_nonzero(layer.delta_weight()) == 0
    x = torch.randn(3, 12)
    assert torch.equal(layer(x), layer.base(x))


def test_fresh_inject_gives_the_base_output():
    model = Net()
    x = torch.randn(50, 8)  # large enough for the dense path of the square layer too
    with torch.no_grad():
        before = model(x)
        inject(model, "randlora", targets=TARGETS, rank=3, alpha=6, params={"basis_rank": 2})
        assert torch.equal(model(x), before)


def set_weights(layer, a, pool, lam, gamma):
    with torch.no_grad():
        layer.shared.randlora_A.copy_(torch.tensor(a))
        layer.shared.randlora_B.copy_(torch.tensor(pool))
        layer.randlora_lambda.copy_(torch.tensor(lam))
        layer.randlora_gamma.copy_(torch.tensor(gamma))


def test_hand_computed_in_le_out():
    # in 2, out 3, r = 1: n_b = 2, s = 2 / sqrt(2); A^S = [1, 2] on the input side.
    layer = layer_with(2, 3, basis_rank=1)
    assert layer.shared.randlora_A.shape == (1, 2) and layer.shared.randlora_B.shape == (3, 2)
    set_weights(
        layer, a=[[1.0, 2.0]], pool=[[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]],
        lam=[[1.0, 2.0]], gamma=[[1.0, 1.0], [0.5, -1.0]],
    )  # fmt: skip
    # k=0: 1 * [1,0,1] x ([1,2]*[1,1]) = [[1,2],[0,0],[1,2]]
    # k=1: 2 * [0,1,-1] x ([1,2]*[0.5,-1]) = [[0,0],[1,-4],[-1,4]]
    expected = SQRT2 * torch.tensor([[1.0, 2.0], [1.0, -4.0], [0.0, 6.0]])
    assert torch.allclose(layer.delta_weight(), expected, atol=1e-5)
    x = torch.tensor([[1.0, -1.0]])
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    assert torch.allclose(got, SQRT2 * torch.tensor([[-1.0, 5.0, -6.0]]), atol=1e-5)


def test_hand_computed_in_gt_out_pairs_columns_like_peft():
    # in 5 > out 4: A^S acts on the output side (the smaller one). r = 2, n_b = 2, s = sqrt(2).
    # Pool column c is basis k = c % 2, rank index j = c // 2: lambda[j, k] = 10^c marks it.
    layer = layer_with(5, 4, basis_rank=2)
    pool = [[1.0 if c == row or row == 4 else 0.0 for c in range(4)] for row in range(5)]
    set_weights(layer, a=[[1.0] * 4] * 2, pool=pool, lam=[[1.0, 10.0], [100.0, 1000.0]],
                gamma=[[1.0] * 4] * 2)  # fmt: skip
    # Input i of dW picks pool row i: sum_c pool[i, c] 10^c, the same for every output.
    expected = SQRT2 * torch.tensor([[1.0, 10.0, 100.0, 1000.0, 1111.0]] * 4)
    assert torch.allclose(layer.delta_weight(), expected, atol=1e-3)
    # U = 2 keeps basis k = 0 only: pool columns 0 and 2 (j = 0, 1), and s = 2 / sqrt(1).
    capped = layer_with(5, 4, basis_rank=2, max_basis_dim=2)
    assert capped.num_bases == 1 and capped.full_bases == 2
    set_weights(capped, a=[[1.0] * 4] * 2, pool=pool, lam=[[1.0], [100.0]], gamma=[[1.0] * 4])
    expected = 2.0 * torch.tensor([[1.0, 0.0, 100.0, 0.0, 101.0]] * 4)
    assert torch.allclose(capped.delta_weight(), expected, atol=1e-4)


def test_update_is_full_rank_from_low_rank_bases_unless_capped():
    full = layer_with(6, 6, basis_rank=2)  # 3 bases of rank 2
    randomise(nn.Sequential(full))
    assert torch.linalg.matrix_rank(full.delta_weight()).item() == 6
    capped = layer_with(6, 6, basis_rank=2, max_basis_dim=4)  # 2 bases: rank <= 4
    randomise(nn.Sequential(capped))
    assert torch.linalg.matrix_rank(capped.delta_weight()).item() == 4


def test_scaled_basis_gradients():
    torch.manual_seed(0)
    a = torch.randn(3, 5, dtype=torch.float64)
    lam = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    gamma = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_ScaledBasis.apply, (a, lam, gamma))
    expected = lam.detach()[:, :, None] * a[:, None, :] * gamma.detach()[None]
    assert torch.equal(_ScaledBasis.apply(a, lam, gamma).detach(), expected)


def test_factored_forward_never_forms_the_dense_update(monkeypatch):
    layer = layer_with(40, 60, basis_rank=4)
    randomise(nn.Sequential(layer))
    x = torch.randn(3, 40, requires_grad=True)  # few tokens: the factored path is cheaper
    assert not layer.dense_is_cheaper(3, grad=True)
    expected = layer.base(x) + x @ layer.delta_weight().T

    def boom():
        raise AssertionError("dense update formed")

    monkeypatch.setattr(layer, "delta_weight", boom)
    out = layer(x)
    out.sum().backward()
    assert (out - expected).abs().max().item() <= 1e-4
    assert layer.randlora_gamma.grad is not None


@pytest.mark.parametrize("grad", [True, False])
def test_dense_path_for_many_tokens_matches_factored(grad):
    layer = layer_with(6, 6, basis_rank=2)
    randomise(nn.Sequential(layer))
    x = torch.randn(4, 16, 6)
    assert layer.dense_is_cheaper(64, grad) and not layer.dense_is_cheaper(2, grad)
    factored = copy.deepcopy(layer)
    factored.dense_is_cheaper = lambda tokens, grad: False
    with torch.set_grad_enabled(grad):
        out, ref = layer(x), factored(x)
    assert (out - ref).abs().max().item() <= 1e-5
    if grad:
        out.square().sum().backward()
        ref.square().sum().backward()
        for (name, p), (_, q) in zip(
            layer.adapter_named_parameters(), factored.adapter_named_parameters(), strict=True
        ):
            assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5), name
    # Dropout in training needs a separate adapter input: always the factored path there.
    drop = RandLoRALinear(nn.Linear(6, 6), rank=2, alpha=4, dropout=0.5,
                          params=RandLoRAParams(basis_rank=2))  # fmt: skip
    drop.dense_is_cheaper = lambda tokens, grad: pytest.fail("dense path with dropout")
    drop.train()(x)


def test_paper_llama_setting_stays_factored():
    # Llama-3.1-8B with r = 32, U = 1024 (rank 1024) and 8k tokens: q_proj and up_proj.
    for in_f, out_f in [(4096, 4096), (4096, 14336)]:
        rank = 32 * count_bases(in_f, out_f, 32, 1024)
        assert rank == 1024
        assert not dense_is_cheaper(8192, in_f, out_f, rank, grad=True)
    # Uncapped (full rank 4096) the dense update is cheaper for as many tokens.
    assert dense_is_cheaper(8192, 4096, 4096, 4096, grad=True)


def test_shared_bases_registered_once_and_sliced():
    model = Net()
    report = inject(model, "randlora", targets=TARGETS, rank=3, alpha=6,
                    params={"basis_rank": 2})  # fmt: skip
    shared = model.adapter_shared
    buffers = [n for n, _ in model.named_buffers(remove_duplicate=False)]
    assert buffers == ["adapter_shared.randlora_A", "adapter_shared.randlora_B"]
    assert [k for k in model.state_dict() if "randlora_A" in k or "randlora_B" in k] == buffers
    # A^S (r, largest d_min = 8); pool (largest d_max = 16, r * most bases = 2 * 4).
    assert shared.randlora_A.shape == (2, 8) and shared.randlora_B.shape == (16, 8)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(trainable) == sorted(
        f"{layer}.randlora_{v}" for layer in TARGETS for v in ("lambda", "gamma")
    )
    # up: 4 bases x (2 + 8); down and sq: 3 bases x (2 + 5).
    assert report.adapter_params == 4 * 10 + 3 * 7 + 3 * 7
    opt = torch.optim.AdamW(adapter_parameters(model))
    ids = [id(p) for group in opt.param_groups for p in group["params"]]
    assert len(ids) == len(set(ids)) == 6
    assert set(adapter_state_dict(model)) == set(trainable)
    for name, layer in adapter_layers(model):
        assert layer.shared is shared, name
    # A reference, not a copy: zeroing A^S silences every layer.
    randomise(model)
    with torch.no_grad():
        shared.randlora_A.zero_()
    assert all(torch.count_nonzero(m.delta_weight()) == 0 for _, m in adapter_layers(model))


def test_bases_reproducible_from_seed():
    def bases(seed):
        model = Net()
        inject(model, "randlora", targets=TARGETS, rank=3, alpha=6,
               params={"basis_rank": 2, "projection_prng_key": seed})  # fmt: skip
        return model.adapter_shared.randlora_B

    assert torch.equal(bases(0), bases(0)) and not torch.equal(bases(0), bases(1))
    pool = bases(0)
    assert pool.abs().max() <= math.sqrt(3) and 0.8 < pool.std().item() < 1.2  # unit variance


@pytest.mark.parametrize("cap", [1024, 4])
def test_peft_export_uneven_shapes_and_capped_bases(cap):
    pytest.importorskip("peft")
    from lorabench.variants.peft_export import to_peft

    params = {"basis_rank": 2, "max_basis_dim": cap}
    base = Net()
    ours = copy.deepcopy(base)
    inject(ours, "randlora", targets=TARGETS, rank=3, alpha=6, params=params)
    randomise(ours)
    x = torch.randn(4, 8)
    theirs = to_peft(ours, lambda: copy.deepcopy(base), "randlora", rank=3, alpha=6, dropout=0.0,
                     params=build_params("randlora", params))  # fmt: skip
    with torch.no_grad():
        assert (theirs(x) - ours(x)).abs().max().item() <= 1e-5
    up = theirs.base_model.model.up
    assert up.randlora_lambda["default"].shape == (2, 4)  # PEFT never caps: ceil(8 / 2)
    if cap == 4:
        assert ours.up.num_bases == 2
        assert torch.count_nonzero(up.randlora_lambda["default"][:, 2:]) == 0
