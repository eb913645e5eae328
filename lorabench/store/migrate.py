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
lock on `schema_version` (readers go on). A second `db upgrade` running at the same time
waits, then finds nothing left to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    UniqueConstraint,
    func,
    select,
)
from sqlmodel.sql.sqltypes import AutoString

from lorabench.store.models import SCHEMA_VERSION, SchemaVersion


@dataclass(frozen=True)
class Step:
    version: int  # the schema version this step brings the database to
    does: str  # what it did, for `db upgrade`'s report
    apply: Callable[[Connection], None]


def _add_column(table: str, column: str, sql_type: str) -> Callable[[Connection], None]:
    """A nullable column, so the rows written before stay valid."""

    def apply(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            sql = f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {sql_type}"
            conn.exec_driver_sql(sql)
            return
        present = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")

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


STEPS: tuple[Step, ...] = (
    Step(2, "added worker.process_start", _add_column("worker", "process_start", "TEXT")),
    Step(3, "created table outcome", _create_table(OUTCOME_V3)),
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
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE schema_version IN EXCLUSIVE MODE")
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
