"""A database that cannot be used is one red line and exit code 2, never a traceback."""

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.store import open_engine
from lorabench.store.models import SCHEMA_VERSION, SchemaVersion

PLAN = ["plan", "--task", "noop", "--variant", "lora", "--lr", "1e-3"]
COMMANDS = (["status"], ["report", "--table", "lr"], ["work", "--exit-when-empty"], PLAN)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def assert_refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in " ".join(result.output.split()), result.output


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_unreachable_server_names_it_and_hides_the_password(command):
    url = f"postgresql+psycopg://lab:s3cret@127.0.0.1:{closed_port()}/sweeps"
    result = invoke(*command, "--db", url)
    assert_refused(result, "cannot reach the database", "lab:***@127.0.0.1", "Connection refused")
    assert "s3cret" not in result.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://lab@db/sweeps", "supports SQLite (a file path) and PostgreSQL"),
        ("://nowhere", "is not a database URL"),
        ("postgresql+psycopg2://lab@db/sweeps", "driver 'psycopg2' is not installed"),
    ],
)
def test_wrong_url_says_which_forms_work(url: str, message: str):
    assert_refused(invoke("status", "--db", url), message, "postgresql+psycopg://")


def test_missing_database_file(tmp_path: Path):
    for command in COMMANDS[:3]:
        assert_refused(invoke(*command, "--db", str(tmp_path / "none.db")), "no database at")


def test_read_only_database_file_is_refused_for_writers_only(tmp_path: Path, monkeypatch):
    db = tmp_path / "sweeps.db"
    assert invoke(*PLAN, "--db", str(db)).exit_code == 0
    db.chmod(0o444)
    # The tests may run as root, whom permission bits do not stop: ask as an ordinary user.
    monkeypatch.setattr("lorabench.store.engine.os.access", lambda path, mode: False)
    for command in (["work", "--exit-when-empty"], PLAN):
        assert_refused(invoke(*command, "--db", str(db)), "is read-only")
    assert invoke("status", "--db", str(db)).exit_code == 0  # readers are fine


def test_schema_from_a_newer_lorabench(db_url: str):
    engine = open_engine(db_url, create=True)
    with engine.begin() as conn:
        conn.execute(SchemaVersion.__table__.insert().values(version=SCHEMA_VERSION + 1,
                                                             applied_at=0))  # fmt: skip
    engine.dispose()
    for command in COMMANDS:
        assert_refused(invoke(*command, "--db", db_url), "newer lorabench", "upgrade lorabench")


def test_sqlite_on_a_network_filesystem_points_to_postgresql(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("lorabench.store.engine.filesystem_type", lambda path: "nfs4")
    result = invoke(*PLAN, "--db", str(tmp_path / "shared.db"))
    assert_refused(result, "network filesystem (nfs4)", "Use PostgreSQL")
    assert not (tmp_path / "shared.db").exists()
