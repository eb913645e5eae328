"""AdaLoRA (Zhang et al., paper §II-B3, Eqs. (35)-(44)): SVD-form adapter with a rank budget.

Delta W = B diag(E) A * alpha / r0 (the paper's A_t D_t B_t^T; here A: (r0, in) holds the right
"singular vectors" as rows, E: (r0, 1) the "singular values", B: (out, r0) the left ones, PEFT's
names and shapes). After every optimizer step the trainer's on_step hook
  1. updates each parameter's smoothed sensitivity and uncertainty (Eqs. (40)-(43)),
  2. scores every triplet (E_i, A_i, B_:,i) (Eq. (44)) across ALL layers, and
  3. keeps the b_t best triplets, zeroing the other E_i (Eq. (37)),
with the budget b_t falling cubically from b_0 = r0 * layers to b_T = target * layers (Eqs.
(38)-(39)). The orthogonality regulariser (Eqs. (35)-(36)) is the variant's extra loss.

Ranks: the layer's rank is `init_rank` (paper: 12) and the budget's target is `target_rank` per
layer on average (paper: 8); the job's `rank` field is ignored, as PEFT's AdaLoraConfig ignores
`r` (the paper starts "slightly larger than the final average rank (e.g. 1.5 times)").

Schedule (PEFT's tinit/tfinal/deltaT semantics; t counts optimizer steps done, 1..T):
  t <= t_i          budget b_0, no masking (warm-up)
  t_i < t < T - t_f budget Eq. (39) floored, masking every delta_t steps
  t == T - t_f      budget b_T: the final rank pattern is fixed
  t > T - t_f       the fixed pattern is re-applied after every step (E_i regrow otherwise)
Importance EMAs are updated while t < T - t_f, as in PEFT. The paper's t_i = 100, t_f = 900 are
kept for runs of T >= 2 (t_i + t_f) steps, so the annealing phase gets at least as long as
the other two together. Shorter runs (our embedded jobs take tens of steps) scale t_i, t_f and
delta_t by T / (2 (t_i + t_f)) (floored; delta_t at least 1), which keeps the three phases'
proportions t_i : t_i + t_f : t_f and makes the two rules meet at T = 2 (t_i + t_f).

Deviations, all documented choices:
- Eq. (42) subtracts the previous mean I_{t-1}; AdaLoRA's code and PEFT subtract the new one,
  which is exactly beta1 times the same uncertainty, so every score scales by beta1 and the
  masks are identical. We follow Eq. (42).
- Eq. (37) keeps exactly b_t triplets (ties broken by position, deterministically); PEFT's
  threshold (kthvalue, masking scores <= it) can mask more on ties.
- Regulariser: Eqs. (35)-(36) write lambda * sum_layers (||A A^T - I||_F^2 + ||B^T B - I||_F^2);
  AdaLoRA's code, PEFT and LoRAFactory's own code compute lambda * mean over the 2k matrices of
  the plain Frobenius norms, which is what lambda = 0.1 was tuned for. `orth_reg="mean_norm"`
  (default) is that; `orth_reg="paper"` is Eqs. (35)-(36) literally.
- lambda = 0.1 is AdaLoRA's own setting (its code and GLUE runs); PEFT's default is 0.5.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.adalora import VARIANT, AdaLoRAParams
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    StepContext,
    VariantSpec,
    adapter_factory,
    register,
)
from lorabench.variants.inject import adapter_layers

# The three trainable factors of a triplet; each gets a sensitivity EMA and an uncertainty EMA.
FACTORS = ("lora_A", "lora_E", "lora_B")


class AdaLoRALinear(AdapterLinear):
    """W = W~ + (alpha / r0) B diag(E) A; E starts at zero, A and B at N(0, 0.02^2) (AdaLoRA,
    PEFT). Persistent buffers (checkpointed): `rank_mask` (1 for kept triplets) and, per factor,
    `ipt_<factor>` (smoothed sensitivity, Eq. (41)) and `unc_<factor>` (uncertainty, Eq. (42))."""

    variant_name = "adalora"
    params_cls = AdaLoRAParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        self.rank = rank = self.params.init_rank  # the job's rank is ignored (module docstring)
        factory = adapter_factory(base)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **factory))
        self.lora_E = nn.Parameter(torch.empty(rank, 1, **factory))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, rank, **factory))
        self.register_buffer("rank_mask", torch.ones(rank, **factory))
        for name in FACTORS:
            shape = getattr(self, name).shape
            self.register_buffer(f"ipt_{name}", torch.zeros(shape, **factory))
            self.register_buffer(f"unc_{name}", torch.zeros(shape, **factory))
        self.reset_adapter_parameters()

    @property
    def scaling(self) -> float:
        # PEFT: lora_alpha / ranknum with ranknum = init_r (fixed while ranks are masked).
        return self.alpha / self.rank

    @torch.no_grad()
    def reset_adapter_parameters(self) -> None:
        self.lora_A.normal_(0.0, 0.02)
        self.lora_B.normal_(0.0, 0.02)
        self.lora_E.zero_()
        self.rank_mask.fill_(1.0)
        for name in FACTORS:
            getattr(self, f"ipt_{name}").zero_()
            getattr(self, f"unc_{name}").zero_()

    def delta_weight(self) -> Tensor:
        # Delta W = A_t D_t B_t^T (paper) = B diag(E) A here, times alpha / r0.
        return (self.lora_B @ (self.lora_A * self.lora_E)) * self.scaling

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Two thin matmuls; diag(E) is folded into A's rows (r0 x in), never a dense update.
        x = x.to(self.lora_A.dtype)
        return F.linear(F.linear(x, self.lora_A * self.lora_E), self.lora_B) * self.scaling

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        r0 = (params or AdaLoRAParams()).init_rank
        return r0 * (in_features + out_features + 1)

    @torch.no_grad()
    def update_importance(self, beta1: float, beta2: float) -> None:
        """Eqs. (40)-(42) for every entry of A, E and B, from the gradient still in .grad."""
        for name in FACTORS:
            p = getattr(self, name)
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            sensitivity = (p.float() * grad.float()).abs()  # Eq. (40)
            ipt, unc = getattr(self, f"ipt_{name}"), getattr(self, f"unc_{name}")
            previous = ipt.float()
            # Eq. (42) measures the deviation from the previous mean I_{t-1}.
            unc.copy_(beta2 * unc.float() + (1 - beta2) * (sensitivity - previous).abs())
            ipt.copy_(beta1 * previous + (1 - beta1) * sensitivity)  # Eq. (41)

    def triplet_scores(self) -> Tensor:
        """Eq. (44): S_i = s(E_i) + mean_j s(A_ij) + mean_j s(B_ji), s = I * U (Eq. (43))."""
        score = {n: getattr(self, f"ipt_{n}").float() * getattr(self, f"unc_{n}").float()
                 for n in FACTORS}  # fmt: skip
        return score["lora_E"].view(-1) + score["lora_A"].mean(dim=1) + score["lora_B"].mean(dim=0)

    @torch.no_grad()
    def apply_mask(self) -> None:
        """Eq. (37): d_i <- m_i d_i."""
        self.lora_E.mul_(self.rank_mask.view(-1, 1).to(self.lora_E.dtype))

    def orthogonality(self) -> tuple[Tensor, Tensor]:
        """A A^T - I and B^T B - I (Eq. (35) in our (out, in) orientation), in fp32."""
        with torch.autocast(self.lora_A.device.type, enabled=False):
            a, b = self.lora_A.float(), self.lora_B.float()
            eye = torch.eye(self.rank, device=a.device)
            return a @ a.T - eye, b.T @ b - eye


def _adalora_layers(model: nn.Module) -> list[tuple[str, AdaLoRALinear]]:
    return [(n, m) for n, m in adapter_layers(model) if isinstance(m, AdaLoRALinear)]


def phase_steps(total_steps: int, params: AdaLoRAParams) -> tuple[int, int, int]:
    """(t_i, t_f, delta_t) for a run of `total_steps`: the paper's values when the run is at
    least 2 (t_i + t_f) long, else all three scaled by total_steps / (2 (t_i + t_f))."""
    span = params.t_init + params.t_final
    if span == 0 or total_steps >= 2 * span:
        return params.t_init, params.t_final, params.delta_t
    scale = total_steps / (2 * span)
    delta_t = max(1, math.floor(params.delta_t * scale))
    return math.floor(params.t_init * scale), math.floor(params.t_final * scale), delta_t


def budget_at(step: int, total_steps: int, initial: int, target: int, params: AdaLoRAParams) -> int:
    """Eqs. (38)-(39): the number of triplets kept after optimizer step `step`."""
    t_i, t_f, _ = phase_steps(total_steps, params)
    if step <= t_i:
        return initial
    if step >= total_steps - t_f:
        return target
    remaining = 1 - (step - t_i) / (total_steps - t_i - t_f)
    return math.floor(target + (initial - target) * remaining**3)


@torch.no_grad()
def mask_to_budget(layers: list[AdaLoRALinear], budget: int) -> None:
    """Keep the `budget` highest-scoring triplets over all layers (Eq. (37)), zero the rest."""
    scores = torch.cat([layer.triplet_scores().cpu() for layer in layers])
    keep = torch.zeros(len(scores), dtype=torch.bool)
    keep[torch.sort(scores, descending=True, stable=True).indices[:budget]] = True
    start = 0
    for layer in layers:
        mask = keep[start : start + layer.rank]
        start += layer.rank
        layer.rank_mask.copy_(mask.to(layer.rank_mask.dtype))
        layer.apply_mask()


def adalora_on_step(ctx: StepContext) -> None:
    params: AdaLoRAParams = ctx.params
    layers = [layer for _, layer in _adalora_layers(ctx.model)]
    if not layers:
        return
    step, total = ctx.step, ctx.total_steps
    t_i, t_f, delta_t = phase_steps(total, params)
    final_start = total - t_f
    if step < final_start:
        for layer in layers:
            layer.update_importance(params.beta1, params.beta2)
    if step <= t_i:
        return
    initial = sum(layer.rank for layer in layers)
    target = min(initial, params.target_rank * len(layers))
    if step < final_start:
        if step % delta_t == 0:
            mask_to_budget(layers, budget_at(step, total, initial, target, params))
    elif step == final_start:
        mask_to_budget(layers, target)  # the final rank pattern
    else:
        for layer in layers:
            layer.apply_mask()


def adalora_orth_loss(model: nn.Module, params: AdaLoRAParams) -> Tensor | None:
    """Eqs. (35)-(36), in the form `params.orth_reg` names (module docstring)."""
    layers = [layer for _, layer in _adalora_layers(model)]
    if not layers or params.orth_reg_weight == 0:
        return None
    gaps = [gap for layer in layers for gap in layer.orthogonality()]
    if params.orth_reg == "paper":
        total = sum(gap.square().sum() for gap in gaps)
    else:
        total = sum(torch.linalg.matrix_norm(gap) for gap in gaps) / len(gaps)
    return params.orth_reg_weight * total


def adalora_report(model: nn.Module, params: AdaLoRAParams) -> dict[str, float]:
    """Final rank per layer (`rank/<layer name>`) and their sum (`rank/total`)."""
    ranks = {f"rank/{name}": float(layer.rank_mask.sum()) for name, layer in _adalora_layers(model)}
    ranks["rank/total"] = sum(ranks.values())
    return ranks


def peft_adalora_config(settings: PeftSettings) -> Any:
    from peft import AdaLoraConfig

    params: AdaLoRAParams = settings.params
    return AdaLoraConfig(
        init_r=params.init_rank,
        target_r=params.target_rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.targets,
        modules_to_save=settings.modules_to_save or None,
        tinit=params.t_init,
        tfinal=params.t_final,
        deltaT=params.delta_t,
        beta1=params.beta1,
        beta2=params.beta2,
        orth_reg_weight=params.orth_reg_weight,
        # The export is for inference; PEFT insists on a schedule with a budgeting phase, so
        # this is the shortest run in which ours uses the paper's t_i, t_f unscaled.
        total_step=max(2 * (params.t_init + params.t_final), params.t_init + params.t_final + 1),
    )


@torch.no_grad()
def copy_adalora_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    """Same A and B; E rescaled because PEFT scales by lora_alpha / (ranknum + 1e-5). Masked
    triplets travel as zeros in E (PEFT's rank_pattern would drop them from the file)."""
    theirs.lora_A["default"].copy_(ours.lora_A)
    theirs.lora_B["default"].copy_(ours.lora_B)
    peft_scaling = theirs.scaling["default"] / (theirs.ranknum["default"].item() + 1e-5)
    theirs.lora_E["default"].copy_(ours.lora_E * (ours.scaling / peft_scaling))


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=AdaLoRALinear,
        peft_export=PeftExport(make_config=peft_adalora_config, copy_weights=copy_adalora_to_peft),
        on_step=adalora_on_step,
        extra_loss=adalora_orth_loss,
        report=adalora_report,
    )
)
