"""What a variant declares (`VariantInfo`) and the catalog of every declared variant.

Torch-free: `lorabench.catalog.variants.<stem>` declares a variant (its hyperparameter dataclass
and a module-level `VARIANT`), `lorabench.variants.<stem>` implements it. Name checks and
hyperparameter validation (`plan`, `variants`) need only this module and the declarations.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lorabench.catalog._scan import by_name, declared
from lorabench.catalog.cost import LORA_COST, AdapterCost
from lorabench.errors import InvalidVariantParams, UnknownVariantError
from lorabench.suggest import unknown_name

FAMILIES = ("baseline", "rank", "optimization", "initialization", "moe")

# Declarations live in this package; modules whose name starts with "_" are shared helpers.
DECLARATIONS = "lorabench.catalog.variants"


@dataclass(frozen=True)
class NoParams:
    """Hyperparameters of a variant that has none beyond rank, alpha and dropout."""


@dataclass(frozen=True)
class VariantInfo:
    """Everything about one LoRA variant that is known without building it."""

    name: str
    params_cls: type
    family: str
    equations: str
    merges: bool
    summary: str
    # Where the variant knowingly differs from PEFT's or the paper's version; `lorabench variants`
    # prints it so nobody compares runs unaware.
    notes: str = ""
    # PEFT implements this variant, and the implementation can export to it.
    peft: bool = False
    # The module that implements (and registers) it, e.g. "lorabench.variants.dora".
    implementation: str = ""
    # Parameters, buffers and saved activations in closed form (`lorabench.memory` reads it).
    cost: AdapterCost = LORA_COST

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"variant {self.name!r}: family must be one of {FAMILIES}")
        if not (dataclasses.is_dataclass(self.params_cls) and isinstance(self.params_cls, type)):
            raise TypeError(f"variant {self.name!r}: params_cls must be a dataclass type")


@functools.cache
def variant_infos() -> Mapping[str, VariantInfo]:
    """Every declared variant by name (sorted): the `VARIANT` of each declaration module."""
    return by_name(_declared_variants(), "variant")


def _declared_variants() -> Iterator[tuple[str, VariantInfo]]:
    for module_name, expected, info in declared(DECLARATIONS, "VARIANT", "lorabench.variants"):
        if not isinstance(info, VariantInfo):
            raise TypeError(f"{module_name} must define VARIANT, a VariantInfo")
        if info.implementation != expected:
            raise ValueError(
                f"{module_name}: VARIANT.implementation is {info.implementation!r}, "
                f"expected {expected!r}"
            )
        yield module_name, info


def variant_names() -> list[str]:
    return list(variant_infos())


def get_variant_info(name: str) -> VariantInfo:
    try:
        return variant_infos()[name]
    except KeyError:
        message = unknown_name("variant", name, variant_names(), lister="lorabench variants")
        raise UnknownVariantError(message) from None


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
    cls = get_variant_info(name).params_cls
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
