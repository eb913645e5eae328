"""`lorabench results`: every job and every value it logged as one tidy table (csv, parquet,
jsonl), the same DataFrame `lorabench.load_results` returns (columns: report/results.py)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from lorabench.cli.common import (
    DbOption,
    SweepOption,
    TaskOption,
    WhereOption,
    err_console,
    split_list,
    user_errors,
)

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "jsonl")


def results_command(
    format_: Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")] = "csv",
    out: Annotated[
        Path | None,
        typer.Option(help="File to write (default: standard output; parquet needs a file)."),
    ] = None,
    sweep: SweepOption = None,
    task: TaskOption = None,
    where: WhereOption = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="Only these metric splits, comma-separated: train (per-step loss and lr), "
            "select, test, summary. Default: all."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Every job's config, state, attempts and metrics as one tidy table (csv, parquet, jsonl)."""
    from lorabench.api import load_results

    with user_errors():
        if format_ not in FORMATS:
            raise ValueError(f"--format {format_!r}: choose from {', '.join(FORMATS)}")
        if format_ == "parquet" and out is None:
            raise ValueError("--format parquet is binary: name a file with --out FILE")
        if out is not None and out.is_dir():
            raise ValueError(f"--out {out} is a folder; name a file")
        frame = load_results(db, sweep=sweep, task=task, where=where or [],
                             splits=split_list(split))  # fmt: skip
        write_results(frame, format_, out)
    if out is not None:
        err_console.print(f"wrote {out} ({len(frame)} rows)", highlight=False)


def write_results(frame: pd.DataFrame, fmt: str, out: Path | None) -> None:
    """`frame` as csv, parquet or jsonl to `out` (None: standard output; not for parquet)."""
    if fmt == "parquet":
        frame.to_parquet(out, index=False)
        return
    if out is None:
        try:
            _write_text(frame, fmt, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # `lorabench results | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    with out.open("w", encoding="utf-8", newline="") as stream:
        _write_text(frame, fmt, stream)


def _write_text(frame: pd.DataFrame, fmt: str, stream: TextIO) -> None:
    if fmt == "csv":
        frame.to_csv(stream, index=False, lineterminator="\n")
        return
    # JSON Lines through the json module: floats in full (pandas' to_json keeps 10 digits) and
    # missing values as null.
    columns = list(frame.columns)
    for row in frame.itertuples(index=False, name=None):
        record = {name: _plain(value) for name, value in zip(columns, row, strict=True)}
        stream.write(json.dumps(record, allow_nan=False) + "\n")


def _plain(value: object) -> object:
    """A cell as a JSON value: numpy scalars as Python ones, NaN/NA/None as null."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
