"""`lorabench variants` and `lorabench tasks`: what can be planned."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lorabench.cli.common import console, print_whole, user_errors
from lorabench.cli.memory import print_task_memory

if TYPE_CHECKING:
    from lorabench.catalog.task import TaskInfo


def _defaults(params_cls: type) -> str:
    fields = dataclasses.fields(params_cls)
    return ", ".join(f"{f.name}={f.default!r}" for f in fields) or "—"


def variants_command() -> None:
    """Every variant: taxonomy family, equations, hyperparameter defaults, merge, PEFT, notes."""
    from lorabench.catalog.variant import get_variant_info, variant_names

    table = Table(title="LoRA variants")
    for column in ("variant", "family", "equations", "hyperparameters (defaults)"):
        table.add_column(column, overflow="fold", no_wrap=column in ("variant", "family"))
    table.add_column("merges")
    table.add_column("PEFT")
    for name in variant_names():
        info = get_variant_info(name)
        table.add_row(
            name, info.family, info.equations, _defaults(info.params_cls),
            "yes" if info.merges else "no", "yes" if info.peft else "no",
        )  # fmt: skip
    print_whole(table)
    for name in variant_names():
        note = get_variant_info(name).notes
        if note:
            # Unwrapped, so a note reads (and can be searched for) as one line.
            console.print(f"[bold]{name}[/]: {escape(note)}", highlight=False, soft_wrap=True)


def tasks_command(
    name: Annotated[str | None, typer.Argument(help="Show one task in full.")] = None,
) -> None:
    """Every task: family, default model, metrics, whether it needs a download."""
    from lorabench.catalog.task import get_task_info, task_names

    with user_errors():
        if name is not None:
            _task_details(get_task_info(name))
            return
    table = Table(title="tasks (lorabench tasks NAME for defaults and task_params)")
    for column in ("task", "family", "model", "metrics (primary first)", "download"):
        table.add_column(column, overflow="fold", no_wrap=column in ("task", "family"))
    for task in task_names():
        info = get_task_info(task)
        table.add_row(task, info.family, info.defaults.model, ", ".join(_metrics(info)),
                      "yes" if info.needs_download else "no")  # fmt: skip
    print_whole(table)


def _metrics(info: TaskInfo) -> list[str]:
    return [info.primary_metric, *(m for m in info.metrics if m != info.primary_metric)]


def _task_details(info: TaskInfo) -> None:
    table = Table(title=f"{info.name}: {info.summary}", show_header=False)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("family", info.family)
    table.add_row("metrics (primary first)", ", ".join(_metrics(info)))
    table.add_row("needs download", "yes" if info.needs_download else "no")
    for field, value in dataclasses.asdict(info.defaults).items():
        table.add_row(f"default {field}", repr(value))
    for field, value in info.params_cls().model_dump().items():
        table.add_row(f"task_params.{field}", repr(value))
    if "sandbox" in info.params_cls.model_fields:
        table.add_row("code sandbox here", _sandbox_here())
    print_whole(table)
    print_task_memory(info.name)


def _sandbox_here() -> str:
    from lorabench.sandbox import strong_sandbox_problem

    problem = strong_sandbox_problem()
    if problem is None:
        return "strong (bubblewrap) available"
    return f"strong UNAVAILABLE: {problem}; evaluation refuses unless task_params sandbox='weak'"
