"""`lorabench fetch`: what a sweep reads from the Hub, into the local cache for offline workers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lorabench.cli.common import console, err_console, split_list, user_errors

if TYPE_CHECKING:
    from lorabench.config import JobConfig
    from lorabench.fetch import Download


def fetch_command(
    sweep_file: Annotated[
        Path | None, typer.Argument(help="A sweep file (TOML): fetch what its jobs read.")
    ] = None,
    preset: Annotated[
        list[str] | None,
        typer.Option(help="A paper preset, e.g. paper-glue (repeatable).", show_default=False),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="Tasks, comma-separated, at their defaults.", show_default=False),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="List what would be downloaded; download nothing.")
    ] = False,
) -> None:
    """Download the models and datasets that a preset, sweep file or task reads into the
    Hugging Face cache ($HF_HOME), so workers on nodes without network find them
    (HF_HUB_OFFLINE=1). Gated models (Llama) need their licence accepted and a login first."""
    from lorabench.fetch import hf_home, needed

    with user_errors():
        jobs = _jobs(sweep_file, preset or [], split_list(task) or [])
        downloads = needed(jobs)
    _print_list(downloads, hf_home())
    if dry_run or not downloads:
        return
    _download(downloads)


def _jobs(sweep_file: Path | None, presets: list[str], tasks: list[str]) -> list[JobConfig]:
    from lorabench.cli.presets import load_preset, plan_preset
    from lorabench.config import ConfigError, SweepSpec, resolve_job

    if sweep_file is None and not presets and not tasks:
        raise ConfigError("say what to fetch: a sweep file, --preset NAME or --task NAMES")
    jobs: list[JobConfig] = []
    for name in presets:
        for _, spec in plan_preset(load_preset(name), {}).parts:
            jobs += spec.expand()
    if sweep_file is not None:
        jobs += SweepSpec.from_toml(sweep_file).expand()
    # One job per task at its defaults is all the listing needs (model and task params).
    jobs += [resolve_job({"task": name, "variant": "lora", "lr": 1e-4}) for name in tasks]
    return jobs


def _print_list(downloads: list[Download], home: Path) -> None:
    """One plain line per download (no table: names stay whole in a narrow terminal)."""
    if not downloads:
        console.print("nothing to download: every model and dataset is local or embedded")
        return
    # soft_wrap: a long cache path or name stays on one line, whole, to copy.
    console.print(f"from the Hugging Face Hub into {home} (HF_HOME):", highlight=False,
                  soft_wrap=True)  # fmt: skip
    labels = [d.name + (f" ({d.config})" if d.config else "") for d in downloads]
    width = max(map(len, labels))
    for d, label in zip(downloads, labels, strict=True):
        line = f"  {d.kind:<8} {label:<{width}}  {_tasks(d.tasks)}"
        console.print(line, highlight=False, soft_wrap=True)


def _tasks(names: tuple[str, ...]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{names[0]} … {names[-1]} ({len(names)})"


def _download(downloads: list[Download]) -> None:
    from lorabench.fetch import FetchError, fetch_dataset, fetch_model, offline_problem

    problem = offline_problem()
    if problem is not None:
        err_console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    failed = []
    for d in downloads:
        label = d.name + (f" ({d.config})" if d.config else "")
        console.print(f"fetching {d.kind} {label} …", highlight=False, soft_wrap=True)
        try:
            if d.kind == "model":
                console.print(f"  {fetch_model(d.name)}", highlight=False, soft_wrap=True)
            else:
                rows = fetch_dataset(d.name, d.config)
                sizes = ", ".join(f"{split} {n:,}" for split, n in rows.items())
                console.print(f"  {sizes}", highlight=False)
        except FetchError as error:
            failed.append(label)
            err_console.print(f"[bold red]failed:[/] {error}", highlight=False, soft_wrap=True)
    if failed:
        err_console.print(f"{len(failed)} of {len(downloads)} failed: {', '.join(failed)}")
        raise typer.Exit(1)
    console.print(f"[green]all {len(downloads)} fetched[/]")
