"""`lorabench --version`: the installed distribution's version, read from its metadata (no
lorabench module beyond the CLI's own is imported, so it answers as fast as `--help`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer


def installed_version() -> str:
    try:
        return version("lorabench")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"lorabench {installed_version()}")
        raise typer.Exit()


def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Benchmark LoRA variants fairly: plan sweeps, run workers, report the paper's tables."""
