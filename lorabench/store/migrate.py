"""Versioned schema upgrades, applied only by `lorabench db upgrade`.

Every other command refuses a database whose schema is older than `SCHEMA_VERSION` (see
`engine.require_current`): a shared PostgreSQL database must not change under workers of an
older lorabench because some process happened to open it first, so the upgrade is an
explicit step, taken when the operator chooses (after a backup).

Each `Step` brings the schema from `version - 1` to `version`. A step describes the schema
as it was at its version (the outcome table below is spelled out, not taken from the model,
which may change later), and checks what is already there, so a database that already has
the column or table is not harmed. All pending steps, and the rows recording them in
`schema_version`, are one transaction under a lock: on SQLite the engine begins every
transaction with BEGIN IMMEDIATE (one writer at a time); on PostgreSQL a self-conflicting
lock on `schema_version` (readers go on); see `dialects.Dialect.lock_schema`. A second
`db upgrade` running at the same time waits, then finds nothing left to do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    select,
    update,
)
from sqlmodel.sql.sqltypes import AutoString

from lorabench.store.dialects import dialect_of
from lorabench.store.models import SCHEMA_VERSION, SchemaVersion


@dataclass(frozen=True)
class Step:
    version: int  # the schema version this step brings the database to
    does: str  # what it did, for `db upgrade`'s report
    apply: Callable[[Connection], None]


def _add_column(table: str, column: str, sql_type: str) -> Callable[[Connection], None]:
    """A column nullable or with a default, so the rows written before stay valid."""

    def apply(conn: Connection) -> None:
        dialect_of(conn).add_column(conn, table, column, sql_type)

    return apply


# The outcome table as schema 3 made it (models.Outcome today). The two stubs only let its
# foreign keys name their targets; they are never created.
_V3 = MetaData()
Table("job", _V3, Column("id", Integer, primary_key=True))
Table("attempt", _V3, Column("id", Integer, primary_key=True))
OUTCOME_V3 = Table(
    "outcome",
    _V3,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("job.id"), nullable=False, index=True),
    Column("attempt_id", Integer, ForeignKey("attempt.id"), nullable=False),
    Column("split", AutoString, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    UniqueConstraint("job_id", "attempt_id", "split", "epoch"),
)


def _create_table(table: Table) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        table.create(conn, checkfirst=True)  # with its indexes

    return apply


# The sweep table's columns that step 4 reads and writes, as schema 4 has them.
_V4 = MetaData()
SWEEP_V4 = Table(
    "sweep",
    _V4,
    Column("id", Integer, primary_key=True),
    Column("spec", Text, nullable=False),
    Column("pack", Integer, nullable=False),
)


def planned_pack(spec_json: str) -> int:
    """The pack a sweep stored before schema 4 was planned with, read from its spec JSON as
    lorabench wrote it up to then: a sweep file's spec has `pack` at the top, and so does a
    preset's since `pack` was put there; before that a preset's spec held it in each of its
    `sweeps` (all the same: flags give every part the same). 1 where none is found."""
    try:
        spec = json.loads(spec_json or "{}")
    except ValueError:
        return 1
    if not isinstance(spec, dict):
        return 1
    pack = spec.get("pack")
    parts = spec.get("sweeps")
    if pack is None and isinstance(parts, list) and parts and isinstance(parts[0], dict):
        pack = parts[0].get("pack")
    return pack if isinstance(pack, int) and not isinstance(pack, bool) and pack > 1 else 1


def _add_sweep_pack(conn: Connection) -> None:
    _add_column("sweep", "pack", "INTEGER NOT NULL DEFAULT 1")(conn)
    for sweep_id, spec_json in conn.execute(select(SWEEP_V4.c.id, SWEEP_V4.c.spec)).all():
        pack = planned_pack(spec_json)
        if pack != 1:
            row = and_(SWEEP_V4.c.id == sweep_id, SWEEP_V4.c.pack == 1)  # not set already
            conn.execute(update(SWEEP_V4).where(row).values(pack=pack))


# The tables schema 6 made for successive halving (models.Bracket and models.Rung today).
_V6 = MetaData()
Table("sweep", _V6, Column("id", Integer, primary_key=True))
Table("job", _V6, Column("id", Integer, primary_key=True))
Table("attempt", _V6, Column("id", Integer, primary_key=True))
BRACKET_V6 = Table(
    "bracket",
    _V6,
    Column("id", Integer, primary_key=True),
    Column("sweep_id", Integer, ForeignKey("sweep.id"), nullable=False, index=True),
    Column("key", AutoString, nullable=False, unique=True),
    Column("eta", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)
RUNG_V6 = Table(
    "rung",
    _V6,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("job.id"), nullable=False, index=True),
    Column("attempt_id", Integer, ForeignKey("attempt.id"), nullable=False),
    Column("rung", Integer, nullable=False),
    Column("step", Integer, nullable=False),
    Column("score", Float),
    Column("test_score", Float),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("job_id", "rung"),
)


def _add_halving(conn: Connection) -> None:
    _add_column("sweep", "search", "TEXT")(conn)
    _create_table(BRACKET_V6)(conn)
    _create_table(RUNG_V6)(conn)
    _add_column("job", "bracket_id", "INTEGER")(conn)
    _add_column("job", "arm", "VARCHAR")(conn)
    _add_column("job", "rung", "INTEGER NOT NULL DEFAULT 0")(conn)
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_job_bracket_id ON job (bracket_id)")


STEPS: tuple[Step, ...] = (
    Step(2, "added worker.process_start", _add_column("worker", "process_start", "TEXT")),
    Step(3, "created table outcome", _create_table(OUTCOME_V3)),
    Step(4, "added sweep.pack", _add_sweep_pack),
    Step(5, "added sweep.tracking", _add_column("sweep", "tracking", "TEXT")),
    Step(6, "added successive halving (bracket, rung, job.rung)", _add_halving),
)
assert [step.version for step in STEPS] == list(range(2, SCHEMA_VERSION + 1))


@dataclass(frozen=True)
class UpgradeResult:
    before: int
    after: int
    done: tuple[str, ...]  # what each applied step did, in order

    def describe(self) -> str:
        if not self.done:
            return f"already at schema {self.after}"
        return f"schema {self.before} -> {self.after}: {', '.join(self.done)}"


def stored_version(conn: Connection) -> int | None:
    """The newest version recorded in `schema_version`; None when nothing is recorded."""
    return conn.execute(select(func.max(SchemaVersion.version))).scalar()


def upgrade(engine: Engine) -> UpgradeResult:
    """Apply the pending steps to the database behind `engine` (opened writable, with
    `allow_older=True`), in one locked transaction; a database already current is left alone."""
    from lorabench.store.engine import StoreError, newer_schema

    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, the write lock, taken first
        dialect_of(conn).lock_schema(conn)
        before = stored_version(conn)
        if before is None:
            raise StoreError(
                "the database records no schema version (its creation was cut short?); "
                "plan a sweep into it, or into a new database"
            )
        if before > SCHEMA_VERSION:
            raise StoreError(newer_schema(before))
        done = []
        for step in STEPS:
            if step.version <= before:
                continue
            step.apply(conn)
            record = SchemaVersion.__table__.insert()
            conn.execute(record.values(version=step.version, applied_at=time.time()))
            done.append(step.does)
    return UpgradeResult(before=before, after=max(before, SCHEMA_VERSION), done=tuple(done))
