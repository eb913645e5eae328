"""Paper-layout tables and `--compare paper` on a database filled with known synthetic metrics."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.cli.plan import job_rows
from lorabench.config import resolve_job
from lorabench.report.load import load_data
from lorabench.report.registry import build_tables, table_names
from lorabench.report.render import markdown
from lorabench.report.select import Scoring
from lorabench.store import MetricRow, claim, enqueue, fail, finish, open_engine, register_worker

SQRT2 = math.sqrt(2)  # sample std (x100) of two percentages 2 points apart

# name -> (sweep, config, eval values per epoch {metric: [...]}, summary {metric: value})
GLUE_1E5 = {  # one value per task: AVG = 70.00, the paper's 69.76
    "glue-sst2": ("accuracy", 0.94), "glue-cola": ("matthews_correlation", 0.30),
    "glue-mnli": ("accuracy_matched", 0.86), "glue-mrpc": ("accuracy", 0.70),
    "glue-qnli": ("accuracy", 0.90), "glue-qqp": ("f1", 0.85), "glue-rte": ("accuracy", 0.50),
    "glue-stsb": ("pearson", 0.80), "glue-wnli": ("accuracy", 0.45),
}  # fmt: skip
SENS_BASE = {"task": "gsm8k-mini", "train_size": 100, "batch_size": 8, "dropout": 0.0, "lr": 1e-4}


def _done() -> list[tuple[str, dict, dict, dict]]:
    glue = {"variant": "lora", "seed": 0}
    jobs = [
        # Best epoch 2 (0.90), last epoch 0.88: the paper's 89.45 -> +0.55.
        ("glue", {**glue, "task": "glue-sst2", "lr": 1e-6}, {"accuracy": [0.85, 0.90, 0.88]}, {}),
        ("glue", {**glue, "task": "glue-cola", "lr": 1e-6},
         {"matthews_correlation": [0.10, 0.12]}, {}),
        ("glue", {**glue, "task": "glue-cola", "lr": 1e-6, "seed": 1},
         {"matthews_correlation": [0.14, 0.13]}, {}),
    ]  # fmt: skip
    jobs += [
        ("glue", {**glue, "task": t, "lr": 1e-5}, {m: [v - 0.01, v]}, {})
        for t, (m, v) in GLUE_1E5.items()
    ]
    hr = {"task": "gsm8k", "variant": "lora", "rank": 128, "alpha": 256, "lr": 1e-5}
    jobs += [
        ("hr", {**hr, "seed": 0}, {"accuracy_strict": [0.70, 0.73]}, {}),
        ("hr", {**hr, "seed": 1}, {"accuracy_strict": [0.74, 0.71]}, {}),
        ("hr", {**hr, "rank": 8, "alpha": 16}, {"accuracy_strict": [0.60]}, {}),  # not high rank
        ("hr", {"task": "humaneval", "variant": "lora-ga", "rank": 128, "alpha": 16, "lr": 2e-5},
         {"pass@1": [0.50, 0.40]}, {}),
    ]  # fmt: skip
    oh = {"task": "gsm8k-mini", "lr": 1e-4}
    summary = ("adapter_params", "step_time_s", "train_seconds", "peak_memory_mb")
    for variant, extra, values in [
        ("lora", {}, (2e6, 0.5, 600, 1000)),
        ("lora", {"adapter_checkpointing": True}, (2e6, 0.6, 720, 700)),
        ("dora", {}, (2.2e6, 1.0, 1200, 1500)),
        ("loramoe", {"rank": 6, "variant_params": {"experts": 6}}, (2.4e6, 2.0, 2400, 1600)),
    ]:
        config = {**oh, "variant": variant, **extra}
        jobs.append(("oh", config, {}, dict(zip(summary, values, strict=True))))
    lora = {**SENS_BASE, "variant": "lora"}
    for change, value in [
        ({}, 0.50), ({"train_size": 200}, 0.55), ({"batch_size": 16}, 0.45),
        ({"dropout": 0.1}, 0.52), ({"lr": 1e-3}, 0.30), ({"lr": 1e-5}, 0.40),
        ({"train_size": 200, "lr": 1e-3}, 0.99),  # differs in two axes: on no axis
    ]:  # fmt: skip
        jobs.append(("sens", {**lora, **change}, {"accuracy_strict": [value]}, {}))
    return jobs


PENDING = [  # (sweep, config, state)
    ("glue", {"task": "glue-sst2", "variant": "dora", "lr": 1e-6, "seed": 0}, "failed"),
    ("glue", {"task": "glue-sst2", "variant": "lora", "lr": 1e-4, "seed": 0}, "running"),
    ("hr", {"task": "humaneval", "variant": "rslora", "rank": 128, "alpha": 16, "lr": 1e-5},
     "running"),
    ("oh", {"task": "gsm8k-mini", "variant": "randlora", "lr": 1e-4}, "failed"),
    ("glue", {"task": "glue-sst2", "variant": "dora", "lr": 1e-6, "seed": 1}, "queued"),
    ("sens", {**SENS_BASE, "variant": "moslora"}, "queued"),
]  # fmt: skip


def _fill(db: str) -> object:
    """Fill ``db``; returns the writer engine, still open (its WAL not yet checkpointed)."""
    engine = open_engine(db, create=True)
    worker = register_worker(engine, "cpu")

    def add(sweep: str, config: dict):  # noqa: ANN202
        enqueue(engine, sweep, job_rows([resolve_job(config)]))
        claimed = claim(engine, worker, lease_seconds=600)
        assert claimed is not None
        return claimed

    for sweep, config, evals, summary in _done():
        claimed = add(sweep, config)
        rows = [
            MetricRow("eval", name, epoch * 10, value, epoch=epoch)
            for name, values in evals.items()
            for epoch, value in enumerate(values, start=1)
        ]
        rows += [MetricRow("summary", name, 0, value) for name, value in summary.items()]
        finish(engine, claimed, rows)
    for sweep, config, state in PENDING:
        if state == "queued":
            enqueue(engine, sweep, job_rows([resolve_job(config)]))
            continue
        claimed = add(sweep, config)
        if state == "failed":
            fail(engine, claimed, "boom", transient=False)
    return engine


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("db") / "x.db")
    _fill(path).dispose()
    return path


def _table(db: str, name: str, *, sweep: str, rule: str = "best", compare: bool = False):  # noqa: ANN202
    """The table as `report` builds it: --compare paper defaults to the test rule, else val
    (this database has no select rows, so both score every job by the test rule)."""
    scoring = Scoring(rule=rule, select="test" if compare else "val")
    engine = open_engine(db, read_only=True)
    try:
        (table,) = build_tables(name, load_data(engine, sweep=sweep), scoring, compare=compare)
    finally:
        engine.dispose()
    return table


def _cells(table) -> dict:  # noqa: ANN001
    return {(b.title, r, c): b.cell(r, c) for b in table.blocks for r in b.rows for c in b.columns}


def test_glue_blocks_per_lr_with_best_epoch_mean_std_and_pending(db):
    table = _table(db, "glue", sweep="glue")
    assert [b.title for b in table.blocks] == [
        "learning rate 1e-06", "learning rate 1e-05", "learning rate 1e-04",
    ]  # fmt: skip
    first = table.blocks[0]
    assert first.rows == ["dora", "lora"]
    assert first.columns[0] == "glue-sst2" and first.columns[-1] == "AVG"
    assert len(first.columns) == 10
    sst2 = first.cell("lora", "glue-sst2")
    assert (sst2.mean, sst2.n) == (pytest.approx(90.0), 1) and math.isnan(sst2.std)
    cola = first.cell("lora", "glue-cola")
    assert cola.mean == pytest.approx(13.0) and cola.std == pytest.approx(SQRT2) and cola.n == 2
    assert first.cell("dora", "glue-sst2").pending == "1 queued, 1 failed"
    assert first.cell("lora", "AVG").n == 0  # only 2 of 9 tasks: no average
    assert table.blocks[2].cell("lora", "glue-sst2").pending == "1 running"
    assert table.blocks[1].cell("lora", "AVG").mean == pytest.approx(70.0)

    lines = markdown(table).splitlines()
    assert (
        "| lora | **90.00** | **13.00 ± 1.41 [0.29, 25.71]** | — | — | — | — | — | — | — | — |"
        in lines
    )
    assert "| dora | — (1 queued, 1 failed) | — | — | — | — | — | — | — | — | — |" in lines
    assert "| lora | — (1 running) | — | — | — | — | — | — | — | — | — |" in lines


def test_last_epoch_rule(db):
    table = _table(db, "glue", sweep="glue", rule="last")
    assert table.blocks[0].cell("lora", "glue-sst2").mean == pytest.approx(88.0)
    assert table.blocks[0].cell("lora", "glue-cola").mean == pytest.approx(12.5)


def test_glue_compare_paper_exact_differences(db):
    table = _table(db, "glue", sweep="glue", compare=True)
    sst2 = table.blocks[0].cell("lora", "glue-sst2")
    assert sst2.paper == 89.45 and sst2.diff == pytest.approx(0.55)
    assert sst2.text(2, True) == "90.00 (paper 89.45, +0.55)"
    cola = table.blocks[0].cell("lora", "glue-cola")
    assert cola.paper == 0.0 and cola.diff == pytest.approx(13.0)
    avg = table.blocks[1].cell("lora", "AVG")
    assert avg.paper == 69.76 and avg.diff == pytest.approx(0.24)
    rte = table.blocks[1].cell("lora", "glue-rte")
    assert rte.mean == pytest.approx(50.0) and rte.diff == pytest.approx(0.90)
    assert table.blocks[0].cell("dora", "glue-sst2").text(2, True) == (
        "— (1 queued, 1 failed) (paper 89.56)"
    )


def test_highrank_table_and_compare(db):
    table = _table(db, "highrank", sweep="hr", compare=True)
    (block,) = table.blocks
    assert block.rows == ["lora r=128 α=256", "lora-ga r=128 α=16", "rslora r=128 α=16"]
    assert block.columns == ["gsm8k 1e-05", "humaneval 1e-05", "humaneval 2e-05"]
    lora = block.cell("lora r=128 α=256", "gsm8k 1e-05")
    assert lora.mean == pytest.approx(73.5) and lora.std == pytest.approx(0.5 * SQRT2)
    assert lora.paper == 72.02 and lora.diff == pytest.approx(1.48)
    ga = block.cell("lora-ga r=128 α=16", "humaneval 2e-05")
    assert ga.mean == pytest.approx(50.0) and ga.diff == pytest.approx(50.0 - 46.49)
    assert block.cell("rslora r=128 α=16", "humaneval 1e-05").pending == "1 running"


def test_nlg_table_rows_label_the_varying_rank(db):
    table = _table(db, "nlg", sweep="hr", compare=True)
    assert [b.title for b in table.blocks] == ["gsm8k: accuracy_strict", "humaneval: pass@1"]
    gsm = table.blocks[0]
    assert gsm.rows == ["lora r=128 α=256", "lora r=8 α=16"]  # sorted as text
    assert gsm.columns == ["1e-05"]
    assert gsm.cell("lora r=8 α=16", "1e-05").mean == pytest.approx(60.0)
    assert table.notes[0] == (
        "--compare paper: the paper's NLG learning-rate sweep is a plot (Fig. 7), not numbers; "
        "nothing to compare."
    )


def test_overhead_table_ratios_and_compare(db):
    table = _table(db, "overhead", sweep="oh", compare=True)
    (block,) = table.blocks
    assert block.rows == ["dora", "lora", "lora †", "loramoe experts=6", "randlora"]
    assert block.cell("lora", "adapter params (M)").mean == pytest.approx(2.0)
    assert block.cell("dora", "train time (min)").mean == pytest.approx(20.0)
    assert block.cell("dora", "time / LoRA").mean == pytest.approx(2.0)
    assert block.cell("dora", "time / LoRA").diff == pytest.approx(2.0 - 559 / 282)
    assert block.cell("dora", "memory / LoRA").diff == pytest.approx(1.5 - 52847 / 30067)
    assert block.cell("lora †", "memory / LoRA").mean == pytest.approx(0.7)
    assert block.cell("lora †", "memory / LoRA").paper == pytest.approx(20873 / 30067)
    moe = block.cell("loramoe experts=6", "params / LoRA")
    assert moe.mean == pytest.approx(1.2) and moe.paper == pytest.approx(23.20 / 20.97)
    assert block.cell("randlora", "peak memory (MB)").pending == "1 failed"
    assert block.cell("lora", "time / LoRA").diff == pytest.approx(0.0)
    # Only the ratio columns are compared: absolute times and memory depend on the hardware.
    assert (
        "| dora | 2.20 | 1.000 | 20.0 | 1500 | 1.10 (paper 1.07, +0.03) | 2.00 (paper 1.98, +0.02) "
        "| 1.50 (paper 1.76, -0.26) |"
    ) in markdown(table).splitlines()


def test_sensitivity_axes_from_the_base_point(db):
    table = _table(db, "sensitivity", sweep="sens")
    titles = [b.title for b in table.blocks]
    assert [t.split(" (base")[0] for t in titles] == [
        f"gsm8k-mini: accuracy_strict by {a}" for a in ("train_size", "batch_size", "dropout", "lr")
    ]
    assert "base: train_size=100, batch_size=8, dropout=0, lr=1e-04" in titles[0]
    by_axis = {b.title.split(" by ")[1].split(" ")[0]: b for b in table.blocks}
    assert by_axis["train_size"].columns == ["100", "200"]
    assert by_axis["train_size"].cell("lora", "200").mean == pytest.approx(55.0)  # not 0.99
    assert by_axis["lr"].columns == ["1e-05", "1e-04", "1e-03"]
    assert [by_axis["lr"].cell("lora", c).mean for c in by_axis["lr"].columns] == pytest.approx(
        [40.0, 50.0, 30.0]
    )
    assert by_axis["batch_size"].cell("lora", "16").mean == pytest.approx(45.0)
    assert by_axis["dropout"].cell("lora", "0.1").mean == pytest.approx(52.0)
    assert by_axis["dropout"].cell("moslora", "0").pending == "1 queued"


# In the -shm (WAL index), bytes 100-119 are the five reader marks (aReadMark) of the
# checkpoint info after the two 48-byte headers: any WAL reader, even read-only, records the
# snapshot it reads there. That is lock coordination, not data, so only those bytes may change.
READ_MARKS = slice(100, 120)


def _hashes(db: Path) -> dict[str, str | None]:
    out = {}
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db}{suffix}")
        if not path.exists():
            out[suffix] = None
            continue
        data = bytearray(path.read_bytes())
        if suffix == "-shm":
            data[READ_MARKS] = bytes(20)
        out[suffix] = hashlib.sha256(data).hexdigest()
    return out


def test_cli_writes_md_csv_and_never_changes_the_database_even_with_wal(tmp_path):
    db, out = tmp_path / "x.db", tmp_path / "reports"
    tables = [("glue", "glue"), ("highrank", "hr"), ("overhead", "oh"), ("sensitivity", "sens"),
              ("nlg", "hr"), ("lr", "glue"), ("selection", "hr"), ("ties", "hr")]  # fmt: skip
    refused = ("ic", "search")  # no ic jobs, no halving sweep
    assert sorted(name for name, _ in tables) == [n for n in table_names() if n not in refused]
    figures = [("lr-sweep", "glue"), ("sensitivity", "sens"), ("overhead", "oh")]
    writer = _fill(str(db))  # kept open: the -wal and -shm files exist during the reports
    try:
        before = _hashes(db)
        assert before["-wal"] is not None

        def report(*args: str) -> int:
            result = CliRunner().invoke(app, ["report", "--db", str(db), *args, "--out", str(out)])
            assert _hashes(db) == before, args
            return result.exit_code

        for name, sweep in tables:
            for extra in (["--where", "seed=0", "--select", "val"], ["--compare", "paper"]):
                assert report("--table", name, "--sweep", sweep, *extra, "--format", "md,csv") == 0
        for figure, sweep in figures:
            assert report("--figure", figure, "--sweep", sweep, "--format", "png") == 0
        for name in refused:  # refused, the database untouched too
            assert report("--table", name) == 2
    finally:
        writer.dispose()
    md = (out / "glue-table.md").read_text(encoding="utf-8")
    assert "90.00 (paper 89.45, +0.55)" in md
    csv = pd.read_csv(out / "glue-table.csv")
    row = csv[(csv["row"] == "lora") & (csv["column"] == "glue-sst2")].iloc[0]
    assert row["diff"] == pytest.approx(0.55) and row["paper"] == 89.45
    assert list(csv.columns) == [
        "block", "row", "column", "mean", "std", "n", "ci_low", "ci_high", "pending", "paper",
        "diff", "label", "mark", "p_value",
    ]  # fmt: skip
    assert (out / "overhead-table.csv").exists() and (out / "sensitivity-table.md").exists()


def test_cli_compare_without_paper_numbers_says_so(db, tmp_path):
    args = ["--table", "sensitivity", "--sweep", "sens", "--compare", "paper"]
    result = CliRunner().invoke(app, ["report", "--db", db, *args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Fig. 6), not numbers; nothing to compare" in " ".join(result.output.split())
    bad = CliRunner().invoke(app, ["report", "--db", db, "--table", "glue", "--compare", "x"])
    assert bad.exit_code == 2 and "--compare 'x'" in bad.output


def test_task_filter_and_nothing_to_report(db, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["report", "--db", db, "--table", "ic", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no ic jobs" in result.output
    result = runner.invoke(app, ["report", "--db", db, "--table", "glue", "--task", "glue-cola",
                                 "--format", "csv", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(tmp_path / "glue-table.csv")
    assert set(csv["column"]) == {"glue-cola", "AVG"}
    assert not (tmp_path / "glue-table.md").exists()


# --- One configuration per cell, in every table and figure ---------------------------------------

SETTINGS = {"bs": ("batch_size", (16, 32)), "wd": ("weight_decay", (0.0, 0.01))}
CONFIG_JOBS = [  # (config, metric); every job once per value of the sweep's field
    ({"task": "glue-sst2", "lr": 1e-5}, "accuracy"),
    ({"task": "ic-dtd", "lr": 1e-4}, "accuracy"),
    ({"task": "gsm8k", "rank": 128, "alpha": 256, "lr": 1e-5}, "accuracy_strict"),
    ({"task": "bbc-news", "lr": 1e-4}, "accuracy"),
    ({"task": "bbc-news", "lr": 1e-3}, "accuracy"),
]


@pytest.fixture(scope="module")
def configs_db(tmp_path_factory):
    from report_db import ReportDB

    db = ReportDB(tmp_path_factory.mktemp("cfg") / "cfg.db")
    for seed, (sweep, (field, values)) in enumerate(SETTINGS.items()):  # seeds: distinct jobs
        for k, value in enumerate(values):
            for config, metric in CONFIG_JOBS:
                db.add({**config, "variant": "lora", field: value, "seed": seed}, sweep=sweep,
                       test={metric: [0.5 + 0.1 * k]},
                       summary={"adapter_params": 1e6, "step_time_s": 0.1 + k,
                                "train_seconds": 10.0 + k, "peak_memory_mb": 100.0})  # fmt: skip
    db.close()
    return db


@pytest.mark.parametrize("name", ["lr", "glue", "ic", "nlg", "highrank", "overhead",
                                  "sensitivity", "selection", "ties"])  # fmt: skip
@pytest.mark.parametrize("sweep", list(SETTINGS))
def test_jobs_differing_in_one_field_are_never_one_cell(configs_db, name, sweep):
    field, values = SETTINGS[sweep]
    shown = {"batch_size": "bs", "weight_decay": "weight_decay"}[field]
    with configs_db.data(sweep=sweep) as data:
        tables = build_tables(name, data, Scoring())
    cells = [c for t in tables for b in t.blocks for c in b.cells.values()]
    assert cells and all(c.n <= 1 for c in cells)  # one seed each: nothing was pooled
    rows = {r for t in tables for b in t.blocks for r in b.rows}
    columns = {c for t in tables for b in t.blocks for c in b.columns}
    if name == "sensitivity" and field == "batch_size":  # its own axis: the columns
        assert {"16", "32"} <= columns
        return
    for value in values:
        assert any(f"{shown}={value:g}" in r for r in rows), (rows, value)


@pytest.mark.parametrize("sweep", list(SETTINGS))
def test_figures_draw_one_line_or_bar_per_configuration(configs_db, sweep):
    from lorabench.report.registry import get_figure

    field, values = SETTINGS[sweep]
    shown = {"batch_size": "bs", "weight_decay": "weight_decay"}[field]
    with configs_db.data(sweep=sweep) as data:
        bbc = data.only(data.jobs["task"] == "bbc-news")
        sweep_fig = get_figure("lr-sweep")(bbc, Scoring())
        overhead = get_figure("overhead")(data, Scoring())
        (panel,) = sweep_fig.axes
        lines = [ln.get_label() for ln in panel.get_lines() if not ln.get_label().startswith("_")]
        assert sorted(lines) == sorted(f"lora {shown}={v:g}" for v in values)
        bars = [t.get_text() for t in overhead.axes[0].get_yticklabels()]
        assert len(bars) == len(set(bars)) == 2 * len(CONFIG_JOBS)
        assert all(f"{shown}=" in b for b in bars)
        if field == "weight_decay":
            sens = get_figure("sensitivity")(bbc, Scoring())
            (sens_panel,) = sens.axes
            drawn = [ln.get_label() for ln in sens_panel.get_lines() if ln.get_label()[0] != "_"]
            assert sorted(drawn) == sorted(f"lora {shown}={v:g}" for v in values)


@pytest.mark.parametrize("name", ["lr", "glue", "ic", "nlg", "highrank", "overhead",
                                  "sensitivity", "selection", "ties"])  # fmt: skip
def test_where_narrows_every_table(configs_db, name, tmp_path):
    def cells(*where: str) -> pd.DataFrame:
        out = tmp_path / "-".join(where or ("all",))
        filters = [arg for w in where for arg in ("--where", w)]
        args = ["report", "--db", str(configs_db.path), "--sweep", "bs", "--table", name,
                *filters, "--format", "csv", "--out", str(out)]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        frames = [pd.read_csv(csv) for csv in sorted(out.glob("*.csv"))]  # lr: one per task
        return pd.concat(frames).astype({"block": str, "row": str})

    everything, narrowed = cells(), cells("batch_size=16")
    assert len(narrowed)
    if name == "sensitivity":  # batch size is its own axis there: with one value left, no block
        assert everything["block"].str.contains("by batch_size").any()
        assert not narrowed["block"].str.contains("by batch_size").any()
        assert set(narrowed["mean"]) == {50.0}  # only the bs=16 jobs (bs=32 scored 60)
        return
    rows = set(everything["row"])
    assert any("bs=32" in r for r in rows) and any("bs=16" in r for r in rows)
    assert not narrowed["row"].str.contains("bs=").any(), set(narrowed["row"])


@pytest.mark.parametrize("figure", ["lr-sweep", "sensitivity", "overhead"])
def test_where_narrows_every_figure(configs_db, figure):
    from lorabench.report.configs import apply_where, parse_where
    from lorabench.report.registry import get_figure

    with configs_db.data(sweep="wd") as data:
        data = data.only(data.jobs["task"] == "bbc-news")
        narrowed = apply_where(data, parse_where(["weight_decay=0.01"], data.jobs))
        fig = get_figure(figure)(narrowed, Scoring())
    labels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    labels += [ln.get_label() for ax in fig.axes for ln in ax.get_lines()]
    assert set(narrowed.jobs["weight_decay"]) == {0.01}
    assert not any("weight_decay=" in str(label) for label in labels), labels
