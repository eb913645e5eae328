"""Opening the database: URLs, SQLite pragmas, read-only mode, schema checks."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlmodel import Session, SQLModel

from lorabench.store.models import SCHEMA_VERSION, SchemaVersion

DEFAULT_DB = "lorabench.db"
BUSY_TIMEOUT_MS = 60_000
CONNECT_TIMEOUT_S = 10
NETWORK_FILESYSTEMS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "lustre", "glusterfs",
    "fuse.glusterfs", "ceph", "fuse.ceph", "gpfs", "beegfs", "afs", "ncpfs",
}  # fmt: skip


class StoreError(RuntimeError):
    """The database cannot be used as asked; the message says what to do."""


def normalise_url(db: str | None) -> str:
    """`None` means ./lorabench.db; a bare path means a SQLite file."""
    if not db:
        db = DEFAULT_DB
    return db if "://" in db else f"sqlite:///{db}"


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        raise StoreError(f"{url}: an in-memory database cannot be shared by workers; name a file")
    return Path(path.split("?", 1)[0])


def filesystem_type(path: Path) -> str | None:
    """The type of the mount holding `path` (Linux); None where /proc/mounts is unreadable."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def _refuse_network_filesystem(path: Path) -> None:
    fs = filesystem_type(path.parent if not path.exists() else path)
    if fs in NETWORK_FILESYSTEMS:
        raise StoreError(
            f"{path} is on a network filesystem ({fs}); SQLite's locking is unsafe there and "
            "workers on several machines would corrupt it. Use PostgreSQL: "
            "--db postgresql+psycopg://user:password@host/dbname"
        )


def open_engine(db: str | None, *, read_only: bool = False, create: bool = False) -> Engine:
    """An engine for `db`. Only `plan` passes create=True; report/status pass read_only=True."""
    url = normalise_url(db)
    path = sqlite_path(url)
    if path is None:
        return _open_server(url, read_only=read_only, create=create)
    if not path.exists() and not create:
        raise StoreError(
            f"no database at {path}; plan a sweep first (lorabench plan ...) or pass --db"
        )
    if create and not path.parent.exists():
        raise StoreError(f"cannot create {path}: folder {path.parent} does not exist")
    _refuse_network_filesystem(path)
    if read_only:
        return _sqlite_read_only(path)
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(f"{path} is read-only; workers and plan need to write to it")
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

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
        # Take the write lock up front: a deferred transaction that later writes can fail
        # with "database is locked" without waiting for busy_timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return _checked(engine, path, create=create)


@contextmanager
def opened(db: str | None, *, read_only: bool = False, create: bool = False) -> Iterator[Engine]:
    """`open_engine` for the length of a command; closing its connections at the end keeps
    SQLite's WAL checkpoint from happening later, at some garbage collection."""
    engine = open_engine(db, read_only=read_only, create=create)
    try:
        yield engine
    finally:
        engine.dispose()


def _sqlite_read_only(path: Path) -> Engine:
    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
        )  # fmt: skip
        connection.execute("PRAGMA query_only = ON")
        return connection

    engine = create_engine("sqlite://", creator=connect)
    return _checked(engine, path, create=False)


SERVER_URL_FORM = "postgresql+psycopg://user:password@host:5432/dbname"


def _open_server(url: str, *, read_only: bool, create: bool) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"{url!r} is not a database URL; give a SQLite path or {SERVER_URL_FORM}"
        ) from None
    if parsed.drivername == "postgresql":  # SQLAlchemy would pick psycopg2; we ship psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() != "postgresql":
        raise StoreError(
            f"{shown}: lorabench supports SQLite (a file path) and PostgreSQL ({SERVER_URL_FORM})"
        )
    connect_args: dict[str, object] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if read_only:  # report and status: the server itself refuses any write
        connect_args["options"] = "-c default_transaction_read_only=on"
    try:
        engine = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except ModuleNotFoundError as error:
        raise StoreError(
            f"{shown}: the PostgreSQL driver {error.name!r} is not installed; use "
            f"{SERVER_URL_FORM} after pip install 'lorabench[postgres]'"
        ) from None
    except (ArgumentError, NoSuchModuleError) as error:
        raise StoreError(f"cannot use database URL {shown}: {error}") from None
    return _checked(engine, shown, create=create)


def _checked(engine: Engine, where: object, *, create: bool) -> Engine:
    try:
        if create:
            create_schema(engine)
        else:
            check_schema(engine, where)
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        if engine.dialect.name == "postgresql":
            raise StoreError(
                f"cannot reach the database {where}: {reason}. Is the server running and the "
                "URL's host, port, user and password right?"
            ) from None
        raise StoreError(f"cannot open database {where}: {reason}") from None
    return engine


def create_schema(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        versions = session.exec(select(SchemaVersion.version)).scalars().all()
        newest = max(versions, default=None)
        if newest is not None and newest > SCHEMA_VERSION:
            raise StoreError(_newer_schema(newest))
        if newest is None:
            session.add(SchemaVersion(version=SCHEMA_VERSION, applied_at=time.time()))
            session.commit()


def check_schema(engine: Engine, where: object) -> None:
    if not inspect(engine).has_table("schema_version"):
        raise StoreError(f"{where} holds no lorabench schema; plan a sweep into it first")
    with Session(engine) as session:
        newest = session.exec(select(SchemaVersion.version)).scalars().all()
    if newest and max(newest) > SCHEMA_VERSION:
        raise StoreError(_newer_schema(max(newest)))


def _newer_schema(version: int) -> str:
    return (
        f"the database was written by a newer lorabench (schema {version}, this one knows "
        f"{SCHEMA_VERSION}); upgrade lorabench"
    )
