"""Tables and figures register themselves, so a new one is one function in one file.

    @register_table("glue", paper=True)
    def glue(data: Data, scoring: Scoring, compare: bool) -> ReportTable | list[ReportTable]: ...

    @register_figure("overhead")
    def overhead(data: Data, scoring: Scoring) -> Figure: ...

Every module of `lorabench.report.tables` is imported on first lookup, which fills the
registries (the only module state; written once, at import). `paper=True` says the paper printed
numbers for the table, so `--compare paper` has something to put beside ours; otherwise
`no_paper` says why not.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lorabench.suggest import unknown_name

TableBuilder = Callable[..., Any]
FigureBuilder = Callable[..., Any]


@dataclass(frozen=True)
class TableSpec:
    name: str
    build: TableBuilder
    paper: bool = False
    no_paper: str = ""


_TABLES: dict[str, TableSpec] = {}
_FIGURES: dict[str, FigureBuilder] = {}


def register_table(
    name: str, *, paper: bool = False, no_paper: str = ""
) -> Callable[[TableBuilder], TableBuilder]:
    def register(build: TableBuilder) -> TableBuilder:
        if name in _TABLES:
            raise ValueError(f"table {name!r} is already registered")
        _TABLES[name] = TableSpec(name, build, paper, no_paper)
        return build

    return register


def register_figure(name: str) -> Callable[[FigureBuilder], FigureBuilder]:
    def register(build: FigureBuilder) -> FigureBuilder:
        if name in _FIGURES:
            raise ValueError(f"figure {name!r} is already registered")
        _FIGURES[name] = build
        return build

    return register


def _import_all() -> None:
    import lorabench.report.figures  # noqa: F401
    import lorabench.report.tables as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def table_names() -> list[str]:
    _import_all()
    return sorted(_TABLES)


def figure_names() -> list[str]:
    _import_all()
    return sorted(_FIGURES)


def get_table(name: str) -> TableSpec:
    if name not in table_names():
        raise ValueError(unknown_name("table", name, table_names(), listed_as="available tables"))
    return _TABLES[name]


def get_figure(name: str) -> FigureBuilder:
    if name not in figure_names():
        known = figure_names()
        raise ValueError(unknown_name("figure", name, known, listed_as="available figures"))
    return _FIGURES[name]


def build_tables(name: str, data: Any, scoring: Any, *, compare: bool = False) -> list[Any]:
    """The registered table ``name`` (a list: the lr table is one per task), with notes saying
    what ``--compare paper`` could not do."""
    spec = get_table(name)
    built = spec.build(data, scoring, compare)
    tables = built if isinstance(built, list) else [built]
    for table in tables if compare else []:
        if not spec.paper:
            table.notes.insert(0, f"--compare paper: {spec.no_paper}; nothing to compare.")
        if scoring.select == "val":
            table.notes.insert(
                0, "--select val beside the paper's numbers, which were chosen on the test split."
            )
    return tables
