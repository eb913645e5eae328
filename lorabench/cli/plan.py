"""`lorabench plan`: expand a sweep into jobs in the queue."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# The planner lives in the Python API (`lorabench.plan`); the command parses flags and prints.
from lorabench.api import job_rows, plan  # noqa: F401  (job_rows: also imported from here)
from lorabench.cli.common import DbOption, console, split_list, user_errors

if TYPE_CHECKING:
    from lorabench.api import Planned
    from lorabench.search_cost import SearchEstimate

# Flags that name one JobConfig axis each; a comma-separated value sweeps it.
AXIS_FLAGS = {
    "task": "Task name(s), e.g. bbc-news.",
    "model": "Model name(s) or local path(s).",
    "variant": "Variant name(s), e.g. lora,rslora.",
    "lr": "Learning rate(s), e.g. 1e-5,1e-4.",
    "seed": "Seed(s).",
    "rank": "LoRA rank(s).",
    "alpha": "LoRA alpha(s).",
    "dropout": "Adapter dropout(s).",
    "epochs": "Epoch count(s).",
    "max_steps": "Optimizer steps (overrides epochs).",
    "batch_size": "Batch size(s).",
    "grad_accum": "Gradient accumulation step(s).",
    "precision": "fp32 or bf16.",
    "base_dtype": "dtype of the frozen base weights: fp32, bf16 (needs precision bf16) or auto "
    "(the checkpoint's own); adapters and optimizer state stay fp32.",
    "schedule": "linear or cosine.",
    "max_length": "Maximum sequence length(s).",
    "train_size": "Training examples used.",
    "eval_size": "Evaluation examples used (per evaluated split: test, and select).",
    "select_split": "Hold out a select split from training to choose epochs and learning rates "
    "on (true, the default), or not (false: the paper's protocol); true,false plans both.",
}


def parse_scalar(text: str) -> Any:
    """'1e-4' -> 1e-4, '8' -> 8, 'true' -> True, 'lora' -> 'lora' (TOML's rules)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except ValueError:  # an integer of more than 4,300 digits, which Python will not convert
        raise ValueError(
            f"{text[:20]}...: a number of {len(text)} digits is far too large"
        ) from None


def parse_set(assignments: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {assignment!r}")
        values[key.strip()] = parse_scalar(raw.strip())
    return values


def collect_overrides(
    flags: dict[str, str | None], targets: str | None, assignments: list[str]
) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for field, raw in flags.items():
        items = split_list(raw)
        if items is not None:
            overrides[field] = [parse_scalar(item) for item in items]
    if targets is not None:
        overrides["targets"] = split_list(targets)
    overrides.update(parse_set(assignments))
    return overrides


def plan_command(
    sweep_file: Annotated[
        Path | None, typer.Argument(help="Sweep file (TOML); flags override its keys.")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="Plan a paper preset, e.g. paper-glue (flags override).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Sweep name (default: file stem or preset name).")
    ] = None,
    task: Annotated[str | None, typer.Option(help=AXIS_FLAGS["task"])] = None,
    model: Annotated[str | None, typer.Option(help=AXIS_FLAGS["model"])] = None,
    variant: Annotated[str | None, typer.Option(help=AXIS_FLAGS["variant"])] = None,
    lr: Annotated[str | None, typer.Option(help=AXIS_FLAGS["lr"])] = None,
    seed: Annotated[str | None, typer.Option(help=AXIS_FLAGS["seed"])] = None,
    rank: Annotated[str | None, typer.Option(help=AXIS_FLAGS["rank"])] = None,
    alpha: Annotated[str | None, typer.Option(help=AXIS_FLAGS["alpha"])] = None,
    dropout: Annotated[str | None, typer.Option(help=AXIS_FLAGS["dropout"])] = None,
    epochs: Annotated[str | None, typer.Option(help=AXIS_FLAGS["epochs"])] = None,
    max_steps: Annotated[str | None, typer.Option(help=AXIS_FLAGS["max_steps"])] = None,
    batch_size: Annotated[str | None, typer.Option(help=AXIS_FLAGS["batch_size"])] = None,
    grad_accum: Annotated[str | None, typer.Option(help=AXIS_FLAGS["grad_accum"])] = None,
    precision: Annotated[str | None, typer.Option(help=AXIS_FLAGS["precision"])] = None,
    base_dtype: Annotated[str | None, typer.Option(help=AXIS_FLAGS["base_dtype"])] = None,
    schedule: Annotated[str | None, typer.Option(help=AXIS_FLAGS["schedule"])] = None,
    max_length: Annotated[str | None, typer.Option(help=AXIS_FLAGS["max_length"])] = None,
    train_size: Annotated[str | None, typer.Option(help=AXIS_FLAGS["train_size"])] = None,
    eval_size: Annotated[str | None, typer.Option(help=AXIS_FLAGS["eval_size"])] = None,
    select_split: Annotated[str | None, typer.Option(help=AXIS_FLAGS["select_split"])] = None,
    targets: Annotated[
        str | None, typer.Option(help="Module patterns to adapt, comma-separated (one value).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any other field: key=value (TOML value), repeatable."),
    ] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Tries per job (default 3).")] = None,
    priority: Annotated[int | None, typer.Option(help="Lower runs first (default 0).")] = None,
    pack: Annotated[
        int | None,
        typer.Option(
            help="Workers train up to K of these jobs together when they differ only "
            "in learning rate (default 1; `work --pack` overrides)."
        ),
    ] = None,  # fmt: skip
    log: Annotated[
        list[str] | None,
        typer.Option(
            "--log",
            metavar="NAME",
            help="Workers log these jobs to an experiment tracker: tensorboard, wandb or "
            "mlflow (repeatable; `work --log` overrides).",
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            help="How learning rates are searched: grid (every job in full, the default) or "
            "halving (successive halving: the best 1/eta go on at each rung; see README)."
        ),
    ] = None,
    eta: Annotated[
        int | None, typer.Option(help="Halving: each rung keeps the best 1/eta (default 3).")
    ] = None,
    min_budget: Annotated[
        int | None,
        typer.Option(help="Halving: the first rung's length, in --budget-unit (default 1)."),
    ] = None,
    budget_unit: Annotated[
        str | None, typer.Option(help="Halving: epochs (default) or steps.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate and count; write nothing.")] = False,
    max_jobs_per_plan: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Refuse a sweep whose cross product has more jobs than this (default 100,000; "
            "counted before any job is built, --dry-run too).",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Expand a sweep (file and/or flags) into jobs; jobs already planned are not added again."""
    flags = {
        "task": task, "model": model, "variant": variant, "lr": lr, "seed": seed, "rank": rank,
        "alpha": alpha, "dropout": dropout, "epochs": epochs, "max_steps": max_steps,
        "batch_size": batch_size, "grad_accum": grad_accum, "precision": precision,
        "base_dtype": base_dtype, "schedule": schedule, "max_length": max_length,
        "train_size": train_size, "eval_size": eval_size, "select_split": select_split,
    }  # fmt: skip
    with user_errors():
        overrides = collect_overrides(flags, targets, set_ or [])
        meta = (("name", name), ("max_attempts", max_attempts), ("priority", priority),
                ("pack", pack))  # fmt: skip
        for key, value in meta:
            if value is not None:
                overrides[key] = value
        if log is not None:
            overrides["log"] = log
        search_flags = {"method": search, "eta": eta, "min_budget": min_budget,
                        "unit": budget_unit}  # fmt: skip
        if any(v is not None for v in search_flags.values()):
            overrides["search"] = {k: v for k, v in search_flags.items() if v is not None}
        result = plan(
            sweep_file, overrides, db=db, dry_run=dry_run, preset=preset,
            max_jobs=max_jobs_per_plan,
        )  # fmt: skip
    if dry_run:
        print_estimate(result)
        return
    console.print(
        f"sweep [bold]{result.sweep}[/]: [green]{result.new} new[/] jobs, "
        f"{result.existing} already present"
    )


def print_estimate(result: Planned) -> None:
    from lorabench.cli.memory import print_memory
    from lorabench.cli.presets import ESTIMATE_NOTE, format_hours

    console.print(f"sweep [bold]{result.sweep}[/]: {result.jobs} jobs (dry run)")
    if len(result.parts) > 1:
        for label, count, hours in result.parts:
            console.print(f"  {label}: {count} jobs, ~{format_hours(hours)} GPU-hours")
    full = " as a full grid" if result.search else ""
    console.print(f"estimated GPU-hours: ~{format_hours(result.gpu_hours or 0.0)}{full}")
    if result.search:
        print_search(result.search)
    console.print(f"({ESTIMATE_NOTE})", style="dim", highlight=False)
    print_memory(result.memory)


def print_search(estimate: SearchEstimate) -> None:
    """A halving sweep's expected epochs and GPU-hours against its full grid's."""
    from lorabench.cli.presets import format_hours

    search = estimate.search
    unit = search.unit.removesuffix("s") if search.min_budget == 1 else search.unit
    epochs = ""
    if estimate.grid_epochs:  # none known: every job has max_steps and unknown steps per epoch
        epochs = (f"~{format_hours(estimate.expected_epochs)} of the full grid's "
                  f"{format_hours(estimate.grid_epochs)} epochs "
                  f"({estimate.epoch_fraction:.1%}), ")  # fmt: skip
    console.print(
        f"search halving (eta {search.eta}, first rung {search.min_budget} {unit}), "
        f"{estimate.brackets} bracket(s): expected {epochs}"
        f"~{format_hours(estimate.expected_gpu_hours)} of "
        f"~{format_hours(estimate.grid_gpu_hours)} GPU-hours",
        highlight=False,
    )
    for assumption in estimate.assumptions:
        console.print(f"({assumption})", style="dim", highlight=False)
