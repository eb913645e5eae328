"""ReLoRA (Lialin et al., paper §II-B1, Eqs. (12)-(13)): merge-and-reinit during training.

Training is cut into `restarts + 1` equal phases. At the end of every phase but the last
(which is the end of training) each layer merges its update into the frozen weight (Eq. (12)),
re-draws A (Eq. (88), kaiming-uniform) and zeroes B, so the model computes the same function
while a fresh low-rank subspace starts (Eq. (13)). The optimizer state of the adapter
parameters is reset, and the learning rate re-warms from zero over `rewarm_steps` steps (the
"jagged" schedule; capped at a quarter of a phase in very short runs), multiplied onto the
job's own warmup/decay schedule.

Optimizer reset: the paper says the states "are reset"; we zero exp_avg, exp_avg_sq and the
step count of every adapter parameter, i.e. exactly a fresh AdamW state. ReLoRA's official code
(and LoRAFactory's copy of it) instead zeroes a random 99.9% of exp_avg/exp_avg_sq and keeps the
step count; with the re-warm from lr = 0 both start the new phase from (almost) no history.
Because merges rewrite the base weight, checkpoints carry it (`modifies_base`), and PEFT, whose
adapters sit on the unmodified pretrained weight, has no equivalent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lorabench.catalog.variants.relora import VARIANT, ReLoRAParams
from lorabench.variants.base import StepContext, VariantSpec, register
from lorabench.variants.inject import adapter_layers
from lorabench.variants.lora import LoRALinear


class ReLoRALinear(LoRALinear):
    """Plain LoRA (Eq. (13): W_t = W_{t_{tau-1}} + (alpha/r) B A) whose base weight absorbs the
    update at every restart."""

    variant_name = "relora"
    params_cls = ReLoRAParams
    modifies_base = True

    @torch.no_grad()
    def merge_and_reinit(self) -> None:
        """Eq. (12): W <- W + (alpha/r) B A, then A ~ Eq. (88) and B = 0 (function unchanged)."""
        if self.merged:
            raise ValueError("relora adapter is merged for export; unmerge before training on")
        weight = self.base.weight
        delta = self.delta_weight()
        # Summed in the adapter's dtype and rounded once (a 16-bit base loses the part of the
        # update below half an ulp of W; documented in docs/DESIGN.md, "Base precision").
        weight.copy_((weight.to(delta.dtype) + delta).to(weight.dtype))
        # Drawn from the CPU generator whatever the device: the trainer checkpoints that
        # generator's state, so a resumed job re-draws the same A.
        bound = 1.0 / math.sqrt(self.in_features)
        fresh = torch.empty(self.lora_A.shape, dtype=torch.float32).uniform_(-bound, bound)
        self.lora_A.copy_(fresh)
        self.lora_B.zero_()


def restart_steps(total_steps: int, restarts: int) -> list[int]:
    """Optimizer steps after which the merges happen: the ends of `restarts + 1` equal phases,
    the last phase ending with training (Eq. (12): t_tau = tau * T). Short runs drop the
    collisions, so every merge is followed by at least one training step."""
    steps = {i * total_steps // (restarts + 1) for i in range(1, restarts + 1)}
    return sorted(s for s in steps if 0 < s < total_steps)


def rewarm_length(total_steps: int, params: ReLoRAParams) -> int:
    """`rewarm_steps` (paper: 10), capped at a quarter of a phase: the paper's runs have phases
    of hundreds of steps, our embedded jobs of one or two, where ten steps of re-warm-up would
    leave the whole run at a near-zero learning rate."""
    phase = total_steps // (params.restarts + 1)
    return min(params.rewarm_steps, phase // 4)


def relora_lr_multiplier(step: int, total_steps: int, params: ReLoRAParams) -> float:
    """Jagged re-warm-up: 0 at a restart step, then linear back to 1 over the re-warm length.

    `step` is the scheduler step, i.e. the number of optimizer steps done, so the first step
    after a merge at step k runs at multiplier 0 (it only refills AdamW's fresh moments, as in
    ReLoRA's code) and step k + 1 + rewarm at the full schedule again."""
    rewarm = rewarm_length(total_steps, params)
    last = [k for k in restart_steps(total_steps, params.restarts) if k <= step]
    if not last or rewarm == 0:
        return 1.0
    return min(1.0, (step - last[-1]) / rewarm)


@torch.no_grad()
def reset_optimizer_state(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
    """Zero every state entry (AdamW: exp_avg, exp_avg_sq, step) of `params`, in place, so the
    optimizer's state dict keeps its layout."""
    for p in params:
        state = optimizer.state.get(p)
        if not state:
            continue
        for key, value in state.items():
            if torch.is_tensor(value):
                value.zero_()
            elif isinstance(value, int | float) and not isinstance(value, bool):
                state[key] = type(value)(0)


def relora_on_step(ctx: StepContext) -> None:
    if ctx.step not in restart_steps(ctx.total_steps, ctx.params.restarts):
        return
    layers = [layer for _, layer in adapter_layers(ctx.model) if isinstance(layer, ReLoRALinear)]
    for layer in layers:
        layer.merge_and_reinit()
    reset_optimizer_state(
        ctx.optimizer, [p for layer in layers for p in (layer.lora_A, layer.lora_B)]
    )


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=ReLoRALinear,
        on_step=relora_on_step,
        lr_multiplier=relora_lr_multiplier,
    )
)
