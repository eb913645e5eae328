"""Wrap a model's nn.Linear layers with a variant's adapter, and manage the result."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import Tensor, nn

from lorabench.variants.base import (
    AdapterLinear,
    Site,
    adapter_factory,
    build_params,
    get_variant,
)

# Where inject() registers a sharing variant's parameters, once, on the model's root.
SHARED_ATTR = "adapter_shared"


class InjectError(ValueError):
    """Raised when target/trainable patterns do not describe a valid injection."""


class AdapterStateError(ValueError):
    """Raised when an adapter state dict does not fit the model."""


@dataclass
class InjectReport:
    wrapped: list[str]
    adapter_params: int
    trainable_params: int
    total_params: int

    def summary(self) -> str:
        pct = 100.0 * self.trainable_params / self.total_params if self.total_params else 0.0
        return (
            f"wrapped {len(self.wrapped)} layers; adapter params {self.adapter_params:,}; "
            f"trainable {self.trainable_params:,} / {self.total_params:,} ({pct:.3f}%)"
        )


def _matches(name: str, pattern: str) -> bool:
    # Exact (glob) matching only: substring matching silently wraps e.g. "query_proj" too.
    if "." in pattern:
        return fnmatchcase(name, pattern)
    return fnmatchcase(name.rpartition(".")[2], pattern)


def _examples(modules: Mapping[str, nn.Module]) -> str:
    leaves = sorted({n.rpartition(".")[2] for n, m in modules.items() if isinstance(m, nn.Linear)})
    linear = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    shown = ", ".join(leaves[:10]) or "(no nn.Linear modules)"
    full = f"; e.g. full name {linear[0]!r}" if linear else ""
    return f"Linear layer names: {shown}{full}"


def _match_all(
    modules: Mapping[str, nn.Module], patterns: Iterable[str], kind: str
) -> dict[str, list[str]]:
    found = {}
    for pattern in patterns:
        hits = [n for n in modules if n and _matches(n, pattern)]
        if not hits:
            raise InjectError(f"{kind} pattern {pattern!r} matches no module. {_examples(modules)}")
        found[pattern] = hits
    return found


def _wrapped_bases(modules: Mapping[str, nn.Module]) -> set[str]:
    return {f"{n}.base" for n, m in modules.items() if isinstance(m, AdapterLinear)}


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every adapter parameter once: each layer's own plus the model's shared ones."""
    params = [p for _, layer in adapter_layers(model) for _, p in layer.adapter_named_parameters()]
    shared = getattr(model, SHARED_ATTR, None)
    if isinstance(shared, nn.Module):
        params += list(shared.parameters())
    return list({id(p): p for p in params}.values())


def _adapter_param_ids(model: nn.Module) -> set[int]:
    return {id(p) for p in adapter_parameters(model)}


def _count(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in {id(p): p for p in params}.values())


def inject(
    model: nn.Module,
    variant: str,
    *,
    targets: Sequence[str],
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    params: Mapping[str, Any] | None = None,
    trainable: Sequence[str] = (),
    checkpoint_adapter: bool = False,
) -> InjectReport:
    """Freeze ``model``, wrap every nn.Linear matching ``targets``, unfreeze ``trainable``.

    ``checkpoint_adapter`` recomputes each adapter's forward in backward instead of keeping
    its activations (the paper's † runs trade time for memory this way).
    """
    spec = get_variant(variant)
    hyper = build_params(variant, params)
    if isinstance(targets, str) or isinstance(trainable, str):
        raise InjectError("targets and trainable must be sequences of patterns, not a string")
    if not targets:
        raise InjectError("no target patterns given")
    modules = dict(model.named_modules())
    bases = _wrapped_bases(modules)

    # Validate everything before touching the model so a bad call leaves it unchanged.
    to_wrap: list[str] = []
    for pattern, hits in _match_all(modules, targets, "target").items():
        for name in hits:
            if isinstance(modules[name], AdapterLinear) or name in bases:
                raise InjectError(f"target {pattern!r}: module {name!r} is already wrapped")
            if not isinstance(modules[name], nn.Linear):
                kind = type(modules[name]).__name__
                raise InjectError(f"target {pattern!r} matches {name!r}, a {kind}, not nn.Linear")
            if name not in to_wrap:
                to_wrap.append(name)
    keep: list[str] = []
    for pattern, hits in _match_all(modules, trainable, "trainable").items():
        for name in hits:
            if (
                name in to_wrap
                or name in bases
                or any(isinstance(m, AdapterLinear) for m in modules[name].modules())
            ):
                raise InjectError(f"trainable {pattern!r} matches {name!r}, which holds adapters")
            keep.append(name)

    # Earlier adapters stay trainable so inject can be called again for other layers.
    existing = _adapter_param_ids(model)
    for p in model.parameters():
        if id(p) not in existing:
            p.requires_grad_(False)
    sites = [
        Site(n, n.rpartition(".")[2], modules[n].in_features, modules[n].out_features)
        for n in to_wrap
    ]
    first = modules[to_wrap[0]]
    shared = spec.layer_cls.make_shared(
        sites, rank=rank, alpha=alpha, params=hyper, **adapter_factory(first)
    )
    if shared is not None:
        if hasattr(model, SHARED_ATTR):
            raise InjectError(f"the model already holds shared adapter parameters ({SHARED_ATTR})")
        model.add_module(SHARED_ATTR, shared)
    for site in sites:
        parent_name, _, attr = site.name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = spec.layer_cls(
            modules[site.name], rank=rank, alpha=alpha, dropout=dropout, params=hyper,
            shared=shared, site=site,
        )  # fmt: skip
        layer.checkpoint_adapter = checkpoint_adapter
        setattr(parent, attr, layer)
    for name in keep:
        modules[name].requires_grad_(True)

    return InjectReport(
        wrapped=to_wrap,
        adapter_params=_count(p for p in adapter_parameters(model) if p.requires_grad),
        trainable_params=_count(p for p in model.parameters() if p.requires_grad),
        total_params=_count(model.parameters()),
    )


def adapter_layers(model: nn.Module) -> list[tuple[str, AdapterLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AdapterLinear)]


def merge_adapters(model: nn.Module) -> int:
    layers = adapter_layers(model)
    merged = [n for n, m in layers if m.merged]
    if merged:
        raise ValueError(f"{len(merged)} adapter layer(s) already merged, e.g. {merged[0]!r}")
    for _, layer in layers:
        layer.merge()
    return len(layers)


def unmerge_adapters(model: nn.Module) -> int:
    layers = adapter_layers(model)
    unmerged = [n for n, m in layers if not m.merged]
    if unmerged:
        raise ValueError(f"{len(unmerged)} adapter layer(s) not merged, e.g. {unmerged[0]!r}")
    for _, layer in layers:
        layer.unmerge()
    return len(layers)


def unwrap_adapters(model: nn.Module) -> int:
    """Put each merged adapter layer's base nn.Linear (holding W + ΔW) back in its place and
    drop the shared adapter module: the plain architecture again, as `from_pretrained` builds
    it. Irreversible (the adapters are gone), so every layer must be merged first."""
    layers = adapter_layers(model)
    unmerged = [n for n, m in layers if not m.merged]
    if unmerged:
        raise ValueError(f"{len(unmerged)} adapter layer(s) not merged, e.g. {unmerged[0]!r}")
    for name, layer in layers:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, layer.base)
    if isinstance(getattr(model, SHARED_ATTR, None), nn.Module):
        delattr(model, SHARED_ATTR)
    return len(layers)


def set_adapters_enabled(model: nn.Module, enabled: bool) -> int:
    layers = adapter_layers(model)
    for _, layer in layers:
        layer.disabled = not enabled
    return len(layers)


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Copies of every trainable parameter (adapters + trainable modules), by model name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_adapter_state_dict(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Strict inverse of adapter_state_dict; the key set is the model's trainable parameters."""
    if any(m.merged for _, m in adapter_layers(model)):
        raise AdapterStateError("unmerge adapters before loading adapter weights")
    own = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise AdapterStateError(
            f"adapter state mismatch: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)})"
        )
    for name, p in own.items():
        if tuple(state[name].shape) != tuple(p.shape):
            shape = tuple(state[name].shape)
            raise AdapterStateError(f"{name}: shape {shape} does not match {tuple(p.shape)}")
    for name, p in own.items():
        p.copy_(state[name])


def adapter_extra_state(model: nn.Module) -> dict[str, Tensor]:
    """What a checkpoint needs beyond trainable weights: persistent adapter buffers (masks,
    running statistics) and, for variants that rewrite it, the base weight."""
    state: dict[str, Tensor] = {}
    for name, layer in adapter_layers(model):
        if layer.modifies_base:
            state[f"{name}.base.weight"] = layer.base.weight.detach().clone()
        for key, value in layer.state_dict().items():
            if not key.startswith("base.") and not _is_parameter(layer, key):
                state[f"{name}.{key}"] = value.detach().clone()
    shared = getattr(model, SHARED_ATTR, None)
    if isinstance(shared, nn.Module):
        for key, value in shared.state_dict().items():
            if not _is_parameter(shared, key):
                state[f"{SHARED_ATTR}.{key}"] = value.detach().clone()
    return state


def _is_parameter(module: nn.Module, key: str) -> bool:
    return key in dict(module.named_parameters())


@torch.no_grad()
def load_adapter_extra_state(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    own = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise AdapterStateError(f"extra adapter state does not fit the model: {unknown[:5]}")
    for name, value in state.items():
        if own[name].shape != value.shape:
            raise AdapterStateError(
                f"{name}: shape {tuple(value.shape)} != {tuple(own[name].shape)}"
            )
        own[name].copy_(value)
