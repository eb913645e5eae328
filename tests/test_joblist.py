"""`lorabench jobs` and `jobs show`: exact rows and fields on a small database, and every
command that takes a sweep or job name refusing one the database does not hold (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from results_db import UPDATED, build_results_db
from sqlalchemy import update
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.monitor.jobs import AttemptLine, EpochLine, RunFile, Score, job_detail, list_jobs
from lorabench.store import open_engine, opened
from lorabench.store.models import Job

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich reads it: no wrapped cells


@pytest.fixture()
def db(tmp_path: Path) -> str:
    return str(build_results_db(tmp_path / "j.db"))


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the rich tables in `output` (headers are drawn with ┃), as cells."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")]
            for line in output.splitlines() if line.strip().startswith("│")]  # fmt: skip


def listed(db: str, **filters) -> list[tuple]:
    with opened(db, read_only=True) as engine:
        jobs = list_jobs(engine, now=UPDATED + 90, **filters)
    return [(j.id, j.sweep, j.variant, j.task, j.lr, j.seed, j.state, j.attempts,
             j.max_attempts, j.score, j.updated_age) for j in jobs.lines]  # fmt: skip


SCORE_1 = Score(metric="score", value=-0.2, epoch=2, by="val", percent=False)
SCORE_2 = Score(metric="score", value=-0.1, epoch=1, by="test", percent=False)
ALL = [
    (1, "a", "lora", "noop", 1e-3, 0, "done", 1, 3, SCORE_1, 90.0),
    (2, "a", "lora-plus", "noop", 1e-2, 1, "done", 2, 3, SCORE_2, 90.0),
    (3, "b", "lora", "noop", 1e-4, 0, "queued", 0, 3, None, 90.0),
    (4, "b", "dora", "noop", 1e-4, 0, "failed", 3, 3, None, 90.0),
]


@pytest.mark.parametrize(
    ("filters", "ids"),
    [
        ({}, [1, 2, 3, 4]),
        ({"sweep": "b"}, [3, 4]),
        ({"states": ["done", "failed"]}, [1, 2, 4]),
        ({"variants": ["lora"]}, [1, 3]),
        ({"variants": ["lora"], "sweep": "b"}, [3]),
        ({"tasks": ["noop"], "states": ["queued"]}, [3]),
        ({"tasks": ["bbc-news"]}, []),  # a real task no job has: nothing, not an error
        ({"limit": 2}, [1, 2]),
        ({"limit": 0}, [1, 2, 3, 4]),
    ],
)
def test_list_filters(db: str, filters: dict, ids: list[int]):
    assert listed(db, **filters) == [row for row in ALL if row[0] in ids]


def test_limit_counts_every_match(db: str):
    with opened(db, read_only=True) as engine:
        jobs = list_jobs(engine, states=["done", "queued"], limit=1)
    assert [j.id for j in jobs.lines] == [1] and jobs.matching == 3


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"sweep": "c"}, "unknown sweep 'c'; sweeps in the database: a, b"),
        ({"states": ["faild"]}, "unknown state 'faild'; did you mean 'failed'?"),
        ({"variants": ["doar"]}, "unknown variant 'doar'; did you mean 'dora'?"),
        ({"tasks": ["nop"]}, "unknown task 'nop'; did you mean 'noop'?"),
    ],
)
def test_list_refuses_unknown_names(db: str, filters: dict, message: str):
    with opened(db, read_only=True) as engine, pytest.raises(ValueError) as error:
        list_jobs(engine, **filters)
    assert message in str(error.value)


def test_the_jobs_command_prints_one_row_per_job(db: str):
    result = runner.invoke(app, ["jobs", "--db", db], terminal_width=200)
    assert result.exit_code == 0, result.output
    cells = [row[:9] for row in table_rows(result.output)]
    assert cells == [
        ["1", "a", "lora", "noop", "0.001", "0", "done", "1/3", "-0.2000 score"],
        ["2", "a", "lora-plus", "noop", "0.01", "1", "done", "2/3", "-0.1000 score"],
        ["3", "b", "lora", "noop", "0.0001", "0", "queued", "0/3", "-"],
        ["4", "b", "dora", "noop", "0.0001", "0", "failed", "3/3", "-"],
    ]
    assert all(row[9].endswith("ago") for row in table_rows(result.output))


def test_piped_output_prints_the_table_whole_not_squeezed_to_80_columns(db: str):
    """Captured output is no terminal: the table keeps its natural width, no cell cut to "…"."""
    result = runner.invoke(app, ["jobs", "--db", db], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert max(len(line) for line in result.output.splitlines()) > 80
    cells = [row[:9] for row in table_rows(result.output)]
    assert cells[1] == ["2", "a", "lora-plus", "noop", "0.01", "1", "done", "2/3", "-0.1000 score"]


def test_the_jobs_command_filters_and_limits(db: str):
    args = ["jobs", "--db", db, "--state", "done,queued", "--variant", "lora", "--limit", "1"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert [row[0] for row in table_rows(result.output)] == ["1"]
    assert "1 of 2 matching jobs shown (--limit N, 0 for all)" in result.output
    none = runner.invoke(app, ["jobs", "--db", db, "--task", "bbc-news"])
    assert none.exit_code == 0 and none.output.strip() == "no jobs match"


def test_job_detail_holds_attempts_metrics_and_the_run_folder(db: str, tmp_path: Path):
    run = tmp_path / "runs" / "job-1"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"x" * 2048)
    engine = open_engine(db)
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == 1).values(out_dir=str(run)))
        conn.execute(update(Job).where(Job.id == 2).values(out_dir="/elsewhere/job-2"))
    engine.dispose()
    with opened(db, read_only=True) as engine:
        one = job_detail(engine, 1, now=UPDATED + 30)
        two = job_detail(engine, 2, now=UPDATED)
        four = job_detail(engine, 4, now=UPDATED)
    assert (one.id, one.sweep, one.state, one.attempts, one.max_attempts) == (1, "a", "done", 1, 3)
    assert (one.created, one.started, one.finished, one.updated_age) == (100.0, 110.0, 150.0, 30.0)
    assert one.config["variant"] == "lora" and one.config["lr"] == 1e-3
    # Fields the stored config leaves out at their defaults are shown with them.
    assert (one.config["select_split"], one.config["base_dtype"]) == (True, "fp32")
    assert list(one.config)[:3] == ["task", "task_params", "model"]  # JobConfig's order
    assert [(a.number, a.outcome, a.worker, a.device) for a in one.attempt_lines] == [
        (1, "done", "h:1", "cpu")
    ]
    assert isinstance(one.attempt_lines[0], AttemptLine)
    assert one.out_dir_here and [(f.name, f.size) for f in one.files] == [("checkpoint.pt", 2048)]
    assert isinstance(one.files[0], RunFile)
    assert one.epochs == [
        EpochLine(epoch=1, step=10, select={"score": -0.4}, test={"score": -0.5}),
        EpochLine(epoch=2, step=20, select={"score": -0.3}, test={"score": -0.2}),
    ]
    assert one.score == SCORE_1
    assert one.summary == {"train_seconds": 1.5}
    assert one.train == {"steps": 2, "last_step": 10, "first_loss": 0.9, "last_loss": 0.7,
                         "min_loss": 0.7}  # fmt: skip
    # Two attempts; only the last one's metrics (the decoy row of attempt 1 is not an epoch).
    assert [a.number for a in two.attempt_lines] == [1, 2]
    assert [e.test for e in two.epochs] == [{"score": -0.1}, {"score": -0.3}]
    assert (two.out_dir, two.out_dir_here, two.files) == ("/elsewhere/job-2", False, [])
    assert four.error == "boom: the loss diverged" and four.epochs == [] and four.score is None


def test_jobs_show_prints_the_job(db: str):
    result = runner.invoke(app, ["jobs", "show", "1", "--db", db], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "job 1 in sweep a" in text
    assert "score -0.2000 at epoch 2 (chosen on the select split)" in text
    assert "run folder: none yet (the job has not started)" in text
    assert "train loss │ 0.9 -> 0.7 (min 0.7, 2 steps logged)" in text
    epochs = [row for row in table_rows(result.output) if row and row[0] in ("1", "2*")]
    assert ["1", "10", "-0.4", "-0.5"] in epochs and ["2*", "20", "-0.3", "-0.2"] in epochs
    failed = runner.invoke(app, ["jobs", "show", "4", "--db", db], terminal_width=200)
    assert "error boom: the loss diverged" in " ".join(failed.output.split())
    # The database may be given before the subcommand too.
    before = runner.invoke(app, ["jobs", "--db", db, "show", "2"], terminal_width=200)
    assert before.exit_code == 0 and "job 2 in sweep a" in " ".join(before.output.split())


# Every command that takes a sweep or job by name: a name the database lacks exits 2 naming it.
WRONG_NAMES = {
    "report": (["report", "--table", "lr", "--sweep", "nonexist"],
               "unknown sweep 'nonexist'; sweeps in the database: a, b"),
    "report figure": (["report", "--figure", "lr-sweep", "--sweep", "aa"],
                      "unknown sweep 'aa'; did you mean 'a'?"),
    "status": (["status", "--sweep", "nonexist"], "unknown sweep 'nonexist'"),
    "cancel sweep": (["cancel", "--sweep", "nonexist"], "unknown sweep 'nonexist'"),
    "cancel jobs": (["cancel", "--jobs", "2,99"], "no job with id 99; the database holds jobs 1-4"),
    "retry sweep": (["retry", "--sweep", "nonexist"], "unknown sweep 'nonexist'"),
    "retry jobs": (["retry", "--jobs", "98,99"],
                   "no jobs with ids 98, 99; the database holds jobs 1-4"),
    "export": (["export", "99", "{tmp}/out"], "no job with id 99"),
    "jobs": (["jobs", "--sweep", "nonexist"], "unknown sweep 'nonexist'"),
    "jobs show": (["jobs", "show", "99"], "no job with id 99; the database holds jobs 1-4"),
    "results": (["results", "--sweep", "nonexist"], "unknown sweep 'nonexist'"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(WRONG_NAMES))
def test_a_wrong_sweep_or_job_name_exits_2_everywhere(db: str, tmp_path: Path, name: str):
    args, message = WRONG_NAMES[name]
    args = [a.format(tmp=tmp_path) for a in args]
    result = runner.invoke(app, [*args, "--db", db], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_cancel_and_retry_change_nothing_when_a_name_is_wrong(db: str):
    runner.invoke(app, ["cancel", "--jobs", "3,99", "--db", db])
    runner.invoke(app, ["retry", "--jobs", "4,99", "--db", db])
    with opened(db, read_only=True) as engine:
        assert [j.state for j in list_jobs(engine).lines] == ["done", "done", "queued", "failed"]
