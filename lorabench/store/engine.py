"""Opening the database: URLs, SQLite pragmas, read-only mode, schema checks."""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError
from sqlmodel import Session, SQLModel

from lorabench.errors import StoreError
from lorabench.store.dialects import (
    BUSY_TIMEOUT_MS,
    DIALECTS,
    POSTGRES,
    SQLITE,
    damaged,
    dialect_of,
    supported,
)
from lorabench.store.models import SCHEMA_VERSION, SchemaVersion

DEFAULT_DB = "lorabench.db"
NETWORK_FILESYSTEMS = {
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "lustre", "glusterfs",
    "fuse.glusterfs", "ceph", "fuse.ceph", "gpfs", "beegfs", "afs", "ncpfs",
}  # fmt: skip


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


def open_engine(
    db: str | None, *, read_only: bool = False, create: bool = False, allow_older: bool = False
) -> Engine:
    """An engine for `db`. Only `plan` passes create=True; report/status pass read_only=True.

    A database whose schema is older than this lorabench's is refused (it names `lorabench db
    upgrade`), except with `allow_older`, which only the `db` commands pass."""
    url = normalise_url(db)
    path = sqlite_path(url)
    if path is None:
        return _open_server(url, read_only=read_only, create=create, allow_older=allow_older)
    if not path.exists() and not create:
        raise StoreError(
            f"no database at {path}; plan a sweep first (lorabench plan ...) or pass --db"
        )
    if create and not path.exists() and not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise StoreError(f"cannot create {path}: {path.parent} {what}")
    _refuse_network_filesystem(path)
    if path.exists():
        _check_sqlite_file(path, create=create)
    if read_only:
        return _sqlite_read_only(path, allow_older=allow_older)
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(f"{path} is read-only; workers and plan need to write to it")
    engine = create_engine(f"sqlite:///{path}", connect_args=SQLITE.connect_args(read_only=False))
    SQLITE.configure(engine)
    return _checked(engine, path, create=create, allow_older=allow_older)


@contextmanager
def opened(
    db: str | None, *, read_only: bool = False, create: bool = False, allow_older: bool = False
) -> Iterator[Engine]:
    """`open_engine` for the length of a command; closing its connections at the end keeps
    SQLite's WAL checkpoint from happening later, at some garbage collection."""
    engine = open_engine(db, read_only=read_only, create=create, allow_older=allow_older)
    try:
        yield engine
    finally:
        engine.dispose()


def _read_only_uri(path: Path) -> str:
    # A URI, so `?`, `#` and `%` in a file name must be escaped.
    return f"file:{urllib.parse.quote(str(path))}?mode=ro"


def _check_sqlite_file(path: Path, *, create: bool) -> None:
    """Refuse what is not a sound SQLite database before anything can write to it.

    Runs SQLite's `quick_check` (reads every page; tens of milliseconds for a 40 MB queue) on
    a read-only connection, so a damaged file, or another program's file, is left exactly as
    it was. `create` (plan) also refuses a SQLite database of another program: its tables
    are not lorabench's to add to.
    """
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a database file; --db names a file")
    if not path.is_file():
        raise StoreError(f"{path} is not a regular file; --db names a SQLite database file")
    sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    existed = [side.exists() for side in sidecars]
    problem = None
    try:
        connection = sqlite3.connect(_read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            rows = connection.execute("PRAGMA quick_check(1)").fetchall()
            tables = [
                name for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            ]  # fmt: skip
        finally:
            connection.close()
    except sqlite3.OperationalError as error:  # locked beyond the timeout, unreadable, ...
        raise StoreError(f"cannot open database {path}: {error}") from None
    except sqlite3.DatabaseError as error:
        problem = damaged(path, str(error))
    else:
        result = " ".join(str(row[0]) for row in rows).replace("*** in database main ***", "")
        if result.strip() != "ok":
            problem = damaged(path, f"SQLite's quick_check: {' '.join(result.split())}")
        elif create and tables and "schema_version" not in tables:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            problem = (
                f"{path} is a SQLite database of another program (tables: {shown}); "
                "lorabench will not add its tables to it: give --db a new file"
            )
    if problem is not None:
        # A read-only open of a WAL database leaves empty -wal/-shm files: take back ours.
        for side, was_there in zip(sidecars, existed, strict=True):
            if not was_there:
                side.unlink(missing_ok=True)
        raise StoreError(problem)


def _sqlite_read_only(path: Path, *, allow_older: bool) -> Engine:
    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(
            _read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
        )  # fmt: skip
        connection.execute("PRAGMA query_only = ON")
        return connection

    engine = create_engine("sqlite://", creator=connect)
    return _checked(engine, path, create=False, allow_older=allow_older)


SERVER_URL_FORM = POSTGRES.url_form


def hide_password(url: str) -> str:
    """`url` with any password replaced by ***, for messages (it may not even parse)."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _open_server(url: str, *, read_only: bool, create: bool, allow_older: bool) -> Engine:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as error:
        detail = "" if isinstance(error, ArgumentError) else f" ({error})"
        raise StoreError(
            f"{hide_password(url)!r} is not a database URL{detail}; give a SQLite path "
            f"or {SERVER_URL_FORM}"
        ) from None
    dialect = DIALECTS.get(parsed.get_backend_name())
    if dialect is None or not dialect.shared_across_machines:
        shown = parsed.render_as_string(hide_password=True)
        raise StoreError(f"{shown}: lorabench supports {supported()}")
    parsed = dialect.server_url(parsed)
    shown = parsed.render_as_string(hide_password=True)
    try:
        engine = create_engine(
            parsed, pool_pre_ping=True, connect_args=dialect.connect_args(read_only=read_only)
        )
    except ModuleNotFoundError as error:
        raise StoreError(dialect.missing_driver(shown, error.name)) from None
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise StoreError(f"cannot use database URL {shown}: {error}") from None
    dialect.configure(engine)
    return _checked(engine, shown, create=create, allow_older=allow_older)


def _checked(engine: Engine, where: object, *, create: bool, allow_older: bool = False) -> Engine:
    try:
        check_schema(engine, where, create=create, allow_older=allow_older)
    except StoreError:
        engine.dispose()
        raise
    except DatabaseError as error:
        engine.dispose()
        reason = database_error_reason(error)
        raise StoreError(dialect_of(engine).describe_error(error, where, reason)) from None
    return engine


def database_error_reason(error: DatabaseError) -> str:
    """The driver's first line (no SQL, no parameters, no link to SQLAlchemy's docs)."""
    text = str(error.orig).strip() if error.orig is not None else str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def create_schema(engine: Engine) -> None:
    """A new database: every table, at SCHEMA_VERSION."""
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        versions = session.exec(select(SchemaVersion.version)).scalars().all()
        newest = max(versions, default=None)
        if newest is not None and newest > SCHEMA_VERSION:
            raise StoreError(newer_schema(newest))
        if newest is None:
            session.add(SchemaVersion(version=SCHEMA_VERSION, applied_at=time.time()))
            session.commit()


def check_schema(engine: Engine, where: object, *, create: bool, allow_older: bool) -> None:
    """Refuse a database this lorabench cannot use as it is, before anything writes to it.

    Only a new database (no `schema_version` table, or one left empty by a creation cut short)
    is given the schema, and only with `create`. An older schema is never upgraded here: that
    is `lorabench db upgrade`'s job alone."""
    if not inspect(engine).has_table("schema_version"):
        if not create:
            raise StoreError(f"{where} holds no lorabench schema; plan a sweep into it first")
        create_schema(engine)
        return
    with Session(engine) as session:
        versions = session.exec(select(SchemaVersion.version)).scalars().all()
    newest = max(versions, default=None)
    if newest is None:
        if create:
            create_schema(engine)
        return
    if newest > SCHEMA_VERSION:
        raise StoreError(newer_schema(newest))
    if newest < SCHEMA_VERSION and not allow_older:
        raise StoreError(older_schema(newest, where))


def older_schema(version: int, where: object) -> str:
    return (
        f"database {where} has schema version {version}, this lorabench needs "
        f"{SCHEMA_VERSION}: run `lorabench db upgrade --db {shlex.quote(str(where))}` "
        "(back it up first)"
    )


def newer_schema(version: int) -> str:
    return (
        f"the database was written by a newer lorabench (schema {version}, this one knows "
        f"{SCHEMA_VERSION}); upgrade lorabench"
    )
