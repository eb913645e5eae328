"""CorDA (Yang et al.): context-oriented decomposition adaptation (§II-D3).

Per layer, the input covariance C = X^T X of the job's own data orients an SVD of the weight:
W C = U S V^T, W = U S (V^T C^-1) (Eq. (110)-(111), written for PyTorch's (out, in) weight).
The adapter takes r of those components, the frozen weight keeps the rest (W_res = W - s B A),
so the model computes the same function at init. Instruction-previewed mode (IPM, PEFT's
default `corda_method`, the fine-tuning one) takes the largest r (Eq. (114)-(115)); the
knowledge-preserved mode (KPM) the smallest (Eq. (112)-(113)).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from lorabench.catalog.variants.corda import VARIANT, CordaParams
from lorabench.variants._activations import stream_layer_inputs
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    PrepareContext,
    VariantSpec,
    adapter_factory,
    register,
)
from lorabench.variants.inject import adapter_layers
from lorabench.variants.lora import LoRALinear, peft_lora_config


class CordaLinear(LoRALinear):
    """LoRA on a residual weight: after prepare, W_res + s B A = W (s = alpha / r).

    `corda_A0`/`corda_B0` keep the initial factors (zero until prepare): W = W_res + s B0 A0,
    which is what converts the trained adapter back to plain LoRA on the original weight."""

    variant_name = "corda"
    params_cls = CordaParams
    zero_init = False  # W_res + s B0 A0 equals W only up to rounding
    modifies_base = True

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        factory = adapter_factory(base)
        self.register_buffer("corda_A0", torch.zeros(self.rank, self.in_features, **factory))
        self.register_buffer("corda_B0", torch.zeros(self.out_features, self.rank, **factory))

    @torch.no_grad()
    def set_factors(self, lora_a: Tensor, lora_b: Tensor) -> None:
        """A, B := the given factors and W := W - s B A (called once, on the original W)."""
        weight = self.base.weight
        self.lora_A.copy_(lora_a)
        self.lora_B.copy_(lora_b)
        self.corda_A0.copy_(self.lora_A)
        self.corda_B0.copy_(self.lora_B)
        # From the stored (rounded) factors, so restore recomputes the very same residual.
        offset = self.scaling * (self.lora_B.double() @ self.lora_A.double())
        weight.copy_((weight.double() - offset).to(weight.dtype))


@torch.no_grad()
def corda_factors(
    weight: Tensor, covariance: Tensor, rank: int, scaling: float, mode: str = "ipm"
) -> tuple[Tensor, Tensor]:
    """A (k, in) and B (out, k), k = min(rank, out, in), with s B A the chosen k components of
    W = U S (V^T C^-1) (Eq. (110)-(115)); float64. C is damped like PEFT's CorDA until it
    inverts cleanly: C + d * mean(diag C) * I, d = 0.01, doubled while ||C C^-1 - I|| >= 0.05."""
    w = weight.double()
    cov = covariance.double()
    n = cov.shape[0]
    eye = torch.eye(n, dtype=torch.float64, device=cov.device)
    level = float(cov.diagonal().mean()) if n else 0.0
    if not level > 0.0 or not torch.isfinite(cov).all():
        cov, level = eye, 1.0  # no signal reached the layer: a plain SVD of W
    damp = 0.01
    while True:
        fixed = cov + damp * level * eye
        inverse = torch.linalg.inv(fixed)
        if torch.dist(fixed @ inverse, eye) < 0.05 or damp > 1e6:
            break
        damp *= 2
    u, s, vh = torch.linalg.svd(w @ fixed, full_matrices=False)  # Eq. (110), transposed
    v_t = vh @ inverse  # Eq. (111): W = U S (V^T C^-1)
    k = min(rank, s.numel())
    idx = slice(0, k) if mode == "ipm" else slice(s.numel() - k, s.numel())
    # Split S / s evenly between the factors so that s B A is exactly U_k S_k V_k^T C^-1
    # (PEFT's corda_init; the survey's S^-1/2 in Eq. (112)-(115) would not reproduce W).
    root = (s[idx] / scaling).sqrt()
    return root.unsqueeze(1) * v_t[idx], u[:, idx] * root


def _add_covariance(total: Tensor | None, rows: Tensor, sequence: Tensor) -> Tensor:
    """total + sum over sequences of (X_i / m_i)^T (X_i / m_i), m_i = max|X_i|. CorDA / PEFT
    divide each sample by |max(X_i)|; max|X_i| is the same whenever the largest entry is
    positive, and never 0 for a non-zero sample."""
    n_seq = int(sequence.max()) + 1 if sequence.numel() else 0
    peak = rows.new_zeros(n_seq).scatter_reduce(
        0, sequence, rows.abs().amax(dim=1), reduce="amax", include_self=True
    )
    scale = torch.where(peak > 0, 1.0 / peak, torch.zeros_like(peak))
    scaled = rows * scale[sequence].unsqueeze(1)
    if total is None:
        return scaled.T @ scaled
    return total.addmm_(scaled.T, scaled)


@torch.no_grad()
def prepare_corda(ctx: PrepareContext) -> dict[str, Any]:
    """C per layer from `samples` sequences of the job's data, then each layer's split."""
    params: CordaParams = ctx.params
    layers = dict(adapter_layers(ctx.model))
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    seen = {"sequences": 0}

    def consume(leader: str, rows: Tensor, sequence: Tensor) -> None:
        # float32 sums, as PEFT's CorDA keeps them: (in, in) per layer, never the activations.
        sums[leader] = _add_covariance(sums.get(leader), rows, sequence)
        counts[leader] = counts.get(leader, 0) + int(torch.unique(sequence).numel())

    def run(batch: dict[str, Tensor]) -> None:
        ctx.loss(ctx.model, batch)
        seen["sequences"] += len(next(iter(batch.values())))

    # The batches cycle through the data; stop once `samples` sequences went through.
    groups = stream_layer_inputs(
        ctx.model, ctx.batches(params.samples), run, consume,
        after_batch=lambda step, found: seen["sequences"] >= params.samples,
    )  # fmt: skip
    state: dict[str, Any] = {"A": {}, "B": {}}
    leader_of = {name: leader for leader, members in groups.items() for name in members}
    for name, layer in layers.items():
        leader = leader_of.get(name)
        if leader is not None and counts.get(leader):
            cov = sums[leader] / counts[leader]
        else:
            cov = torch.zeros(layer.in_features, layer.in_features)
        lora_a, lora_b = corda_factors(
            layer.base.weight, cov.to(layer.base.weight.device), layer.rank, layer.scaling,
            params.mode,
        )  # fmt: skip
        k = lora_a.shape[0]
        # rank > min(in, out): the components beyond the last keep LoRA's init (B = 0).
        full_a = layer.lora_A.detach().clone()
        full_b = torch.zeros_like(layer.lora_B)
        full_a[:k], full_b[:, :k] = lora_a, lora_b
        layer.set_factors(full_a, full_b)
        state["A"][name] = layer.lora_A.detach().clone()
        state["B"][name] = layer.lora_B.detach().clone()
    return state


@torch.no_grad()
def restore_corda(model: nn.Module, state: dict[str, Any], params: CordaParams) -> None:
    """On a freshly injected model: the prepared factors and the residual they leave."""
    layers = dict(adapter_layers(model))
    if set(state["A"]) != set(layers):
        raise ValueError("the prepared CorDA state does not fit the model's adapter layers")
    for name, layer in layers.items():
        layer.set_factors(state["A"][name], state["B"][name])


def peft_corda_config(settings: PeftSettings) -> Any:
    # PEFT's own CorDA-to-LoRA conversion (save_pretrained(path_initial_model_for_weight_
    # conversion=...)): on the original weight the adapter is s (B A - B0 A0), rank 2r.
    doubled = dataclasses.replace(settings, rank=2 * settings.rank, alpha=2 * settings.alpha)
    return peft_lora_config(doubled)


@torch.no_grad()
def copy_corda_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    # W_res + s B A = W + s [B | -B0] [A ; A0], and PEFT's 2 alpha / 2 r is our s.
    theirs.lora_A["default"].weight.copy_(torch.cat([ours.lora_A, ours.corda_A0], dim=0))
    theirs.lora_B["default"].weight.copy_(torch.cat([ours.lora_B, -ours.corda_B0], dim=1))


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=CordaLinear,
        peft_export=PeftExport(make_config=peft_corda_config, copy_weights=copy_corda_to_peft),
        prepare=prepare_corda,
        restore=restore_corda,
    )
)
