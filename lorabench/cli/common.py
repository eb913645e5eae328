"""What every command shares: the console, the --db option, and user-error handling."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL or SQLite path (default ./lorabench.db; env LORABENCH_DB).",
        envvar="LORABENCH_DB",
        show_default=False,
    ),
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user mistake into one red line and exit code 2, never a traceback."""
    from lorabench.config import ConfigError
    from lorabench.store import StoreError

    try:
        yield
    except (ConfigError, StoreError, ValueError, FileNotFoundError) as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None


def split_list(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    return [item.strip() for item in raw.split(",") if item.strip()]


def quiet_libraries() -> None:
    """Offline by design: keep Hugging Face from reaching for a hub or printing telemetry."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
