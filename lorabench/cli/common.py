"""What every command shares: the console, the --db option, and user-error handling."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console, RenderableType
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


PIPED_WIDTH = 200


def print_whole(renderable: RenderableType) -> None:
    """Print a table at its natural width when the output is not a terminal (a pipe, a file, a
    test's captured output): there is no width to fit, and rich would otherwise squeeze it into
    80 columns and cut its numbers to "1…". On a terminal, rich fits it to the window."""
    if console.is_terminal:
        console.print(renderable)
        return
    natural = console.measure(renderable, options=console.options.update_width(10_000))
    # Up to PIPED_WIDTH columns, more only where a word would be cut; long prose cells (a
    # variant's defaults) wrap there instead of making lines hundreds of characters long.
    width = max(console.width, min(natural.maximum, max(natural.minimum, PIPED_WIDTH)))
    # Console.print caps its `width` at the console's own: a console as wide as the table.
    Console(width=width, file=console.file).print(renderable)


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL or SQLite path (default ./lorabench.db; env LORABENCH_DB).",
        envvar="LORABENCH_DB",
        show_default=False,
    ),
]

# The job filters `report` and `results` share (applied by report.configs.narrow).
SweepOption = Annotated[str | None, typer.Option(help="Only this sweep.")]
TaskOption = Annotated[str | None, typer.Option(help="Only this task.")]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Only jobs whose config has FIELD=VALUE (repeatable; any config field, "
        "or variant_params.KEY / task_params.KEY)."
    ),
]

# Experiment tracking, for `work` and `quickstart` (validated by tracking_backends).
LogOption = Annotated[
    list[str] | None,
    typer.Option(
        "--log",
        metavar="NAME",
        help="Log every job to an experiment tracker: tensorboard, wandb or mlflow "
        "(repeatable; 'none': not even the sweep's). Default: the sweep's own `log`.",
    ),
]
LogDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Where TensorBoard event files, W&B runs and the MLflow file store go "
        "(WANDB_DIR, MLFLOW_TRACKING_URI override theirs). Default: --runs-dir.",
        show_default=False,
    ),
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user mistake into one red line and exit code 2, never a traceback.

    Besides lorabench's own errors: a file that cannot be read or written (OSError: a folder
    where a file was expected, a missing folder, no permission) and a database that fails in
    the middle of a command (damaged, locked beyond the busy timeout, gone).
    """
    from sqlalchemy.exc import DatabaseError

    from lorabench.config import ConfigError
    from lorabench.store import StoreError
    from lorabench.store.engine import database_error_reason

    try:
        yield
    except (ConfigError, StoreError, ValueError) as error:
        report_error(str(error))
    except OSError as error:
        if error.filename is not None and error.strerror:
            report_error(f"{error.filename}: {error.strerror}")
        report_error(str(error))
    except DatabaseError as error:
        report_error(f"database error: {database_error_reason(error)}")


def report_error(message: str) -> NoReturn:
    """Print `message` as one line on stderr (never wrapped, never read as markup); exit 2."""
    line = " ".join(message.split()) or "unknown error"
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


def require_int(option: str, value: int | None) -> None:
    """An integer option that reaches the database must fit its integer columns."""
    from lorabench.config import INT_MAX

    if value is not None and value > INT_MAX:
        raise ValueError(f"{option} must be at most {INT_MAX}, got {value}")


def require_finite(option: str, value: float | None) -> None:
    """Click's FloatRange lets nan through (every comparison with nan is false) and takes inf."""
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{option} must be a finite number, got {value}")


def tracking_backends(log: list[str] | None, log_dir: Path | None) -> tuple[str, ...] | None:
    """`--log` as backend names (None: the sweep decides; (): `--log none`), each installed."""
    from lorabench.tracking import install_hint, missing_backends, parse_backends

    if log_dir is not None and log_dir.exists() and not log_dir.is_dir():
        raise ValueError(f"--log-dir {log_dir} is a file; tracking files need a folder")
    if log is None:
        return None
    backends = parse_backends(log)
    for name in missing_backends(backends):
        raise ValueError(f"--log {name}: {install_hint(name)}")
    return backends


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
