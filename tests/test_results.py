"""`lorabench results` and `lorabench.load_results`: the tidy table's exact columns and rows on
a small database, the report's filters, and csv/parquet/jsonl written and read back equal."""

from __future__ import annotations

import io
import json
import shlex
from pathlib import Path

import pandas as pd
import pytest
from results_db import build_results_db
from typer.testing import CliRunner

import lorabench
from lorabench.cli import app

runner = CliRunner()
README = Path(__file__).resolve().parent.parent / "README.md"

COLUMNS = [
    "job_id", "sweep", "state", "attempts", "max_attempts",
    "task", "model", "variant", "variant_params.lr_ratio", "targets", "rank", "alpha", "dropout",
    "adapter_checkpointing", "lr", "weight_decay", "schedule", "warmup_ratio", "max_grad_norm",
    "epochs", "max_steps", "batch_size", "grad_accum", "precision", "base_dtype", "seed",
    "max_length", "train_size", "eval_size", "select_split",
    "group_hash", "error", "created", "started", "finished", "best_epoch", "best_by",
    "split", "metric", "step", "epoch", "value", "best",
]  # fmt: skip
SHOWN = ["job_id", "sweep", "state", "attempts", "variant", "lr", "seed", "split", "metric",
         "step", "epoch", "value", "best", "best_epoch", "best_by"]  # fmt: skip
# Job 1 chooses epoch 2 on its select split; job 2 has no select rows, so the test split
# chooses (epoch 1); job 2's first attempt left a decoy row that never counts; jobs 3 (queued)
# and 4 (failed) have no metrics and one row each.
ROWS = [
    (1, "a", "done", 1, "lora", 1e-3, 0, "train", "loss", 5, 1, 0.9, False, 2, "val"),
    (1, "a", "done", 1, "lora", 1e-3, 0, "train", "loss", 10, 2, 0.7, False, 2, "val"),
    (1, "a", "done", 1, "lora", 1e-3, 0, "select", "score", 10, 1, -0.4, False, 2, "val"),
    (1, "a", "done", 1, "lora", 1e-3, 0, "select", "score", 20, 2, -0.3, True, 2, "val"),
    (1, "a", "done", 1, "lora", 1e-3, 0, "test", "score", 10, 1, -0.5, False, 2, "val"),
    (1, "a", "done", 1, "lora", 1e-3, 0, "test", "score", 20, 2, -0.2, True, 2, "val"),
    (1, "a", "done", 1, "lora", 1e-3, 0, "summary", "train_seconds", 0, None, 1.5, False, 2,
     "val"),
    (2, "a", "done", 2, "lora-plus", 1e-2, 1, "test", "score", 10, 1, -0.1, True, 1, "test"),
    (2, "a", "done", 2, "lora-plus", 1e-2, 1, "test", "score", 20, 2, -0.3, False, 1, "test"),
    (3, "b", "queued", 0, "lora", 1e-4, 0, None, None, None, None, None, False, None, None),
    (4, "b", "failed", 3, "dora", 1e-4, 0, None, None, None, None, None, False, None, None),
]  # fmt: skip


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    return str(build_results_db(tmp_path_factory.mktemp("results") / "r.db"))


def rows(frame: pd.DataFrame, columns: list[str] = SHOWN) -> list[tuple]:
    """The frame's cells as plain Python values, missing ones (NaN, NA) as None."""
    shown = frame[columns].astype(object)
    return [tuple(None if pd.isna(v) else v for v in row)
            for row in shown.itertuples(index=False, name=None)]  # fmt: skip


def test_one_row_per_job_split_step_metric_with_the_job_columns_repeated(db: str):
    frame = lorabench.load_results(db)
    assert list(frame.columns) == COLUMNS
    assert rows(frame) == ROWS
    per_job = frame.drop_duplicates("job_id").set_index("job_id")
    assert per_job["created"].tolist() == [100.0, 101.0, 102.0, 103.0]
    assert per_job["started"].tolist()[:2] == [110.0, 151.0]
    assert pd.isna(per_job.loc[3, "started"]) and per_job.loc[4, "finished"] == 200.0
    assert per_job["max_attempts"].tolist() == [3, 3, 3, 3]
    assert per_job.loc[4, "error"] == "boom: the loss diverged"
    assert pd.isna(per_job.loc[1, "error"])
    # Flattened variant params; defaults a stored config leaves out are filled in.
    assert per_job.loc[2, "variant_params.lr_ratio"] == 4.0
    assert pd.isna(per_job.loc[1, "variant_params.lr_ratio"])
    assert per_job["select_split"].tolist() == [True] * 4
    assert per_job["base_dtype"].tolist() == ["fp32"] * 4
    assert per_job["targets"].tolist() == ["proj"] * 4
    # Seeds of one configuration share a group hash; other configurations do not.
    assert per_job["group_hash"].nunique() == 4
    assert str(frame["step"].dtype) == "Int64" and str(frame["best_epoch"].dtype) == "Int64"
    assert frame["best"].dtype == bool and frame["value"].dtype == "float64"


def test_the_best_rows_are_the_reported_scores(db: str):
    frame = lorabench.load_results(db)
    best = frame[frame["best"] & (frame["split"] == "test")]
    assert dict(zip(best["job_id"], best["value"], strict=True)) == {1: -0.2, 2: -0.1}


@pytest.mark.parametrize(
    ("options", "job_ids"),
    [
        ({"sweep": "b"}, [3, 4]),
        ({"sweep": "a", "task": "noop"}, [1, 2]),
        ({"where": ["variant=lora"]}, [1, 3]),
        ({"where": ["variant_params.lr_ratio=4.0"]}, [2]),
        ({"where": ["lr=1e-4", "variant=dora"]}, [4]),
        ({"where": ["select_split=true"]}, [1, 2, 3, 4]),  # the omitted default matches
        ({"where": ["select_split=false"]}, []),
    ],
)
def test_the_report_filters_select_jobs(db: str, options: dict, job_ids: list[int]):
    frame = lorabench.load_results(db, **options)
    assert sorted(set(frame["job_id"])) == job_ids
    # Flattened keys are those of the sweep's jobs: sweep b has no variant_params.
    flattened = [] if options.get("sweep") == "b" else ["variant_params.lr_ratio"]
    assert [c for c in COLUMNS if "." not in c or c in flattened] == list(frame.columns)


def test_splits_keep_only_those_rows(db: str):
    frame = lorabench.load_results(db, splits=["test", "summary"])
    assert rows(frame, ["job_id", "split", "metric", "epoch"]) == [
        (1, "test", "score", 1), (1, "test", "score", 2), (1, "summary", "train_seconds", None),
        (2, "test", "score", 1), (2, "test", "score", 2), (3, None, None, None),
        (4, None, None, None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sweep": "nonexist"}, "unknown sweep 'nonexist'; sweeps in the database: a, b"),
        ({"task": "nop"}, "unknown task 'nop'; did you mean 'noop'?"),
        ({"task": "bbc-news"}, "no jobs of task 'bbc-news'; tasks of the jobs: noop"),
        ({"where": ["colour=red"]}, "unknown field 'colour'"),
        ({"splits": ["eval"]}, "--split 'eval': choose from train, select, test, summary"),
    ],
)
def test_wrong_names_are_errors(db: str, options: dict, message: str):
    with pytest.raises(ValueError) as error:
        lorabench.load_results(db, **options)
    assert message in str(error.value)


def test_csv_on_stdout_reads_back_equal(db: str):
    result = runner.invoke(app, ["results", "--db", db])
    assert result.exit_code == 0, result.output
    read = pd.read_csv(io.StringIO(result.stdout))
    expected = lorabench.load_results(db)
    assert list(read.columns) == COLUMNS
    assert rows(read, COLUMNS) == rows(expected, COLUMNS)
    pd.testing.assert_frame_equal(read, expected, check_dtype=False, check_exact=True)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_each_format_round_trips_to_the_same_frame(db: str, tmp_path: Path, fmt: str):
    out = tmp_path / f"results.{fmt}"
    result = runner.invoke(app, ["results", "--db", db, "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (11 rows)" in " ".join(result.output.split())
    expected = lorabench.load_results(db)
    if fmt == "parquet":
        read = pd.read_parquet(out)
        pd.testing.assert_frame_equal(read, expected, check_exact=True)  # dtypes too
        return
    if fmt == "csv":
        read = pd.read_csv(out)
    else:
        lines = out.read_text().splitlines()
        assert len(lines) == 11
        assert json.loads(lines[-1])["error"] == "boom: the loss diverged"
        assert json.loads(lines[-1])["value"] is None  # NaN is written as null
        read = pd.read_json(out, lines=True, precise_float=True)
    assert rows(read, COLUMNS) == rows(expected, COLUMNS)
    pd.testing.assert_frame_equal(read, expected, check_dtype=False, check_exact=True)


def test_the_cli_filters_like_the_api(db: str, tmp_path: Path):
    out = tmp_path / "a.parquet"
    args = ["results", "--db", db, "--sweep", "a", "--where", "variant=lora-plus", "--split",
            "test", "--format", "parquet", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = lorabench.load_results(db, sweep="a", where=["variant=lora-plus"], splits=["test"])
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    assert rows(expected, ["job_id", "epoch", "value"]) == [(2, 1, -0.1), (2, 2, -0.3)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "nonexist"], "unknown sweep 'nonexist'; sweeps in the database: a, b"),
        (["--task", "nop"], "unknown task 'nop'; did you mean 'noop'?"),
        (["--format", "xlsx"], "--format 'xlsx': choose from csv, parquet, jsonl"),
        (["--format", "parquet"], "--format parquet is binary: name a file with --out FILE"),
        (["--split", "val"], "--split 'val': choose from train, select, test, summary"),
        (["--where", "nonsense"], "expected FIELD=VALUE"),
    ],
)
def test_cli_mistakes_exit_2_with_one_line(db: str, args: list[str], message: str):
    result = runner.invoke(app, ["results", "--db", db, *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_an_empty_database_gives_the_columns_and_no_rows(tmp_path: Path):
    from lorabench.store import open_engine

    open_engine(str(tmp_path / "empty.db"), create=True).dispose()
    frame = lorabench.load_results(str(tmp_path / "empty.db"))
    assert frame.empty
    assert list(frame.columns)[:5] == ["job_id", "sweep", "state", "attempts", "max_attempts"]
    assert list(frame.columns)[-6:] == ["split", "metric", "step", "epoch", "value", "best"]


def test_the_readme_jobs_and_results_commands_run(tmp_path: Path, monkeypatch):
    """Each `lorabench` line of the README's "Jobs and results" block, run as written (output
    redirection done by the test) on a database holding a sweep `lr` of 12 jobs."""
    from report_db import ReportDB

    text = README.read_text(encoding="utf-8").split("\n## Jobs and results\n", 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True)[1:] for line in block.splitlines()]
    assert [c[0] for c in commands] == ["jobs", "jobs", "jobs", "results", "results"]
    db = ReportDB(tmp_path / "lr.db")
    for i in range(12):
        db.add({"task": "noop", "variant": ("lora", "dora")[i % 2], "lr": 10.0 ** -(i + 1)},
               sweep="lr", state="failed" if i == 11 else "done",
               test={"score": [-0.5, -0.4]}, select_={"score": [-0.3, -0.2]})  # fmt: skip
    db.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LORABENCH_DB", str(tmp_path / "lr.db"))
    monkeypatch.setenv("COLUMNS", "200")
    outputs = []
    for args in commands:
        redirect = args[args.index(">") + 1] if ">" in args else None
        args = args[: args.index(">")] if redirect else args
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        if redirect:
            Path(redirect).write_text(result.stdout)
        outputs.append(" ".join(result.output.split()))
    assert "│ 12 │ lr │ dora │ noop │ 1e-12 │ 0 │ failed │" in outputs[0]
    assert outputs[1].count("│ dora │") == 6
    assert "job 12 in sweep lr" in outputs[2]
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 11 * 4 + 1
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert set(scores["split"].dropna()) == {"test", "select"} and len(scores) == 11 * 4 + 1
