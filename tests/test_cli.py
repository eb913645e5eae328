"""The command line as a user types it: exit codes, messages, nothing half-written."""

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.store import MetricRow, claim, finish, open_engine, register_worker
from lorabench.store.models import Job

runner = CliRunner()
BASE = ["--task", "bbc-news", "--variant", "lora,rslora", "--lr", "1e-4,1e-3"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def count_jobs(db: Path) -> int:
    engine = open_engine(str(db), read_only=True)
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Job)).scalar_one()


def test_planning_twice_adds_nothing_the_second_time(tmp_path: Path):
    db = str(tmp_path / "x.db")
    first = invoke("plan", "--db", db, *BASE, "--seed", "0,1")
    second = invoke("plan", "--db", db, *BASE, "--seed", "0,1")
    assert first.exit_code == second.exit_code == 0
    assert "8 new jobs, 0 already present" in first.output
    assert "0 new jobs, 8 already present" in second.output
    assert count_jobs(tmp_path / "x.db") == 8


def test_default_database_is_lorabench_db_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LORABENCH_DB", raising=False)
    assert invoke("plan", *BASE).exit_code == 0
    assert count_jobs(tmp_path / "lorabench.db") == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variant", "nosuch"], "field 'variant': unknown variant 'nosuch'; lorabench variants"),
        (["--lr", "-1e-3"], "field 'lr': Input should be greater than 0"),
        (["--set", "bogus=1"], "unknown key 'bogus'"),
        (["--precision", "fp8"], "field 'precision'"),
    ],
)
def test_bad_sweep_exits_2_naming_the_field_and_writes_nothing(tmp_path, args, message):
    db = tmp_path / "x.db"
    assert invoke("plan", "--db", str(db), *BASE).exit_code == 0
    result = invoke("plan", "--db", str(db), *BASE, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert count_jobs(db) == 4


def test_bad_sweep_file_key_exits_2(tmp_path: Path):
    sweep = tmp_path / "s.toml"
    sweep.write_text('task = "bbc-news"\nvariant = "lora"\nlr = 1e-4\nepoch = 3\n')
    result = invoke("plan", str(sweep), "--db", str(tmp_path / "x.db"))
    assert result.exit_code == 2
    assert "unknown key 'epoch'" in result.output
    assert not (tmp_path / "x.db").exists()


def test_commands_on_a_missing_database_say_so(tmp_path: Path):
    for command in (["status"], ["report", "--table", "lr"], ["work", "--exit-when-empty"]):
        result = invoke(*command, "--db", str(tmp_path / "none.db"))
        assert result.exit_code == 2, command
        assert "no database at" in result.output


def test_report_never_changes_the_database(tmp_path: Path):
    db = tmp_path / "x.db"
    invoke("plan", "--db", str(db), *BASE)
    engine = open_engine(str(db))
    worker = register_worker(engine, "cpu")
    job = claim(engine, worker, lease_seconds=60)
    finish(engine, job, [MetricRow("eval", "accuracy", 10, 0.75, epoch=1)])
    engine.dispose()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    out = tmp_path / "reports"
    result = invoke("report", "--db", str(db), "--table", "lr", "--figure", "lr-sweep",
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    table = (out / "lr-table-bbc-news.md").read_text()
    assert "75.00" in table and "— (1 queued)" in table
    assert (out / "lr-sweep.png").stat().st_size > 0
    assert (out / "lr-table-bbc-news.csv").exists()


def test_status_cancel_retry(tmp_path: Path):
    db = str(tmp_path / "x.db")
    invoke("plan", "--db", db, *BASE)
    assert "cancelled 4 queued job(s)" in invoke("cancel", "--db", db, "--sweep", "default").output
    status = invoke("status", "--db", db)
    assert status.exit_code == 0 and "default" in status.output
    assert "requeued 4 job(s)" in invoke("retry", "--db", db, "--sweep", "default").output
    assert invoke("cancel", "--db", db).exit_code == 2  # must say what to cancel
    # Jobs named by id that the command does not act on are named, with their state and why.
    cancel = invoke("cancel", "--db", db, "--jobs", "1,2").output
    assert "cancelled 2 queued job(s)" in cancel and "left as they are" not in cancel
    retried = invoke("retry", "--db", db, "--jobs", "1,3,4", "--no-cancelled").output
    assert retried.splitlines() == [
        "requeued 0 job(s)",
        "left as they are: job 1 cancelled; jobs 3, 4 queued (retry requeues failed jobs)",
    ]


def test_unknown_report_names_are_clear_errors(tmp_path: Path):
    db = str(tmp_path / "x.db")
    invoke("plan", "--db", db, *BASE)
    result = invoke("report", "--db", db, "--figure", "nope")
    assert result.exit_code == 2 and "available figures: lr-sweep" in result.output


def test_example_sweep_file_plans_30_jobs(tmp_path: Path):
    example = Path(__file__).parents[1] / "examples" / "bbc-news-lr.toml"
    result = invoke("plan", str(example), "--dry-run", "--db", str(tmp_path / "x.db"))
    assert result.exit_code == 0, result.output
    assert "sweep bbc-news-lr: 30 jobs (dry run)" in result.output
    assert not (tmp_path / "x.db").exists()
