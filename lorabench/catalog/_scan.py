"""How the catalog finds its declarations: one rule for variants and tasks."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any


def declared(package: str, attribute: str, implementations: str) -> Iterator[tuple[str, str, Any]]:
    """(module name, the implementation module it must name, its `attribute` or None) for every
    declaration module of `package`; modules whose names start with `_` are shared helpers."""
    for module_info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if module_info.name.startswith("_"):
            continue
        module_name = f"{package}.{module_info.name}"
        value = getattr(importlib.import_module(module_name), attribute, None)
        yield module_name, f"{implementations}.{module_info.name}", value


def by_name(entries: Iterable[tuple[str, Any]], kind: str) -> Mapping[str, Any]:
    """(declaring module, info) pairs as a read-only mapping sorted by name; a name declared
    twice is an error."""
    found: dict[str, Any] = {}
    where: dict[str, str] = {}
    for module_name, info in entries:
        if info.name in found:
            raise ValueError(
                f"{kind} {info.name!r} is declared twice: in {where[info.name]} and {module_name}"
            )
        found[info.name] = info
        where[info.name] = module_name
    return MappingProxyType(dict(sorted(found.items())))
