"""Databases of an older lorabench keep working, through `lorabench db upgrade` only.

tests/data/schema1.db was written by the released lorabench (schema 1; remade by
tests/data/make_schema1_db.sh), and tests/data/schema1-lr-table-noop.csv is what that release's
`report --table lr` printed for it. Every other command refuses the old database with the
upgrade hint and leaves it byte for byte as it was; after the upgrade the report is the same
and workers go on with it. PostgreSQL gets the same upgrade on a version-1 database built here.
"""

import csv
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, select, text
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.cli.plan import job_rows
from lorabench.store import (
    MetricRow,
    StoreError,
    claim,
    claim_pack,
    enqueue,
    finish,
    open_engine,
    register_worker,
)
from lorabench.store import migrate as migrate_module
from lorabench.store.migrate import STEPS, upgrade
from lorabench.store.models import SCHEMA_VERSION, Job, Metric, SchemaVersion, Sweep, Worker

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "schema1.db"
RELEASED_LR_TABLE = DATA / "schema1-lr-table-noop.csv"
UPGRADED = (
    "schema 1 -> 6: added worker.process_start, created table outcome, added sweep.pack, "
    "added sweep.tracking, added successive halving (bracket, rung, job.rung)"
)
ALL_VERSIONS = list(range(1, SCHEMA_VERSION + 1))
PLAN = ["plan", "--task", "noop", "--variant", "lora", "--lr", "1e-3"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def assert_refused(result, *fragments: str) -> None:
    """Exit 2 through lorabench's own error path: one stderr line, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def upgrade_hint(db: str) -> str:
    return (
        f"database {db} has schema version 1, this lorabench needs {SCHEMA_VERSION}: "
        f"run `lorabench db upgrade --db {db}` (back it up first)"
    )


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A copy of the released lorabench's database, in a folder of its own."""
    folder = tmp_path / "db"
    folder.mkdir()
    db = folder / "schema1.db"
    shutil.copyfile(FIXTURE, db)
    return db


def assert_untouched(db: Path) -> None:
    """The file as the release left it, and nothing waiting in a WAL to be written into it."""
    assert db.read_bytes() == FIXTURE.read_bytes()
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert sorted(p.name for p in db.parent.iterdir()) <= sorted(
        [db.name, wal.name, db.name + "-shm"]
    )


def versions(url: str) -> list[int]:
    engine = open_engine(url, read_only=True, allow_older=True)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(select(SchemaVersion.version)).scalars())
    finally:
        engine.dispose()


def finished_cells(path: Path) -> list[tuple[str, float, float, float | None, int]]:
    """The lr table's finished cells as (variant, lr, mean, std, n), sorted: the numbers that
    must stay the same whatever else the CSV shows. Reads the release's layout (one row per
    variant and lr: `variant,lr,mean,std,n,...`) and the later one (one row per table cell:
    `block,row,column,mean,std,n,...`, the row naming the variant first, the column the lr)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    cells = []
    for row in rows:
        if "variant" in row:
            variant, lr = row["variant"], row["lr"]
        else:
            variant, lr = row["row"].split()[0], row["column"]
        try:
            lr_value = float(lr)
        except ValueError:  # a "best LR" column
            continue
        if not row["n"] or int(float(row["n"])) == 0:
            continue
        std = float(row["std"]) if row["std"] else None
        cells.append((variant, lr_value, float(row["mean"]), std, int(float(row["n"]))))
    return sorted(cells)


def fixture_rows(db: Path, sql: str) -> list[tuple]:
    """Rows read straight from a SQLite file; `immutable` keeps SQLite from making -shm and
    -wal files next to the fixture (it is in WAL mode, as the release left it)."""
    connection = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


# --- the released database, refused until upgraded ------------------------------------------


def test_the_fixture_is_a_released_schema_1_database():
    assert fixture_rows(FIXTURE, "SELECT version FROM schema_version") == [(1,)]
    states = fixture_rows(FIXTURE, "SELECT state, count(*) FROM job GROUP BY state")
    assert dict(states) == {"done": 8, "failed": 1, "queued": 1}
    tables = {name for (name,) in fixture_rows(FIXTURE, "SELECT name FROM sqlite_master")}
    assert "outcome" not in tables
    columns = {row[1] for row in fixture_rows(FIXTURE, "PRAGMA table_info(worker)")}
    assert "process_start" not in columns
    assert FIXTURE.stat().st_size < 200_000


def test_every_command_refuses_an_older_schema_and_leaves_it_as_it_was(
    old_db: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a default ./reports or ./runs would land here
    db = str(old_db)
    commands = {
        "status": ["status"],
        "status-watch": ["status", "--watch", "--iterations", "1"],
        "report": ["report", "--table", "lr", "--format", "csv,md", "--out", "reports"],
        "work": ["work", "--gpu", "cpu", "--exit-when-empty", "--runs-dir", "runs"],
        "plan": PLAN,
        "cancel": ["cancel", "--jobs", "10"],
        "retry": ["retry"],
        "export": ["export", "1", "adapter"],
    }
    for name, command in commands.items():
        result = invoke(*command, "--db", db)
        assert_refused(result, upgrade_hint(db))
        assert_untouched(old_db)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["db"], name  # nothing written
    # A dry run never opens the database: it plans nothing, so it has nothing to refuse.
    assert invoke(*PLAN, "--dry-run", "--db", db).exit_code == 0
    assert_untouched(old_db)


def test_db_version_reads_the_old_schema_without_changing_it(old_db: Path):
    result = invoke("db", "version", "--db", str(old_db))
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.split()
        == (
            f"schema 1; this lorabench needs {SCHEMA_VERSION}: run `lorabench db upgrade "
            f"--db {old_db}` (back it up first)"
        ).split()
    )
    assert_untouched(old_db)


def test_db_upgrade_brings_the_release_database_up_once(old_db: Path):
    first = invoke("db", "upgrade", "--db", str(old_db))
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == UPGRADED
    assert versions(str(old_db)) == ALL_VERSIONS
    again = invoke("db", "upgrade", "--db", str(old_db))
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == f"already at schema {SCHEMA_VERSION}"
    assert versions(str(old_db)) == ALL_VERSIONS
    shown = invoke("db", "version", "--db", str(old_db))
    assert shown.stdout.strip() == f"schema {SCHEMA_VERSION} (current)"


def test_upgraded_release_database_reports_what_the_release_reported(old_db: Path, tmp_path):
    assert invoke("db", "upgrade", "--db", str(old_db)).exit_code == 0
    before = old_db.read_bytes()
    out = tmp_path / "reports"
    result = invoke("report", "--table", "lr", "--format", "csv", "--out", str(out),
                    "--db", str(old_db))  # fmt: skip
    assert result.exit_code == 0, result.output
    released = finished_cells(RELEASED_LR_TABLE)
    assert [cell[:2] for cell in released] == [
        (variant, lr) for variant in ("dora", "lora") for lr in (0.01, 0.1)
    ]
    assert all(cell[4] == 2 and cell[3] is not None for cell in released)  # two seeds each
    (written,) = out.glob("*.csv")  # lr-table-noop.csv
    assert finished_cells(written) == released
    assert old_db.read_bytes() == before  # report only reads


def test_after_the_upgrade_workers_go_on_and_old_results_stay(old_db: Path, tmp_path: Path):
    old_metrics = fixture_rows(
        FIXTURE, "SELECT job_id, attempt_id, split, name, step, epoch, value FROM metric"
    )
    assert invoke("db", "upgrade", "--db", str(old_db)).exit_code == 0
    planned = invoke(*PLAN, "--seed", "7", "--db", str(old_db))
    assert planned.exit_code == 0, planned.output
    work = invoke("work", "--gpu", "cpu", "--exit-when-empty", "--poll-seconds", "0.2",
                  "--runs-dir", str(tmp_path / "runs"), "--db", str(old_db))  # fmt: skip
    assert work.exit_code == 0, work.output
    engine = open_engine(str(old_db), read_only=True)
    try:
        with engine.connect() as conn:
            jobs = dict(conn.execute(select(Job.id, Job.state)).all())
            metrics = conn.execute(
                select(Metric.job_id, Metric.attempt_id, Metric.split, Metric.name,
                       Metric.step, Metric.epoch, Metric.value).where(Metric.job_id <= 10)
            ).all()  # fmt: skip
            identities = conn.execute(select(Worker.id, Worker.process_start)).all()
    finally:
        engine.dispose()
    # The release's queued job (10) and the new one (11) ran; failed job 9 stays failed.
    assert jobs == {**{i: "done" for i in range(1, 9)}, 9: "failed", 10: "done", 11: "done"}
    assert sorted(row for row in metrics if row[0] <= 8) == sorted(old_metrics)
    assert any(row[0] == 10 for row in metrics)
    old_workers = {row[0] for row in fixture_rows(FIXTURE, "SELECT id FROM worker")}
    new = [start for worker, start in identities if worker not in old_workers]
    assert new and all(start for start in new)  # the new worker records its identity


def test_upgraded_schema_is_the_schema_of_a_new_database(old_db: Path, tmp_path: Path):
    assert invoke("db", "upgrade", "--db", str(old_db)).exit_code == 0
    fresh = str(tmp_path / "fresh.db")
    open_engine(fresh, create=True).dispose()
    assert schema_of(str(old_db)) == schema_of(fresh)


def schema_of(url: str) -> dict:
    """Each table's columns (name, type, nullability, default), primary key, indexes, unique
    constraints and foreign keys: what a migration must get right, column order aside."""
    engine = open_engine(url, read_only=True)
    try:
        found = inspect(engine)
        tables = {}
        for table in found.get_table_names():
            columns = {
                c["name"]: (str(c["type"]), c["nullable"], c.get("default"))
                for c in found.get_columns(table)
            }
            indexes = sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in found.get_indexes(table)
            )
            uniques = sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(table))
            foreign = sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in found.get_foreign_keys(table)
            )
            primary = tuple(found.get_pk_constraint(table)["constrained_columns"])
            tables[table] = (columns, primary, indexes, uniques, foreign)
        return tables
    finally:
        engine.dispose()


# --- db upgrade's own refusals -----------------------------------------------------------------


def test_db_upgrade_refuses_what_it_cannot_upgrade(tmp_path: Path):
    missing = tmp_path / "none.db"
    assert_refused(invoke("db", "upgrade", "--db", str(missing)), f"no database at {missing}")
    assert not missing.exists()  # not created
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database at all" * 100)
    assert_refused(invoke("db", "upgrade", "--db", str(corrupt)), "is not a SQLite database")
    assert corrupt.read_bytes() == b"not a database at all" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.db"]
    url = "postgresql+psycopg://lab:s3cret@127.0.0.1:9/sweeps"  # port 9: nothing listens
    result = invoke("db", "upgrade", "--db", url)
    assert_refused(result, "cannot reach the database", "lab:***@127.0.0.1")
    assert "s3cret" not in result.output


def test_db_upgrade_refuses_a_newer_schema(tmp_path: Path):
    db = str(tmp_path / "newer.db")
    engine = open_engine(db, create=True)
    with engine.begin() as conn:
        conn.execute(SchemaVersion.__table__.insert().values(version=SCHEMA_VERSION + 1,
                                                             applied_at=0))  # fmt: skip
    engine.dispose()
    for command in (["db", "upgrade"], ["db", "version"]):
        assert_refused(invoke(*command, "--db", db), "newer lorabench", "upgrade lorabench")
    assert versions_unchecked(db) == [SCHEMA_VERSION, SCHEMA_VERSION + 1]


def versions_unchecked(db: str) -> list[int]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return sorted(v for (v,) in connection.execute("SELECT version FROM schema_version"))
    finally:
        connection.close()


def test_a_new_database_is_created_at_the_current_schema(tmp_path: Path):
    db = tmp_path / "new.db"
    assert invoke(*PLAN, "--db", str(db)).exit_code == 0
    assert versions(str(db)) == [SCHEMA_VERSION]
    result = invoke("db", "upgrade", "--db", str(db))
    assert result.stdout.strip() == f"already at schema {SCHEMA_VERSION}"


# --- both backends: a version-1 database built here -------------------------------------------


def make_version_1(url: str) -> None:
    """A database as schema 1 left it, with one finished job: today's schema, less what
    versions 2 to 5 added."""
    engine = open_engine(url, create=True)
    try:
        enqueue(engine, "old", job_rows([_noop_job(0)]))
        worker = register_worker(engine, "cpu", process_start="boot ns 1")
        job = claim(engine, worker, lease_seconds=60)
        finish(engine, job, [MetricRow("eval", "score", 1, -0.5, epoch=1)])
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE outcome"))
            conn.execute(text("ALTER TABLE worker DROP COLUMN process_start"))
            conn.execute(text("ALTER TABLE sweep DROP COLUMN pack"))
            conn.execute(text("ALTER TABLE sweep DROP COLUMN tracking"))
            conn.execute(SchemaVersion.__table__.delete())
            conn.execute(SchemaVersion.__table__.insert().values(version=1, applied_at=0))
    finally:
        engine.dispose()


def _noop_job(seed: int, lr: float = 1e-3):
    from lorabench.config import resolve_job

    return resolve_job({"task": "noop", "variant": "lora", "lr": lr, "seed": seed})


def test_version_1_is_refused_then_upgraded_on_each_backend(db_url: str, tmp_path, request):
    make_version_1(db_url)
    for read_only in (True, False):
        with pytest.raises(StoreError, match="db upgrade"):
            open_engine(db_url, read_only=read_only)
    for command in (["status"], ["report", "--table", "lr", "--out", str(tmp_path)],
                    ["work", "--gpu", "cpu", "--exit-when-empty"], PLAN):  # fmt: skip
        assert_refused(invoke(*command, "--db", db_url), "schema version 1", "lorabench db upgrade")
    assert versions(db_url) == [1]
    result = invoke("db", "upgrade", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == UPGRADED
    assert (
        invoke("db", "upgrade", "--db", db_url).stdout.strip()
        == f"already at schema {SCHEMA_VERSION}"
    )
    assert versions(db_url) == ALL_VERSIONS
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(Job.state)).scalars().all() == ["done"]
            assert conn.execute(select(Metric.value)).scalars().all() == [-0.5]
        assert register_worker(engine, "cpu", process_start="boot ns 2") == 2
    finally:
        engine.dispose()
    fresh = _fresh_like(db_url, tmp_path, request)
    assert schema_of(db_url) == schema_of(fresh)


# Specs as lorabench stored them before schema 4: a sweep file's (pack on top), a preset's
# since its pack was put on top, a preset's before that (pack in each part), and ones that
# say nothing usable.
OLD_SPECS = {
    "file": ('{"axes": {"lr": [0.1, 0.01]}, "name": "file", "pack": 4, "priority": 0}', 4),
    "preset": ('{"pack": 3, "preset": "paper-glue", "sweeps": [{"pack": 3}, {"pack": 3}]}', 3),
    "older-preset": ('{"preset": "paper-nlg", "sweeps": [{"pack": 2}, {"pack": 2}]}', 2),
    "plain": ('{"axes": {}, "name": "plain", "pack": 1}', 1),
    "empty": ("{}", 1),
    "odd": ('{"pack": "many"}', 1),
    "broken": ("not json", 1),
}


def test_the_upgrade_gives_each_sweep_the_pack_it_was_planned_with(db_url: str):
    make_version_1(db_url)
    engine = open_engine(db_url, allow_older=True)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO sweep (name, description, spec, created_at) "
                     "VALUES (:name, '', :spec, 0)"),
                [{"name": name, "spec": spec} for name, (spec, _) in OLD_SPECS.items()],
            )  # fmt: skip
        assert upgrade(engine).after == SCHEMA_VERSION
    finally:
        engine.dispose()
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            packs = dict(conn.execute(select(Sweep.name, Sweep.pack)).all())
        assert packs == {"old": 1, **{name: pack for name, (_, pack) in OLD_SPECS.items()}}
        # A worker without --pack follows it: three jobs of the older preset, packs of two.
        with engine.begin() as conn:
            sweep_id = conn.execute(
                select(Sweep.id).where(Sweep.name == "older-preset")
            ).scalar_one()
            rows = job_rows(_noop_job(1, lr) for lr in (1e-4, 1e-3, 1e-2))
            conn.execute(
                insert(Job),
                [{"sweep_id": sweep_id, "config": row.config_json, "config_hash": row.config_hash,
                  "group_hash": row.group_hash, "created_at": 0, "updated_at": 0}
                 for row in rows],
            )  # fmt: skip
        worker = register_worker(engine, "cpu")
        sizes = [len(claim_pack(engine, worker, size=None, lease_seconds=60)) for _ in range(3)]
        assert sizes == [2, 1, 0]
    finally:
        engine.dispose()


def _fresh_like(db_url: str, tmp_path: Path, request) -> str:
    """A new database on the same backend as `db_url`, at the current schema."""
    if "://" in db_url:
        fresh = request.getfixturevalue("postgres_server").new_database()
    else:
        fresh = str(tmp_path / "fresh.db")
    open_engine(fresh, create=True).dispose()
    return fresh


def test_concurrent_upgrades_apply_each_step_once(db_url: str, monkeypatch):
    """Two upgrades at once: one applies the steps while the other waits for its lock, then
    finds nothing left to do. (The first step is slowed down so that they do overlap.)"""
    make_version_1(db_url)
    started = threading.Event()

    def slow(step):
        def apply(conn):
            started.set()
            time.sleep(0.5)
            step.apply(conn)

        return migrate_module.Step(step.version, step.does, apply)

    monkeypatch.setattr(migrate_module, "STEPS", tuple(slow(step) for step in STEPS))
    engines = [open_engine(db_url, allow_older=True) for _ in range(2)]
    results: list = [None, None]

    def run(i: int) -> None:
        if i == 1:
            started.wait(10)  # the other one is inside its transaction
        results[i] = upgrade(engines[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for engine in engines:
        engine.dispose()
    assert [r.describe() for r in results] == [UPGRADED, f"already at schema {SCHEMA_VERSION}"]
    assert versions(db_url) == ALL_VERSIONS


def test_two_db_upgrade_processes_at_once(old_db: Path):
    command = [sys.executable, "-m", "lorabench", "db", "upgrade", "--db", str(old_db)]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    said = sorted(out.strip() for out, _ in outputs)
    assert said == sorted([UPGRADED, f"already at schema {SCHEMA_VERSION}"]), outputs
    assert versions(str(old_db)) == ALL_VERSIONS
