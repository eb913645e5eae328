"""What differs between the database backends, behind one object per backend.

Everything in lorabench that depends on the backend asks its `Dialect`: the queue (inserting
past duplicates, locking the rows a claim looks at, the clock leases are measured by), the
engine (connection options, per-connection setup, error messages), the migrations (adding a
column if missing, serialising upgrades) and `slurm` (whether workers on several machines can
share the database). Nothing else branches on the backend's name.

A dialect is found by SQLAlchemy's backend name: `dialect_of(engine or connection)`, or
`for_url(url)` before any engine exists. A third backend is one more `Dialect` subclass,
listed in `DIALECTS`.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, Select, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.sql.dml import Insert

BUSY_TIMEOUT_MS = 60_000
CONNECT_TIMEOUT_S = 10


class Dialect:
    """One backend. The defaults suit a database that lives on one machine and needs no
    connection setup; subclasses override what their backend does differently."""

    name: ClassVar[str]  # SQLAlchemy's backend name: engine.dialect.name, URL.get_backend_name()
    label: ClassVar[str]  # for messages
    # Workers on several machines may use one database at once (a server, not a local file).
    shared_across_machines: ClassVar[bool] = False
    # How users name it to --db, for messages: "SQLite (a file path)".
    described: ClassVar[str]

    def insert_ignoring_duplicates(self, table: Any) -> Insert:
        """An INSERT that skips rows a unique constraint already holds."""
        raise NotImplementedError

    def lock_candidates(self, query: Select) -> Select:
        """`query` (a claim's candidate rows) as this backend lets concurrent claimers pass
        each other; unchanged where a write transaction already excludes the others."""
        return query

    def clock(self, conn: Connection) -> float:
        """Unix time now, by the clock every worker of this database agrees on."""
        return time.time()

    def connect_args(self, *, read_only: bool) -> dict[str, Any]:
        """The driver's connect() arguments."""
        return {}

    def server_url(self, url: URL) -> URL:
        """`url` with the driver lorabench ships filled in where the user named none."""
        return url

    def configure(self, engine: Engine) -> None:
        """Set up every connection and transaction of a new writable `engine`."""

    def lock_schema(self, conn: Connection) -> None:
        """Inside `conn`'s transaction, keep any other schema upgrade out until it ends."""

    def add_column(self, conn: Connection, table: str, column: str, sql_type: str) -> None:
        """`ALTER TABLE table ADD COLUMN column sql_type`, unless the column is there."""
        raise NotImplementedError

    def describe_error(self, error: DatabaseError, where: object, reason: str) -> str:
        """A one-line message for `error`, raised while opening the database `where`."""
        return f"cannot use the database {where}: {reason}"

    def missing_driver(self, shown: str, module: str | None) -> str:
        """The message for a driver module that is not installed."""
        return f"{shown}: the {self.label} driver {module!r} is not installed"


class SQLiteDialect(Dialect):
    """A file on one machine, whose clock all its workers share. Writes queue on the file's
    lock: every transaction begins IMMEDIATE, so one that later writes cannot fail with
    "database is locked" without waiting for busy_timeout."""

    name = "sqlite"
    label = "SQLite"
    described = "SQLite (a file path)"

    def insert_ignoring_duplicates(self, table: Any) -> Insert:
        return sqlite_insert(table).on_conflict_do_nothing()

    def connect_args(self, *, read_only: bool) -> dict[str, Any]:
        return {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}

    def configure(self, engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            # Let SQLAlchemy, not the driver, start transactions, so we can say IMMEDIATE.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection) -> None:  # noqa: ANN001
            # Take the write lock up front (this is also what serialises schema upgrades).
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    def add_column(self, conn: Connection, table: str, column: str, sql_type: str) -> None:
        present = {row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")

    def describe_error(self, error: DatabaseError, where: object, reason: str) -> str:
        if isinstance(error, OperationalError):
            return f"cannot open database {where}: {reason}"
        return damaged(Path(str(where)), reason)


class PostgresDialect(Dialect):
    """A server: workers on many machines, the server's clock for all of them (theirs may
    disagree), and row locks that concurrent claimers skip instead of waiting on."""

    name = "postgresql"
    label = "PostgreSQL"
    shared_across_machines = True
    url_form = "postgresql+psycopg://user:password@host:5432/dbname"
    described = f"PostgreSQL ({url_form})"

    def insert_ignoring_duplicates(self, table: Any) -> Insert:
        return pg_insert(table).on_conflict_do_nothing()

    def lock_candidates(self, query: Select) -> Select:
        # Concurrent claimers skip rows another transaction holds instead of queueing.
        return query.with_for_update(skip_locked=True)

    def clock(self, conn: Connection) -> float:
        return float(conn.execute(select(func.extract("epoch", func.clock_timestamp()))).scalar())

    def connect_args(self, *, read_only: bool) -> dict[str, Any]:
        args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
        if read_only:  # report and status: the server itself refuses any write
            args["options"] = "-c default_transaction_read_only=on"
        return args

    def server_url(self, url: URL) -> URL:
        if url.drivername == "postgresql":  # SQLAlchemy would pick psycopg2; we ship psycopg 3
            return url.set(drivername="postgresql+psycopg")
        return url

    def lock_schema(self, conn: Connection) -> None:
        # Self-conflicting, so a second upgrade waits; readers go on.
        conn.exec_driver_sql("LOCK TABLE schema_version IN EXCLUSIVE MODE")

    def add_column(self, conn: Connection, table: str, column: str, sql_type: str) -> None:
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {sql_type}")

    def describe_error(self, error: DatabaseError, where: object, reason: str) -> str:
        if isinstance(error, OperationalError):
            return (
                f"cannot reach the database {where}: {reason}. Is the server running and the "
                "URL's host, port, user and password right?"
            )
        return super().describe_error(error, where, reason)

    def missing_driver(self, shown: str, module: str | None) -> str:
        return (
            f"{shown}: the {self.label} driver {module!r} is not installed; use "
            f"{self.url_form} after pip install 'lorabench[postgres]'"
        )


SQLITE = SQLiteDialect()
POSTGRES = PostgresDialect()
DIALECTS: dict[str, Dialect] = {dialect.name: dialect for dialect in (SQLITE, POSTGRES)}


def dialect_of(bind: Engine | Connection) -> Dialect:
    """The dialect of an engine or connection."""
    name = bind.dialect.name
    try:
        return DIALECTS[name]
    except KeyError:
        raise NotImplementedError(f"database dialect {name!r} is not supported") from None


def for_url(url: str) -> Dialect | None:
    """The dialect a database URL names (`sqlite:///...`, `postgresql+psycopg://...`); None
    for a backend lorabench does not support (opening it says so)."""
    scheme = url.split(":", 1)[0] if ":" in url else ""
    return DIALECTS.get(scheme.split("+", 1)[0])


def supported() -> str:
    """The backends, as users name them: 'SQLite (a file path) and PostgreSQL (...)'."""
    return " and ".join(dialect.described for dialect in DIALECTS.values())


def damaged(path: Path, reason: str) -> str:
    """The message for a SQLite file that SQLite cannot read as a sound database."""
    if "not a database" in reason:
        return f"{path} is not a SQLite database ({reason}); --db names a lorabench database file"
    return (
        f"{path} is damaged ({reason}); restore it from a backup or plan into a new file; "
        "lorabench leaves it as it is"
    )
