"""One configuration per cell: which config fields set jobs apart, how rows are labelled, the
sensitivity base point, and `--where` filters. Shared by every table and figure.

Seeds of one configuration (equal `group_hash`) are the only jobs ever pooled. A table or figure
has its own axes (task, lr, ...); any other field that takes two values among jobs sharing the
axes and the variant labels every row ("lora bs=16"), so two configurations never share a cell.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from pydantic import TypeAdapter, ValidationError

from lorabench.report.load import COMPOUND_FIELDS, META_COLUMNS, Data
from lorabench.suggest import unknown_name

# Short names in row labels; task and model are shown as their value alone; "†" marks
# checkpointing.
FIELD_LABELS = {"rank": "r", "alpha": "α", "batch_size": "bs"}
BARE_FIELDS = ("task", "model")
# Not a configuration (seed: what is pooled) or shown through their flattened keys.
NOT_GROUPED = ("seed", *COMPOUND_FIELDS)


class NothingToReport(ValueError):
    """The selection holds nothing this table or figure can show (exit 2, one line)."""


def job_fields() -> tuple[str, ...]:
    from lorabench.config import JOB_FIELDS

    return JOB_FIELDS


def config_fields(jobs: pd.DataFrame) -> list[str]:
    """The config columns of ``jobs`` in JobConfig's order (flattened keys after their field)."""
    order = {name: i for i, name in enumerate(job_fields())}

    def key(column: str) -> tuple[int, str]:
        base = column.split(".", 1)[0]
        return (order.get(base, len(order)), column)

    columns = [c for c in jobs.columns if c not in META_COLUMNS and c not in NOT_GROUPED]
    return sorted(columns, key=key)


def _hashable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def varying_fields(jobs: pd.DataFrame, axes: Sequence[str] = ()) -> list[str]:
    """Fields besides ``axes`` (and the variant) that differ among jobs sharing those values."""
    keys = [a for a in (*axes, "variant") if a in jobs.columns]
    fields = [f for f in config_fields(jobs) if f not in keys]
    if jobs.empty or not fields:
        return []
    frame = jobs[[*keys, *fields]].map(_hashable).astype(object)
    if not keys:
        counts = frame[fields].nunique(dropna=False)
    else:
        counts = frame.groupby(keys, dropna=False)[fields].nunique(dropna=False).max()
    varying = set(counts[counts > 1].index)
    return [f for f in fields if f in varying]


def format_number(value: Any) -> str:
    """Integers as integers; floats short (%g) when that reads back exactly, else in full."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return f"{value:g}"
    text = f"{value:g}"
    return text if float(text) == value else repr(value)


def format_lr(lr: float) -> str:
    """Shortest scientific notation that still reads back as ``lr``: 1e-04, 2.5e-04."""
    for digits in range(7):
        text = f"{lr:.{digits}e}"
        if math.isclose(float(text), lr, rel_tol=1e-9, abs_tol=0.0):
            return text
    return f"{lr:.6e}"


def format_field(field: str, value: Any) -> str:
    """One part of a row label: "r=16", "bs=32", "max_basis_dim=1024", "†" ("" for unset)."""
    value = _hashable(value)
    if field == "adapter_checkpointing":
        return "†" if value else ""
    if value is None:
        return ""
    if field in BARE_FIELDS:
        return str(value)
    name = FIELD_LABELS.get(field, field.split(".", 1)[-1])
    shown = format_lr(float(value)) if field == "lr" else format_number(value)
    return f"{name}={shown}"


def row_labels(
    jobs: pd.DataFrame, axes: Sequence[str] = (), *, always: Sequence[str] = ()
) -> pd.Series:
    """Per job: the variant followed by every field that varies besides ``axes`` (and the
    fields in ``always``), e.g. "dora r=16 α=32"; a Series aligned with ``jobs``."""
    shown = [*always, *(f for f in varying_fields(jobs, axes) if f not in always)]
    shown = [f for f in shown if f in jobs.columns]
    labels = []
    for _, job in jobs.iterrows():
        parts = [str(job["variant"]), *(format_field(f, job[f]) for f in shown)]
        labels.append(" ".join(p for p in parts if p))
    return pd.Series(labels, index=jobs.index, dtype=object)


def base_point(jobs: pd.DataFrame, axes: Sequence[str]) -> dict[str, Any]:
    """Per axis its most frequent value among ``jobs`` (unset counts as a value; ties: the
    smallest, unset last): the shared point every sensitivity panel and block varies around."""
    base: dict[str, Any] = {}
    for axis in axes:
        values = [_hashable(v) for v in jobs[axis]] if axis in jobs.columns else []
        if not values:
            base[axis] = None
            continue
        counts = pd.Series(values, dtype=object).value_counts(dropna=False)
        top = [_hashable(v) for v in counts[counts == counts.max()].index]
        base[axis] = sorted(top, key=lambda v: (v is None, v if v is not None else 0))[0]
    return base


def at_value(column: pd.Series, value: Any) -> pd.Series:
    """Where ``column`` equals ``value`` (None: where unset)."""
    if value is None:
        return column.isna()
    return column.map(_hashable) == value


# --------------------------------------------------------------------------- --where


def parse_where(items: Sequence[str], jobs: pd.DataFrame) -> list[tuple[str, Any]]:
    """``FIELD=VALUE`` filters, each value read as the field's type; an unknown field or a value
    the field cannot take is a ValueError naming it."""
    from lorabench.config import JobConfig

    filters = []
    for item in items:
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name:
            raise ValueError(f"--where {item!r}: expected FIELD=VALUE, e.g. --where batch_size=16")
        if name in JobConfig.model_fields and name not in COMPOUND_FIELDS:
            value = _typed(name, raw, JobConfig.model_fields[name].annotation, item)
        elif name in COMPOUND_FIELDS:
            value = json.dumps(_json(raw), sort_keys=True)
        elif name.split(".", 1)[0] in COMPOUND_FIELDS and name in jobs.columns:
            value = _json(raw)
        else:
            known = [f for f in job_fields() if f != "seed"] + sorted(
                c for c in jobs.columns if "." in c
            )
            message = unknown_name("field", name, known, listed_as="fields")
            raise ValueError(f"--where {item!r}: {message}")
        filters.append((name, value))
    return filters


def _typed(name: str, raw: str, annotation: Any, item: str) -> Any:
    if raw.lower() in ("none", "null"):
        raw_value: Any = None
    elif name == "targets":
        raw_value = [t.strip() for t in raw.split(",") if t.strip()]
    else:
        raw_value = raw
    try:
        value = TypeAdapter(annotation).validate_python(raw_value)
    except ValidationError as error:
        message = error.errors()[0]["msg"]
        raise ValueError(f"--where {item!r}: {name} {message[0].lower()}{message[1:]}") from None
    return ",".join(value) if name == "targets" else value


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def field_values(jobs: pd.DataFrame, name: str) -> pd.Series:
    """Column `name` of `jobs`, where a top-level config field a job's stored config leaves out
    reads as the field's default: fields added later (select_split, base_dtype) are stored only
    when they differ from it, so that older jobs keep their hash."""
    from lorabench.config import JobConfig

    column = jobs[name] if name in jobs.columns else pd.Series(None, index=jobs.index, dtype=object)
    spec = JobConfig.model_fields.get(name)
    if spec is None or spec.is_required() or name in COMPOUND_FIELDS or not column.isna().any():
        return column
    default = spec.get_default(call_default_factory=True)
    if default is None or isinstance(default, dict | list | tuple):
        return column
    return column.astype(object).where(column.notna(), default)


def apply_where(data: Data, filters: Sequence[tuple[str, Any]]) -> Data:
    mask = pd.Series(True, index=data.jobs.index)
    for name, value in filters:
        mask &= at_value(field_values(data.jobs, name), value)
    return data.only(mask)


def narrow(data: Data, *, task: str | None = None, where: Sequence[str] = ()) -> Data:
    """The jobs `--task` and `--where FIELD=VALUE` select, for every command that takes them
    (report, results). A task no selected job has is an error, not an empty selection: a
    misspelt one gets the catalog's "did you mean", a real one the tasks the jobs have."""
    filters = parse_where(where, data.jobs)
    if task is not None:
        present = sorted(str(t) for t in data.jobs["task"].dropna().unique())
        if present and task not in present:
            from lorabench.catalog.task import get_task_info

            get_task_info(task)  # raises for a name no task has
            raise ValueError(f"no jobs of task {task!r}; tasks of the jobs: {', '.join(present)}")
        data = data.only(data.jobs["task"] == task)
    return apply_where(data, filters)
