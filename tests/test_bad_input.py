"""Bad input never shows a traceback: exit code 2, one line on stderr naming the problem, and
nothing written (the database byte-identical, or still absent; no other file touched)."""

import os
import subprocess
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.config import INT_MAX, SEED_MAX, JobConfig
from lorabench.store import MetricRow, claim, finish, open_engine, register_worker

HUGE = str(10**30)
PLAN = ["plan", "--task", "noop", "--variant", "lora", "--lr", "1e-3"]
COMMANDS = {
    "plan": PLAN,
    "status": ["status"],
    "report": ["report", "--table", "lr"],
    "work": ["work", "--gpu", "cpu", "--exit-when-empty"],
}
FLOAT_FIELDS = [
    name
    for name, info in JobConfig.model_fields.items()
    if info.annotation is float or float in typing.get_args(info.annotation)
]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: equal snapshots mean nothing was written."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_refused(result, *fragments: str) -> None:
    """Exit 2 through lorabench's own error path: one non-empty stderr line, no traceback.

    CliRunner keeps stderr apart (`result.stderr`); `result.output` holds both streams. A
    traceback would not be printed here but kept as `result.exception`, so that is checked
    too: only the SystemExit of `typer.Exit(2)` may be there.
    """
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> bytes:
    """The bytes of a real lorabench database (two queued noop jobs)."""
    db = tmp_path_factory.mktemp("template") / "x.db"
    result = invoke(*PLAN, "--lr", "1e-3,1e-2", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert not db.with_name("x.db-wal").exists()  # closed cleanly: all of it is in x.db
    return db.read_bytes()


def _page_size(data: bytes) -> int:
    size = int.from_bytes(data[16:18], "big")
    return 65536 if size == 1 else size


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda data: data[: len(data) // 2],
    "middle-overwritten": lambda data: (
        data[: (mid := (len(data) // _page_size(data) // 2) * _page_size(data))]
        + b"\xab" * _page_size(data)
        + data[mid + _page_size(data) :]
    ),
    "header-zeroed": lambda data: b"\0" * 100 + data[100:],
}


# A case: (id, build(tmp_path, template) -> CLI arguments, phrases the message must contain).
# The database is always tmp_path/x.db (written by `build`, or left absent).
Case = tuple[str, Callable[[Path, bytes], list[str]], tuple[str, ...]]


def _text_db(command: str) -> Case:
    def build(tmp: Path, _template: bytes) -> list[str]:
        (tmp / "x.db").write_text("hello")
        return [*COMMANDS[command], "--db", str(tmp / "x.db")]

    return (f"text-file-as-db-{command}", build, ("x.db is not a SQLite database",))


def _corrupt_db(command: str, corruption: str) -> Case:
    def build(tmp: Path, template: bytes) -> list[str]:
        (tmp / "x.db").write_bytes(CORRUPTIONS[corruption](template))
        return [*COMMANDS[command], "--db", str(tmp / "x.db")]

    phrase = "is not a SQLite database" if corruption == "header-zeroed" else "x.db is damaged"
    return (f"{corruption}-db-{command}", build, (phrase,))


def _with_db(*args: str, db: str = "{tmp}/x.db") -> Callable[[Path, bytes], list[str]]:
    """`args` ({tmp} = tmp_path) run against `db`; tmp/x.db is a real database."""

    def build(tmp: Path, template: bytes) -> list[str]:
        (tmp / "x.db").write_bytes(template)
        return [a.replace("{tmp}", str(tmp)) for a in (*args, "--db", db)]

    return build


def _plan_file(content: bytes, *extra: str) -> Callable[[Path, bytes], list[str]]:
    def build(tmp: Path, template: bytes) -> list[str]:
        (tmp / "x.db").write_bytes(template)
        (tmp / "sweep.toml").write_bytes(content)
        return ["plan", str(tmp / "sweep.toml"), *extra, "--db", str(tmp / "x.db")]

    return build


def _folder(*args: str, db: str = "{tmp}/x.db") -> Callable[[Path, bytes], list[str]]:
    """`_with_db`, with tmp/folder (empty) and tmp/file.txt there too."""

    def build(tmp: Path, template: bytes) -> list[str]:
        (tmp / "folder").mkdir()
        (tmp / "file.txt").write_text("not a model")
        return _with_db(*args, db=db)(tmp, template)

    return build


def _text_db_for(*args: str) -> Callable[[Path, bytes], list[str]]:
    def build(tmp: Path, _template: bytes) -> list[str]:
        (tmp / "x.db").write_text("hello")
        return [a.replace("{tmp}", str(tmp)) for a in (*args, "--db", "{tmp}/x.db")]

    return build


def _foreign_db(tmp: Path, _template: bytes) -> list[str]:
    import sqlite3

    with sqlite3.connect(tmp / "x.db") as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    connection.close()
    return [*PLAN, "--db", str(tmp / "x.db")]


CASES: list[Case] = [
    # 1. --db naming a text file.
    *(_text_db(command) for command in COMMANDS),
    # 2. A real database, damaged.
    *(_corrupt_db(command, how) for how in CORRUPTIONS for command in COMMANDS),
    # 3. plan <a folder>.
    ("plan-a-folder", _folder("plan", "{tmp}/folder"), ("folder' is a folder, not a TOML",)),
    # 4. A sweep file that is not UTF-8: the message names the file.
    ("sweep-not-utf8", _plan_file(b"\xff\xfe task = 1"), ("sweep.toml' is not UTF-8",)),
    # 5. A priority beyond the database's integer column.
    ("priority-huge", _with_db(*PLAN, "--priority", HUGE), ("'priority'", str(INT_MAX))),
    ("priority-too-low", _with_db(*PLAN, "--priority", str(-(2**31) - 1)),
     ("'priority'", str(-(2**31)))),
    # 6. report --out naming a file.
    ("report-out-is-a-file",
     _folder("report", "--table", "lr", "--out", "{tmp}/file.txt"), ("file.txt is a file",)),
    # 7. A malformed database URL: the message names it.
    ("malformed-url", lambda tmp, _t: ["status", "--db", "postgresql://[::1"],
     ("'postgresql://[::1' is not a database URL",)),
    ("malformed-url-hides-password", lambda tmp, _t: ["plan", *PLAN[1:], "--db",
     "postgresql://lab:s3cret@db:port/sweeps"], ("postgresql://lab:***@db:port/sweeps",)),
    # 8. Every float field of a job must be finite: flags, --set and a TOML file.
    *((f"{field}-{value}", _with_db(*PLAN, "--set", f"{field}={value}"),
       (f"'{field}'", "finite")) for field in FLOAT_FIELDS for value in ("inf", "nan")),
    ("alpha-flag-inf", _with_db(*PLAN, "--alpha", "inf"), ("'alpha'", "finite")),
    ("lr-flag-nan", _with_db(*PLAN[:-1], "nan"), ("'lr'", "finite")),
    ("dropout-flag-nan", _with_db(*PLAN, "--dropout", "nan"), ("'dropout'", "finite")),
    ("alpha-toml-inf", _plan_file(b'task = "noop"\nvariant = "lora"\nlr = 1e-3\nalpha = inf\n'),
     ("'alpha'", "finite")),
    ("weight-decay-toml-nan",
     _plan_file(b'task = "noop"\nvariant = "lora"\nlr = 1e-3\nweight_decay = nan\n'),
     ("'weight_decay'", "finite")),
    ("lr-toml-overflows-to-inf", _plan_file(b'task = "noop"\nvariant = "lora"\nlr = 1e999\n'),
     ("'lr'", "finite")),
    ("variant-param-inf", _with_db("plan", "--task", "noop", "--variant", "lora-plus", "--lr",
     "1e-3", "--set", "variant_params={lr_ratio=inf}"), ("'lr_ratio'", "finite")),
    ("task-param-inf", _with_db(*PLAN, "--set", "task_params={sleep_s=inf}"),
     ("'sleep_s'", "finite")),
    # 9. Seeds beyond what the trainer can seed with (bound in the message).
    ("seed-huge", _with_db(*PLAN, "--seed", HUGE), ("'seed'", str(SEED_MAX))),
    ("seed-just-over", _with_db(*PLAN, "--seed", str(SEED_MAX + 1)), ("'seed'", str(SEED_MAX))),
    ("seed-negative", _with_db(*PLAN, "--seed", "-1"), ("'seed'",)),
    # 10. Models a task cannot use, as far as plan can tell without loading them.
    ("noop-other-model", _with_db(*PLAN, "--model", "sentence-transformers/all-MiniLM-L6-v2"),
     ("'model'", "builds its own network")),
    ("classifier-missing-path", _with_db("plan", "--task", "bbc-news", "--variant", "lora",
     "--lr", "1e-3", "--model", "{tmp}/no-such-model"), ("'model'", "no such model folder")),
    ("classifier-folder-without-config", _folder("plan", "--task", "bbc-news", "--variant",
     "lora", "--lr", "1e-3", "--model", "{tmp}/folder"), ("'model'", "no config.json")),
    ("classifier-given-a-file", _folder("plan", "--task", "bbc-news", "--variant", "lora",
     "--lr", "1e-3", "--model", "{tmp}/file.txt"), ("'model'", "is a file")),
    ("classifier-given-noop-model", _with_db("plan", "--task", "bbc-news", "--variant", "lora",
     "--lr", "1e-3", "--model", "noop-linear-4x4"), ("'model'", "built-in network")),
    ("classifier-given-no-name", _with_db("plan", "--task", "bbc-news", "--variant", "lora",
     "--lr", "1e-3", "--model", "not a model name"), ("'model'", "neither a local model")),
    ("digits-unknown-model", _with_db("plan", "--task", "digits", "--variant", "lora", "--lr",
     "1e-3", "--model", "resnet18"), ("'model'", "state dict file")),
    # 11. (the limit itself: test_limit_* below) a preset over it, by counting.
    ("preset-over-the-limit", _with_db("plan", "--preset", "paper-glue", "--seed",
     ",".join(map(str, range(2000))), "--dry-run"), ("paper-glue", "limit of 100,000")),
    # Nearby: other integer fields, zero and negative values, other commands and files.
    *((f"{flag.lstrip('-')}-huge", _with_db(*PLAN, flag, HUGE), (str(INT_MAX),))
      for flag in ("--epochs", "--rank", "--batch-size", "--max-length", "--train-size",
                   "--max-steps", "--max-attempts", "--pack")),
    ("epochs-zero", _with_db(*PLAN, "--epochs", "0"), ("'epochs'", "greater than 0")),
    ("rank-negative", _with_db(*PLAN, "--rank", "-4"), ("'rank'", "greater than 0")),
    ("max-attempts-zero", _with_db(*PLAN, "--max-attempts", "0"), ("'max_attempts'",)),
    ("variant-param-huge", _with_db("plan", "--task", "noop", "--variant", "adalora", "--lr",
     "1e-3", "--set", f"variant_params={{t_init={HUGE}}}"), ("'t_init'", str(INT_MAX))),
    ("plan-db-is-a-folder", _folder(*PLAN, db="{tmp}/folder"),
     ("folder is a folder, not a database file",)),
    ("status-db-is-a-folder", _folder("status", db="{tmp}/folder"), ("is a folder",)),
    ("plan-db-inside-a-file", _folder(*PLAN, db="{tmp}/file.txt/y.db"),
     ("file.txt is not a folder",)),
    ("plan-into-another-programs-db", _foreign_db, ("database of another program",)),
    ("cancel-db-is-text", _text_db_for("cancel", "--sweep", "default"), ("not a SQLite database",)),
    ("retry-db-is-text", _text_db_for("retry"), ("not a SQLite database",)),
    ("export-db-is-text", _text_db_for("export", "1", "{tmp}/out"), ("not a SQLite database",)),
    ("cancel-huge-job-id", _with_db("cancel", "--jobs", HUGE), ("no job has id",)),
    ("export-huge-job-id", _with_db("export", HUGE, "{tmp}/out"), ("no job has id",)),
    ("work-runs-dir-is-a-file", _folder(*COMMANDS["work"], "--runs-dir", "{tmp}/file.txt"),
     ("--runs-dir", "is a file")),
    ("work-poll-inf", _with_db(*COMMANDS["work"], "--poll-seconds", "inf"), ("finite",)),
    ("work-lease-inf", _with_db(*COMMANDS["work"], "--lease-seconds", "inf"), ("finite",)),
    ("work-pack-huge", _with_db(*COMMANDS["work"], "--pack", HUGE), ("--pack", str(INT_MAX))),
    ("status-interval-inf", _with_db("status", "--watch", "--interval", "inf"), ("finite",)),
    ("sweep-file-not-a-regular-file", _with_db("plan", "/dev/zero"), ("not a regular file",)),
    ("status-db-not-a-regular-file", _with_db("status", db="/dev/null"),
     ("/dev/null is not a regular file",)),
    ("sweep-number-too-long", _with_db(*PLAN, "--seed", "1" * 5000), ("5000 digits",)),
    ("sweep-file-bad-name", _plan_file(b'name = "a b"\ntask = "noop"\nvariant = "lora"\n'
     b"lr = 1e-3\n"), ("'name'",)),
]  # fmt: skip


@pytest.mark.parametrize(("build", "phrases"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    build, phrases, tmp_path: Path, template_db: bytes, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a default ./lorabench.db or ./reports would land here
    monkeypatch.delenv("LORABENCH_DB", raising=False)
    args = build(tmp_path, template_db)
    before = snapshot(tmp_path)
    result = invoke(*args)
    assert_refused(result, *phrases)
    assert snapshot(tmp_path) == before


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert set(FLOAT_FIELDS) >= {"alpha", "lr", "dropout", "weight_decay", "max_grad_norm"}


def test_a_real_process_prints_one_line_too(tmp_path: Path):
    """The same as the user sees it: stderr of `python -m lorabench` (no CliRunner)."""
    db = tmp_path / "x.db"
    db.write_text("hello")
    result = subprocess.run(
        [sys.executable, "-m", "lorabench", "status", "--db", str(db)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "40"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {db} is not a SQLite database")
    assert db.read_text() == "hello"


def test_models_plan_can_check_are_accepted(tmp_path: Path):
    """The model checks refuse only what cannot work: hub names (unchecked), a model folder,
    the built-in networks and digits' state dict file pass."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "weights.pth").write_bytes(b"")
    accepted = [
        ("bbc-news", str(tmp_path / "model")), ("bbc-news", "FacebookAI/x"), ("bbc-news", "gpt2"),
        ("noop", "noop-linear-4x4"), ("digits", "efficientnet-lite0"),
        ("digits", str(tmp_path / "weights.pth")),
    ]  # fmt: skip
    for task, model in accepted:
        result = invoke("plan", "--task", task, "--variant", "lora", "--lr", "1e-3", "--model",
                        model, "--dry-run", "--db", str(tmp_path / "x.db"))  # fmt: skip
        assert result.exit_code == 0, (task, model, result.output)


# --- 11. The plan-size limit is counted, not expanded -----------------------------------------


def test_limit_refuses_a_billion_job_matrix_quickly_under_dry_run(tmp_path: Path):
    thousand = ",".join(map(str, range(1000)))
    lrs = ",".join(f"{k}e-4" for k in range(1, 1001))
    started = time.perf_counter()
    ranks = ",".join(map(str, range(1, 1001)))
    result = invoke("plan", "--task", "noop", "--variant", "lora", "--seed", thousand,
                    "--lr", lrs, "--rank", ranks, "--dry-run",
                    "--db", str(tmp_path / "x.db"))  # fmt: skip
    assert_refused(result, "1,000,000,000 jobs", "limit of 100,000", "--max-jobs-per-plan")
    assert time.perf_counter() - started < 5
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "plan"])
def test_limit_accepts_a_matrix_up_to_it_and_refuses_one_more(tmp_path: Path, dry_run: bool):
    db = tmp_path / "x.db"
    common = ["plan", "--task", "noop", "--variant", "lora", "--lr", "1e-3,1e-2,1e-1",
              "--max-jobs-per-plan", "12", "--db", str(db),
              *(["--dry-run"] if dry_run else [])]  # fmt: skip
    just_under = invoke(*common, "--seed", "0,1,2,3")
    assert just_under.exit_code == 0, just_under.output
    assert ("12 jobs (dry run)" if dry_run else "12 new jobs") in just_under.output
    assert db.exists() != dry_run
    before = snapshot(tmp_path)
    over = invoke(*common, "--seed", "0,1,2,3,4")
    assert_refused(over, "15 jobs (lr 3 x seed 5)", "limit of 12")
    assert snapshot(tmp_path) == before


def test_bounds_are_inclusive(tmp_path: Path):
    result = invoke(*PLAN, "--seed", str(SEED_MAX), "--priority", str(INT_MAX), "--epochs",
                    str(INT_MAX), "--dry-run", "--db", str(tmp_path / "x.db"))  # fmt: skip
    assert result.exit_code == 0, result.output


# --- 12. Reports before any job has finished, with rank, alpha or model varying ---------------

REPORT_SWEEPS = {
    "rank": ["--task", "noop", "--rank", "4,8"],
    "alpha": ["--task", "noop", "--alpha", "8,16"],
    "model": ["--task", "bbc-news", "--model",
              "sentence-transformers/all-MiniLM-L6-v2,FacebookAI/roberta-base"],
    "all": ["--task", "glue-sst2", "--rank", "8,128", "--alpha", "16,32", "--model",
            "FacebookAI/roberta-base,FacebookAI/roberta-large"],
}  # fmt: skip
TABLES = ("lr", "nlg", "glue", "ic", "highrank", "overhead", "sensitivity")
FIGURES = ("lr-sweep", "sensitivity", "overhead")


@pytest.mark.parametrize("finished", [0, 1], ids=["none-finished", "one-finished"])
@pytest.mark.parametrize("varying", list(REPORT_SWEEPS))
def test_every_report_with_varying_settings_is_a_table_or_a_clean_message(
    tmp_path: Path, varying: str, finished: int
):
    db = tmp_path / "x.db"
    planned = invoke("plan", "--variant", "lora,dora", "--lr", "1e-3,1e-2",
                     *REPORT_SWEEPS[varying], "--db", str(db))  # fmt: skip
    assert planned.exit_code == 0, planned.output
    if finished:
        engine = open_engine(str(db))
        job = claim(engine, register_worker(engine, "cpu"), lease_seconds=60)
        metric = "score" if varying in ("rank", "alpha") else "accuracy"
        finish(engine, job, [MetricRow("eval", metric, 10, 0.5, epoch=1),
                             MetricRow("summary", "step_time_s", 10, 0.1),
                             MetricRow("summary", "peak_memory_mb", 10, 100.0)])  # fmt: skip
        engine.dispose()
    before = db.read_bytes()
    outcomes = {}
    for kind, names in (("--table", TABLES), ("--figure", FIGURES)):
        for name in names:
            out = tmp_path / f"out-{name}"
            result = invoke("report", kind, name, "--format", "md,csv,png", "--out", str(out),
                            "--db", str(db))  # fmt: skip
            assert isinstance(result.exception, SystemExit | None), (kind, name, result.exception)
            if result.exit_code == 0:
                assert any(out.iterdir()), (kind, name)
                outcomes[kind, name] = "written"
            else:
                assert_refused(result)
                outcomes[kind, name] = result.stderr.strip()
    assert db.read_bytes() == before
    # Drawn even before anything finished (empty panels), not refused.
    assert outcomes["--figure", "lr-sweep"] == outcomes["--figure", "sensitivity"] == "written"
    # The learning-rate table is always there: one row per distinguished setting.
    assert outcomes["--table", "lr"] == "written"
    table = next((tmp_path / "out-lr").glob("lr-table-*.md")).read_text()
    label = {"rank": "lora r=4", "alpha": "lora α=8", "model": "lora FacebookAI/roberta-base",
             "all": "lora FacebookAI/roberta-base r=8 α=16"}[varying]  # fmt: skip
    assert label in table
    if not finished:
        assert "— (1 queued)" in table


def test_lr_labels_are_numbers_in_the_frame():
    """The lr report labels rows with %g of rank and alpha, whatever the frame's dtypes."""
    import pandas as pd

    from lorabench.report.configs import row_labels

    jobs = pd.DataFrame({"variant": ["lora", "lora"], "model": ["m", "m"], "rank": [4, 8],
                         "alpha": [16.0, 16.0]})  # fmt: skip
    assert row_labels(jobs.iloc[:0]).empty
    assert row_labels(jobs).tolist() == ["lora r=4", "lora r=8"]
