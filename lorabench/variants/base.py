"""Adapter layer base class, variant specs and the variant registry."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FAMILIES = ("baseline", "rank", "optimization", "initialization", "moe")


class UnknownVariantError(ValueError):
    """Raised for a variant name that is not registered."""


class InvalidVariantParams(ValueError):
    """Raised for variant hyperparameters that the variant does not accept."""


@dataclass(frozen=True)
class NoParams:
    """Hyperparameters of a variant that has none beyond rank, alpha and dropout."""


class AdapterLinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (Eq. (1))."""

    variant_name: ClassVar[str] = "abstract"
    params_cls: ClassVar[type] = NoParams

    def __init__(
        self,
        base: nn.Linear,
        *,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        params: Any = None,
    ) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{type(self).__name__} wraps nn.Linear, got {type(base).__name__}")
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if params is None:
            params = self.params_cls()
        if not isinstance(params, self.params_cls):
            raise TypeError(
                f"{type(self).__name__} expects params of type {self.params_cls.__name__}, "
                f"got {type(params).__name__}"
            )
        self.base = base
        base.requires_grad_(False)
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.rank = rank
        self.alpha = float(alpha)
        self.params = params
        # Eq. (134) applies dropout to the adapter input only, never to the frozen path.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.disabled = False

    # --- to be provided by subclasses -------------------------------------------------------
    @property
    def scaling(self) -> float:
        raise NotImplementedError

    def reset_adapter_parameters(self) -> None:
        raise NotImplementedError

    def delta_weight(self) -> Tensor:
        """Dense (out_features, in_features) update that merge() adds to the base weight."""
        raise NotImplementedError

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Fallback only: materialising the dense delta costs O(out*in) per call.
        delta = self.delta_weight()
        return F.linear(x.to(delta.dtype), delta)

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        """Closed-form number of trainable parameters one wrapped layer adds."""
        raise NotImplementedError

    # --- shared behaviour -------------------------------------------------------------------
    @property
    def weight(self) -> Tensor:
        # Model code sometimes reads layer.weight (e.g. for its dtype); point it at the base.
        return self.base.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    def adapter_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Parameters owned by the adapter itself (everything except the frozen base)."""
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("base.")]

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        if self.merged and self.disabled:
            # Base output without unmerging; exact up to the rounding of merge itself.
            return out - self.adapter_forward(x).to(out.dtype)
        if self.merged or self.disabled:
            return out
        return out + self.adapter_forward(self.dropout(x)).to(out.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            raise ValueError(f"{self.variant_name} adapter is already merged; call unmerge() first")
        weight = self.base.weight
        weight.add_(self.delta_weight().to(weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            raise ValueError(f"{self.variant_name} adapter is not merged; nothing to unmerge")
        weight = self.base.weight
        weight.sub_(self.delta_weight().to(weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"variant={self.variant_name}, rank={self.rank}, alpha={self.alpha:g}, "
            f"scaling={self.scaling:.4g}, merged={self.merged}, disabled={self.disabled}"
        )


Hook = Callable[..., Any]


@dataclass(frozen=True)
class VariantSpec:
    """Everything the benchmark needs to know about one LoRA variant."""

    name: str
    layer_cls: type[AdapterLinear]
    params_cls: type
    family: str
    equations: str
    merges: bool
    peft: bool
    summary: str
    prepare: Hook | None = None
    param_groups: Hook | None = None
    on_step: Hook | None = None
    extra_loss: Hook | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"variant {self.name!r}: family must be one of {FAMILIES}")
        if not (dataclasses.is_dataclass(self.params_cls) and isinstance(self.params_cls, type)):
            raise TypeError(f"variant {self.name!r}: params_cls must be a dataclass type")
        if self.params_cls is not self.layer_cls.params_cls:
            raise ValueError(
                f"variant {self.name!r}: params_cls {self.params_cls.__name__} differs from "
                f"{self.layer_cls.__name__}.params_cls {self.layer_cls.params_cls.__name__}"
            )
        if self.layer_cls.variant_name != self.name:
            raise ValueError(
                f"variant {self.name!r}: {self.layer_cls.__name__}.variant_name is "
                f"{self.layer_cls.variant_name!r}"
            )


# The only module-level mutable state: filled once at import by the variant modules.
_REGISTRY: dict[str, VariantSpec] = {}


def register(spec: VariantSpec) -> VariantSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"variant {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def variant_names() -> list[str]:
    return sorted(_REGISTRY)


def get_variant(name: str) -> VariantSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        allowed = ", ".join(variant_names())
        raise UnknownVariantError(f"unknown variant {name!r}; allowed: {allowed}") from None


def _type_ok(value: Any, hint: Any) -> bool:
    # Only plain scalar hints are checked; anything richer is left to __post_init__.
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    return True


def build_params(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """Validated hyperparameter dataclass for ``name``; missing fields take paper defaults."""
    spec = get_variant(name)
    cls = spec.params_cls
    values = dict(values or {})
    fields = {f.name for f in dataclasses.fields(cls)}
    allowed = ", ".join(sorted(fields)) or "(none)"
    unknown = sorted(set(values) - fields)
    if unknown:
        raise InvalidVariantParams(
            f"variant {name!r}: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}"
        )
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if not _type_ok(value, hints.get(key)):
            raise InvalidVariantParams(
                f"variant {name!r}: parameter {key}={value!r} is not a valid {hints[key].__name__}"
            )
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise InvalidVariantParams(f"variant {name!r}: {exc}; allowed: {allowed}") from exc
