"""Shared by the gradient-driven initialisations (paper §II-D2: LoRA-GA, LoRA-One).

Both need the full gradient of the task loss with respect to each adapted layer's frozen
weight, averaged over a few training batches (the nabla W~_0 of Eq. (100) / (104)), and an SVD
of it with a fixed sign convention so that the result does not depend on the LAPACK build.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lorabench.variants.base import AdapterLinear, PrepareContext
from lorabench.variants.inject import adapter_layers


def _accumulate_into(total: Tensor) -> Callable[[Tensor], None]:
    def hook(weight: Tensor) -> None:
        # Fold this backward's gradient into the fp32 sum and free it at once, so no layer
        # ever holds more than one running sum (never a copy per batch).
        total.add_(weight.grad)
        weight.grad = None

    return hook


def estimate_weight_gradients(ctx: PrepareContext, steps: int) -> dict[str, Tensor]:
    """Mean over `steps` batches of d loss / d base.weight for every wrapped layer, in fp32.

    The adapters are switched off meanwhile (the gradient is the pretrained model's, Eq. (100)),
    only the wrapped layers' frozen weights require grad (no other parameter gets a .grad), and
    the model runs in train mode as in LoRA-GA's and PEFT's estimators. Every flag touched is
    restored afterwards, also when the loss raises.
    """
    model: nn.Module = ctx.model
    layers = adapter_layers(model)
    if not layers:
        raise ValueError("the model holds no adapter layers to initialise")
    merged = [name for name, layer in layers if layer.merged]
    if merged:
        raise ValueError(f"unmerge the adapters before estimating gradients, e.g. {merged[0]!r}")
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    disabled = [layer.disabled for _, layer in layers]
    modes = [(module, module.training) for module in model.modules()]
    sums = {
        name: torch.zeros(
            layer.base.weight.shape, dtype=torch.float32, device=layer.base.weight.device
        )
        for name, layer in layers
    }
    hooks = []
    batches = 0
    try:
        for p in params:
            p.requires_grad_(False)
        for name, layer in layers:
            weight = layer.base.weight
            weight.grad = None
            weight.requires_grad_(True)
            layer.disabled = True
            hooks.append(weight.register_post_accumulate_grad_hook(_accumulate_into(sums[name])))
        model.train()
        with torch.enable_grad():
            for batch in ctx.batches(steps):
                ctx.loss(model, batch).backward()
                batches += 1
    finally:
        for hook in hooks:
            hook.remove()
        for (_, layer), off in zip(layers, disabled, strict=True):
            layer.disabled = off
            layer.base.weight.grad = None
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
        for module, mode in modes:
            module.training = mode
    if batches == 0:
        raise ValueError("ctx.batches yielded no batch to estimate gradients from")
    return {name: total.div_(batches) for name, total in sums.items()}


def signed_svd(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD U diag(S) Vh of `matrix` in fp32, each pair (u_i, v_i) flipped so that v_i's
    largest-magnitude entry is positive: SVD signs are otherwise arbitrary per LAPACK build."""
    u, s, vh = torch.linalg.svd(matrix.float(), full_matrices=False)
    pivot = vh.gather(1, vh.abs().argmax(dim=1, keepdim=True)).squeeze(1)
    signs = torch.where(pivot < 0, -1.0, 1.0).to(vh)
    return u * signs, s, vh * signs[:, None]


def take_rows(rows: Tensor, count: int) -> Tensor:
    """The first `count` rows of `rows`, zero-padded when there are fewer (rank above the
    gradient's own rank; those components then stay off, as with a plain LoRA B = 0)."""
    out = rows.new_zeros(count, rows.shape[1])
    n = min(count, rows.shape[0])
    out[:n] = rows[:n]
    return out


def factors_state(model: nn.Module) -> dict[str, Tensor]:
    """The prepared state: every wrapped layer's new factors, by module name."""
    state: dict[str, Tensor] = {}
    for name, layer in adapter_layers(model):
        state[f"{name}.lora_A"] = layer.lora_A.detach().clone()
        state[f"{name}.lora_B"] = layer.lora_B.detach().clone()
    return state


def layer_factors(
    model: nn.Module, state: dict[str, Tensor], variant: str
) -> list[tuple[AdapterLinear, Tensor, Tensor]]:
    """Each wrapped layer with its saved factors, checked against the model before any change."""
    pairs = []
    for name, layer in adapter_layers(model):
        keys = (f"{name}.lora_A", f"{name}.lora_B")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"{variant}: the prepared state lacks {missing[0]!r}")
        a, b = (state[k] for k in keys)
        if a.shape != layer.lora_A.shape or b.shape != layer.lora_B.shape:
            raise ValueError(
                f"{variant}: prepared factors of {name!r} have shapes {tuple(a.shape)}, "
                f"{tuple(b.shape)}; the layer needs {tuple(layer.lora_A.shape)}, "
                f"{tuple(layer.lora_B.shape)}"
            )
        pairs.append((layer, a, b))
    return pairs
