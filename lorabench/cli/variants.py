"""`lorabench variants` and `lorabench tasks`: what can be planned."""

from __future__ import annotations

import dataclasses

from rich.table import Table

from lorabench.cli.common import console


def _defaults(params_cls: type) -> str:
    fields = dataclasses.fields(params_cls)
    return ", ".join(f"{f.name}={f.default!r}" for f in fields) or "—"


def variants_command() -> None:
    """Every variant: taxonomy family, equations, hyperparameter defaults, merge, PEFT."""
    from lorabench.variants import get_variant, variant_names

    table = Table(title="LoRA variants")
    for column in ("variant", "family", "equations", "hyperparameters (defaults)"):
        table.add_column(column, overflow="fold", no_wrap=column in ("variant", "family"))
    table.add_column("merges")
    table.add_column("PEFT")
    for name in variant_names():
        spec = get_variant(name)
        table.add_row(
            name, spec.family, spec.equations, _defaults(spec.params_cls),
            "yes" if spec.merges else "no", "yes" if spec.peft else "no",
        )  # fmt: skip
    console.print(table)


def tasks_command() -> None:
    """Every task: family, default model, metrics, download, task_params (defaults)."""
    from lorabench.tasks import get_task_info, task_names

    table = Table(title="tasks")
    columns = ("task", "family", "model", "metrics (primary first)", "download", "task_params")
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column == "task")
    for name in task_names():
        info = get_task_info(name)
        metrics = [info.primary_metric, *(m for m in info.metrics if m != info.primary_metric)]
        params = ", ".join(f"{k}={v!r}" for k, v in info.params_cls().model_dump().items())
        table.add_row(name, info.family, info.defaults.model, ", ".join(metrics),
                      "yes" if info.needs_download else "no", params or "—")  # fmt: skip
    console.print(table)
