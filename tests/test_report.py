"""Reporting basics on small synthetic databases: epoch rules, one configuration per cell, row
labels, --where, metrics that declare their direction and units, and the lr table's rendering."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
from report_db import ReportDB
from typer.testing import CliRunner

from lorabench.catalog import task as catalog_task
from lorabench.cli import app
from lorabench.report.configs import (
    apply_where,
    base_point,
    format_lr,
    parse_where,
    row_labels,
    varying_fields,
)
from lorabench.report.load import job_frame
from lorabench.report.registry import build_tables, figure_names, table_names
from lorabench.report.render import CSV_COLUMNS, long_form, markdown, rich_tables
from lorabench.report.select import Scoring, score_jobs

BBC = {"task": "bbc-news", "variant": "lora"}
NOOP = {"task": "noop", "variant": "lora", "lr": 1e-3}


def _scores(data, **scoring) -> pd.DataFrame:  # noqa: ANN001
    return score_jobs(data, Scoring(**scoring)).set_index("job_id")


# --------------------------------------------------------------------------- epoch rules


@pytest.fixture
def epochs_db(tmp_path):
    db = ReportDB(tmp_path / "e.db")
    a = db.add({**BBC, "lr": 1e-4}, test={"accuracy": [0.80, 0.85, 0.82]},
               select_={"accuracy": [0.70, 0.60, 0.75]}, attempts=2)  # fmt: skip
    b = db.add({**BBC, "lr": 1e-4, "seed": 1}, test={"accuracy": [0.60, 0.70, None]})
    db.close()
    return db, a, b


def test_test_rule_takes_the_best_test_epoch(epochs_db):
    db, a, b = epochs_db
    with db.data() as data:
        scores = _scores(data, select="test")
    assert scores.loc[a, ["epoch", "score", "select_score", "by"]].tolist() == [2, 0.85, 0.60,
                                                                                "test"]  # fmt: skip
    # A NULL (NaN) epoch never wins; a decoy row of an earlier attempt never counts.
    assert scores.loc[b, ["epoch", "score"]].tolist() == [2, 0.70]
    assert not scores["fallback"].any()


def test_val_rule_takes_the_best_select_epoch_and_reports_its_test_score(epochs_db):
    db, a, b = epochs_db
    with db.data() as data:
        scores = _scores(data)  # the default: val
    assert scores.loc[a, ["epoch", "score", "select_score", "by"]].tolist() == [3, 0.82, 0.75,
                                                                                "val"]  # fmt: skip
    assert not scores.at[a, "fallback"]
    # No select rows: the test rule, flagged.
    assert scores.loc[b, ["epoch", "score", "by"]].tolist() == [2, 0.70, "test"]
    assert scores.at[b, "fallback"]


def test_last_rule_takes_the_last_epoch_under_either_select(epochs_db):
    db, a, b = epochs_db
    with db.data() as data:
        for select in ("val", "test"):
            scores = _scores(data, rule="last", select=select)
            assert scores.loc[a, ["epoch", "score", "by"]].tolist() == [3, 0.82, "last"]
            assert scores.loc[b, ["epoch", "score"]].tolist() == [2, 0.70]


def test_select_metric_and_its_direction_choose_the_epoch(tmp_path, monkeypatch):
    infos = dict(catalog_task.task_infos())
    infos["bbc-news"] = dataclasses.replace(infos["bbc-news"], select_metric="loss")
    monkeypatch.setattr(catalog_task, "task_infos", lambda: infos)
    db = ReportDB(tmp_path / "s.db")
    job = db.add({**BBC, "lr": 1e-4}, test={"accuracy": [0.5, 0.6, 0.7]},
                 select_={"loss": [0.5, 0.3, 0.4], "accuracy": [0.1, 0.2, 0.9]})  # fmt: skip
    db.close()
    with db.data() as data:
        scores = _scores(data)
    # Read on "loss", lower is better: epoch 2, not the select accuracy's epoch 3.
    assert scores.loc[job, ["epoch", "score", "select_score"]].tolist() == [2, 0.6, 0.3]


def test_unknown_rule_select_and_metric_are_refused(epochs_db):
    db, _, _ = epochs_db
    with pytest.raises(ValueError, match="--rule 'mean'"):
        Scoring(rule="mean")
    with pytest.raises(ValueError, match="--select 'dev'"):
        Scoring(select="dev")
    with db.data() as data, pytest.raises(ValueError, match="'f1'; metrics present: accuracy"):
        score_jobs(data, Scoring(metric="f1"))


# --------------------------------------------------------------------------- configurations


def _jobs(*configs: dict) -> pd.DataFrame:
    from lorabench.config import resolve_job

    rows = []
    for i, config in enumerate(configs, start=1):
        job = resolve_job(config)
        rows.append((i, "s", job.model_dump(mode="json"), job.group_hash, "done"))
    return job_frame(rows)


def test_rows_are_labelled_with_every_field_that_varies():
    jobs = _jobs(
        {**NOOP, "variant": "dora", "rank": 16, "alpha": 32},
        {**NOOP, "variant": "dora"},
        {**NOOP, "variant": "randlora", "variant_params": {"max_basis_dim": 1024}},
        {**NOOP, "variant": "randlora", "variant_params": {"max_basis_dim": 4096}},
        {**NOOP, "dropout": 0.1},
        {**NOOP, "dropout": 0.1, "seed": 1},  # a seed is pooled, never a label
        {**NOOP, "lr": 1e-4, "dropout": 0.2},  # lr is the table's axis here: no other lora
        NOOP,
    )
    assert varying_fields(jobs, ("task", "lr")) == [
        "variant_params.max_basis_dim", "rank", "alpha", "dropout",
    ]  # fmt: skip
    assert row_labels(jobs, ("task", "lr")).tolist() == [
        "dora r=16 α=32 dropout=0", "dora r=8 α=16 dropout=0", "randlora max_basis_dim=1024 "
        "r=8 α=16 dropout=0", "randlora max_basis_dim=4096 r=8 α=16 dropout=0",
        "lora r=8 α=16 dropout=0.1", "lora r=8 α=16 dropout=0.1", "lora r=8 α=16 dropout=0.2",
        "lora r=8 α=16 dropout=0",
    ]  # fmt: skip
    # Without lr among the axes, lr labels the rows as well.
    assert "lr=1e-04" in row_labels(jobs)[6]


def test_per_variant_settings_that_never_vary_within_a_variant_are_not_labels():
    jobs = _jobs(
        {**NOOP, "variant": "randlora", "variant_params": {"max_basis_dim": 1024}},
        {**NOOP, "batch_size": 16},
        {**NOOP, "batch_size": 32},
    )
    assert row_labels(jobs, ("task", "lr")).tolist() == ["randlora bs=8", "lora bs=16",
                                                         "lora bs=32"]  # fmt: skip


def test_lr_labels_are_numbers_in_the_frame():
    jobs = pd.DataFrame({"job_id": [1, 2], "variant": ["lora", "lora"], "model": ["m", "m"],
                         "rank": [4, 8], "alpha": [16.0, 16.0]})  # fmt: skip
    assert row_labels(jobs).tolist() == ["lora r=4", "lora r=8"]
    assert row_labels(jobs.iloc[:0]).empty


def test_base_point_is_the_most_frequent_value_ties_smallest_unset_last():
    jobs = pd.DataFrame({"a": [1, 2, 2, 1, None, None], "b": [None, None, None, 5, 5, 5]})
    assert base_point(jobs, ("a", "b")) == {"a": 1.0, "b": 5.0}
    assert base_point(jobs.iloc[:3], ("b",)) == {"b": None}


def test_where_reads_values_as_the_fields_type_and_narrows():
    jobs = _jobs(
        {**NOOP, "batch_size": 16}, {**NOOP, "batch_size": 32}, {**NOOP, "lr": 1e-4},
        {**NOOP, "variant": "randlora", "variant_params": {"max_basis_dim": 1024}},
    )  # fmt: skip
    filters = parse_where(["batch_size=16", "lr=1e-3", "rank=8", "dropout=0"], jobs)
    assert filters == [("batch_size", 16), ("lr", 0.001), ("rank", 8), ("dropout", 0.0)]
    from lorabench.report.load import Data

    empty = pd.DataFrame(columns=["job_id", "epoch", "metric", "value"])
    data = Data(jobs, empty, empty, empty.drop(columns="epoch"))
    assert apply_where(data, filters).jobs["job_id"].tolist() == [1]
    params = parse_where(["variant_params.max_basis_dim=1024"], jobs)
    assert apply_where(data, params).jobs["job_id"].tolist() == [4]
    assert parse_where(["train_size=none", "targets=a,b"], jobs) == [
        ("train_size", None), ("targets", "a,b"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown field 'batch'; did you mean 'batch_size'"):
        parse_where(["batch=16"], jobs)
    with pytest.raises(ValueError, match="unknown field 'zzz'; fields: task, task_params"):
        parse_where(["zzz=16"], jobs)
    with pytest.raises(ValueError, match="--where 'rank=abc': rank input should be a valid"):
        parse_where(["rank=abc"], jobs)
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        parse_where(["rank"], jobs)


# --------------------------------------------------------------------------- the lr table

LRS = (1e-4, 3e-4, 1e-3)
# (variant, lr, seed) -> accuracy at epochs 1, 2, 3.
ACC = {
    ("lora", 1e-4, 0): [0.80, 0.82, 0.81],  # best epoch 2, not the last
    ("lora", 1e-4, 1): [0.78, 0.83, 0.84],
    ("lora", 3e-4, 0): [0.85, 0.88, 0.86],
    ("lora", 3e-4, 1): [0.86, 0.87, 0.91],
    ("lora", 1e-3, 0): [0.70, 0.75, 0.74],  # single finished seed (seed 1 failed)
    ("dora", 1e-4, 0): [0.81, 0.84, 0.85],
    ("dora", 1e-4, 1): [0.83, 0.86, 0.84],
    ("dora", 3e-4, 0): [0.87, 0.91, 0.90],
    ("dora", 3e-4, 1): [0.88, 0.89, 0.93],
}
UNFINISHED = {("lora", 1e-3, 1): "failed", ("dora", 1e-3, 0): "queued",
              ("dora", 1e-3, 1): "running"}  # fmt: skip


@pytest.fixture(scope="module")
def lr_db(tmp_path_factory):
    db = ReportDB(tmp_path_factory.mktemp("lr") / "lr.db")
    for (variant, lr, seed), values in ACC.items():
        db.add({**BBC, "variant": variant, "lr": lr, "seed": seed},
               test={"accuracy": values, "loss": [1.0 - v for v in values]})  # fmt: skip
    for (variant, lr, seed), state in UNFINISHED.items():
        db.add({**BBC, "variant": variant, "lr": lr, "seed": seed}, state=state)
    db.close()
    return db


def test_lr_table_markdown_with_intervals_bold_and_pending(lr_db):
    with lr_db.data() as data:
        (table,) = build_tables("lr", data, Scoring(select="test"))
    assert table.stem == "lr-table-bbc-news"
    lines = markdown(table).splitlines()
    assert lines[0] == "# bbc-news: accuracy (best epoch) by variant and learning rate"
    assert lines[4] == "| variant | 1e-04 | 3e-04 | 1e-03 | best LR |"
    assert lines[6] == (
        "| dora | **85.50 ± 0.71 [79.15, 91.85]** | **92.00 ± 1.41 [79.29, 104.71]** | "
        "— (1 queued, 1 running) | 3e-04 |"
    )
    assert lines[7] == (
        "| lora | 83.00 ± 1.41 [70.29, 95.71] | 89.50 ± 2.12 [70.44, 108.56] | **75.00** | 3e-04 |"
    )
    text = markdown(table)
    assert "ddof=1" in text and "Student t" in text
    assert "best LR: the learning rate with the best mean test score" in text
    # No outcomes stored: no ≈, and the note says why.
    assert "≈ not tested for 2 cell(s): no per-example outcomes stored" in text


def test_lr_table_val_rule_without_select_rows_says_so(lr_db):
    with lr_db.data() as data:
        (table,) = build_tables("lr", data, Scoring())
    text = markdown(table)
    assert "(best epoch on the select split)" in text.splitlines()[0]
    assert "--select val: 9 job(s) have no select rows" in text
    assert "the paper's rule" in text
    # Scores are the test rule's, as said.
    assert table.blocks[0].cell("lora", "1e-04").mean == pytest.approx(83.0)


def test_lr_table_csv_and_rich(lr_db, tmp_path):
    with lr_db.data() as data:
        (table,) = build_tables("lr", data, Scoring(select="test"))
    frame = long_form(table)
    assert list(frame.columns) == CSV_COLUMNS
    row = frame[(frame["row"] == "lora") & (frame["column"] == "3e-04")].iloc[0]
    assert (row["mean"], row["n"]) == (pytest.approx(89.5), 2)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(70.4407, abs=1e-3),
                                               pytest.approx(108.5593, abs=1e-3))  # fmt: skip
    best = frame[(frame["row"] == "dora") & (frame["column"] == "best LR")].iloc[0]
    assert best["label"] == "3e-04" and math.isnan(best["mean"])
    (rich,) = rich_tables(table)
    assert [c.header for c in rich.columns] == ["variant", "1e-04", "3e-04", "1e-03", "best LR"]
    assert [c.style for c in rich.columns[3].cells] == ["dim", "bold"]


def test_lower_is_better_metric_is_ranked_by_its_minimum(lr_db):
    with lr_db.data() as data:
        (table,) = build_tables("lr", data, Scoring(metric="loss", select="test"))
    block = table.blocks[0]
    # loss = 1 - accuracy, best (lowest) epoch; not a percentage: 4 decimals, not x100.
    assert block.cell("lora", "1e-04").mean == pytest.approx(0.17)
    assert block.cell("lora", "1e-04").text(block.decimals["1e-04"], False).startswith("0.1700")
    assert [block.cell(r, "1e-04").mark for r in block.rows] == ["best", ""]  # dora: 0.145
    assert block.cell("lora", "1e-03").mark == "best"  # the only one: lowest by default
    assert block.cell("dora", "best LR").label == "3e-04"  # min loss


def test_percent_follows_the_metric_declaration(tmp_path):
    db = ReportDB(tmp_path / "n.db")
    db.add(NOOP, test={"score": [-0.5, -0.25]})  # all in [-1, 1], yet not a fraction
    db.close()
    with db.data() as data:
        (table,) = build_tables("lr", data, Scoring(select="test"))
    cell = table.blocks[0].cell("lora", "1e-03")
    assert cell.mean == pytest.approx(-0.25)
    assert "| lora | **-0.2500** | 1e-03 |" in markdown(table)


def test_two_batch_sizes_are_two_rows_not_one_cell(tmp_path):
    db = ReportDB(tmp_path / "b.db")
    db.add({**NOOP, "batch_size": 16}, test={"score": [-0.5]})
    db.add({**NOOP, "batch_size": 32}, test={"score": [-0.1]})
    db.close()
    with db.data() as data:
        (table,) = build_tables("lr", data, Scoring(select="test"))
    block = table.blocks[0]
    assert block.rows == ["lora bs=16", "lora bs=32"]
    assert [block.cell(r, "1e-03").mean for r in block.rows] == pytest.approx([-0.5, -0.1])
    assert [block.cell(r, "1e-03").n for r in block.rows] == [1, 1]


def test_registry_lists_every_table_and_figure():
    assert table_names() == ["glue", "highrank", "ic", "lr", "nlg", "overhead", "search",
                             "selection", "sensitivity", "ties"]  # fmt: skip
    assert figure_names() == ["lr-sweep", "overhead", "sensitivity"]
    result = CliRunner().invoke(app, ["report", "--table", "nope"])
    assert result.exit_code == 2
    assert "available tables: glue, highrank, ic, lr, nlg" in " ".join(result.output.split())


def test_cli_where_and_its_errors(lr_db, tmp_path):
    runner = CliRunner()
    base = ["report", "--db", str(lr_db.path), "--table", "lr", "--select", "test",
            "--format", "csv", "--out", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, [*base, "--where", "variant=dora", "--where", "lr=3e-4"])
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(tmp_path / "lr-table-bbc-news.csv")
    assert set(csv["row"]) == {"dora"} and set(csv["column"]) == {"3e-04", "best LR"}
    bad = runner.invoke(app, [*base, "--where", "nope=1"])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
    assert "unknown field 'nope'" in bad.output
    empty = runner.invoke(app, [*base, "--where", "rank=64"])
    assert empty.exit_code == 2 and "no jobs in the database" in empty.output


def test_format_lr():
    assert [format_lr(x) for x in (1e-4, 3e-4, 1e-3, 2.5e-4, 0.01)] == [
        "1e-04", "3e-04", "1e-03", "2.5e-04", "1e-02",
    ]  # fmt: skip
