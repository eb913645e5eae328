"""A throwaway PostgreSQL cluster for the tests: initdb in a temp folder, a free local port.

The server binary comes from the distribution's packages (Debian: `postgresql`). Without one
the PostgreSQL tests are skipped with that reason, except where LORABENCH_REQUIRE_POSTGRES=1
(CI sets it), where a missing server fails the run instead.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REQUIRE_ENV = "LORABENCH_REQUIRE_POSTGRES"


class NoPostgres(RuntimeError):
    pass


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: PATH first, then Debian's versioned folders."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    for folder in reversed(folders):
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    port: int
    root: Path  # holds data/ (the cluster) and server.log
    binaries: Path
    options: str  # the server's command-line settings (port, socket folder, no fsync)
    run_as: pwd.struct_passwd | None
    _names: itertools.count

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"lorabench_test_{next(self._names)}"
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def _run(self, *args: str) -> None:
        user = {} if self.run_as is None else {"user": self.run_as.pw_uid}
        subprocess.run(args, check=True, capture_output=True, text=True, **user)

    def pause(self, seconds: float) -> None:
        """Stop the server (dropping every connection), stay down `seconds`, start it again."""
        data = str(self.root / "data")
        self._run(str(self.binaries / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop")
        time.sleep(seconds)
        self._run(str(self.binaries / "pg_ctl"), "-D", data, "-l", str(self.root / "server.log"),
                  "-o", self.options, "-w", "start")  # fmt: skip

    def stop(self) -> None:
        try:
            self._run(str(self.binaries / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                      "immediate", "stop")  # fmt: skip
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer:
    """initdb + pg_ctl start with settings for throwaway data (no fsync); raises NoPostgres."""
    binaries = server_binaries()
    if binaries is None:
        raise NoPostgres(
            "no PostgreSQL server binary (initdb) on this machine; install the distribution's "
            "postgresql package to run the PostgreSQL tests"
        )
    # PostgreSQL refuses to run as root: use the package's own user (or nobody) then.
    run_as = None
    if os.geteuid() == 0:
        for name in ("postgres", "nobody"):
            try:
                run_as = pwd.getpwnam(name)
                break
            except KeyError:
                continue
    root = Path(tempfile.mkdtemp(prefix="lorabench-pg-"))
    if run_as is not None:
        os.chown(root, run_as.pw_uid, run_as.pw_gid)
    port = _free_port()
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    server = PostgresServer(port, root, binaries, options, run_as, itertools.count())
    try:
        server._run(str(binaries / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-sync")  # fmt: skip
        server._run(str(binaries / "pg_ctl"), "-D", str(root / "data"), "-l",
                    str(root / "server.log"), "-o", options, "-w", "start")  # fmt: skip
    except subprocess.CalledProcessError as error:
        log = root / "server.log"
        detail = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise NoPostgres(f"could not start PostgreSQL: {error.stderr or error}\n{detail}") from None
    return server
