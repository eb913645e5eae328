"""Paper presets: each plans the paper's exact job matrix; --dry-run counts, estimates, writes
nothing."""

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from lorabench.cli import app
from lorabench.cli.presets import job_gpu_hours, load_preset, plan_preset, preset_names
from lorabench.config import resolve_job
from lorabench.store import open_engine
from lorabench.store.models import Job, Sweep

runner = CliRunner()

PAPER_VARIANTS = {
    "lora", "hira", "rasa", "adalora", "melora", "denselora", "randlora", "relora", "dora",
    "rslora", "lora-plus", "delora", "eva", "pissa", "lora-ga", "lora-one", "nzlora", "goat",
    "moslora", "loramoe",
}  # fmt: skip
JOB_COUNTS = {
    "paper-nlg": 20 * 8 * 2,
    "paper-glue": 20 * 7 * 9,
    "paper-ic": 20 * 10 * 7,
    "paper-highrank": (2 + 4) * 6 * 2,  # LoRA at alpha 16 and 256, four variants
    "paper-overhead": 19,  # the rows of Table II
    "paper-sensitivity": 3 * (4 + 5 + 3 + 8 - 3),  # the base point is shared by four axes
}


def invoke(*args: str):
    return runner.invoke(app, list(args))


def flat(output: str) -> str:
    return " ".join(output.split())


def jobs_of(name: str, **overrides):
    planned = plan_preset(load_preset(name), overrides)
    return {job.config_hash: job for _, spec in planned.parts for job in spec.expand()}.values()


def test_the_shipped_presets_are_the_papers_experiments():
    assert preset_names() == sorted(JOB_COUNTS)


@pytest.mark.parametrize("name", sorted(JOB_COUNTS))
def test_dry_run_counts_the_papers_jobs_and_writes_nothing(tmp_path: Path, name: str):
    db = tmp_path / "x.db"
    result = invoke("plan", "--preset", name, "--dry-run", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert f"sweep {name}: {JOB_COUNTS[name]} jobs (dry run)" in result.output
    assert "estimated GPU-hours: ~" in result.output
    assert "order-of-magnitude guide" in flat(result.output)
    assert not db.exists()


@pytest.mark.parametrize("name", ["paper-nlg", "paper-glue", "paper-ic"])
def test_main_sweeps_cover_the_20_variants_denselora_at_rank_192(name: str):
    jobs = list(jobs_of(name))
    assert {job.variant for job in jobs} == PAPER_VARIANTS
    ranks = {(job.variant == "denselora", job.rank, job.alpha) for job in jobs}
    assert ranks == {(False, 8, 16.0), (True, 192, 384.0)}
    assert {job.dropout for job in jobs} == {0.0}


def test_glue_preset_has_the_papers_settings():
    jobs = list(jobs_of("paper-glue"))
    assert {(j.batch_size, j.epochs, j.precision, j.max_length, j.schedule) for j in jobs} == {
        (32, 10, "fp32", 256, "linear")
    }
    assert sorted({j.lr for j in jobs}) == [1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3]


def test_overhead_preset_holds_the_table_ii_rows():
    rows = {
        (j.variant, j.adapter_checkpointing, j.rank, tuple(sorted(j.variant_params.items())))
        for j in jobs_of("paper-overhead")
    }
    assert ("lora", True, 8, ()) in rows and ("dora", True, 8, ()) in rows
    assert ("randlora", False, 8, (("max_basis_dim", 4096),)) in rows
    assert ("loramoe", False, 6, (("experts", 6),)) in rows
    assert ("denselora", False, 192, ()) in rows
    jobs = list(jobs_of("paper-overhead"))
    assert {(j.batch_size, j.precision, j.max_length) for j in jobs} == {(1, "bf16", 1024)}


def test_sensitivity_varies_one_axis_at_a_time_from_the_base_point():
    base = {"train_size": 100000, "batch_size": 64, "dropout": 0.0, "lr": 5e-5}
    for job in jobs_of("paper-sensitivity"):
        changed = [k for k, v in base.items() if getattr(job, k) != v]
        assert len(changed) <= 1, changed


def test_seed_override_multiplies_the_count(tmp_path: Path):
    result = invoke("plan", "--preset", "paper-sensitivity", "--seed", "0,1,2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"{JOB_COUNTS['paper-sensitivity'] * 3} jobs (dry run)" in result.output


def test_planning_a_preset_writes_one_sweep_and_dry_run_leaves_the_db_unchanged(tmp_path: Path):
    db = tmp_path / "x.db"
    result = invoke("plan", "--preset", "paper-overhead", "--db", str(db))
    assert result.exit_code == 0, result.output
    assert "19 new jobs, 0 already present" in result.output
    engine = open_engine(str(db), read_only=True)
    with engine.connect() as conn:
        assert conn.execute(select(Sweep.name)).scalars().all() == ["paper-overhead"]
        assert conn.execute(select(func.count()).select_from(Job)).scalar_one() == 19
    engine.dispose()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    assert invoke("plan", "--preset", "paper-glue", "--dry-run", "--db", str(db)).exit_code == 0
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_variant_flag_picks_variants_with_their_preset_settings():
    jobs = jobs_of("paper-glue", variant=["denselora", "lora", "vera"], task=["glue-rte"])
    by_variant = {job.variant: (job.rank, job.alpha) for job in jobs if job.lr == 1e-4}
    # DenseLoRA keeps its own part's rank; vera, in no part, gets the paper's default part.
    assert by_variant == {"denselora": (192, 384.0), "lora": (8, 16.0), "vera": (8, 16.0)}
    assert len(list(jobs)) == 3 * 7


def test_a_new_variant_joins_every_sensitivity_axis():
    jobs = list(jobs_of("paper-sensitivity", variant=["dora"]))
    assert {job.variant for job in jobs} == {"dora"}
    assert len(jobs) == JOB_COUNTS["paper-sensitivity"] // 3


def test_unknown_preset_names_the_known_ones():
    result = invoke("plan", "--preset", "paper-nosuch", "--dry-run")
    assert result.exit_code == 2
    assert "unknown preset 'paper-nosuch'; known: paper-glue, paper-highrank" in flat(result.output)
    close = invoke("plan", "--preset", "paper-glu", "--dry-run")
    assert close.exit_code == 2
    assert "unknown preset 'paper-glu'; did you mean 'paper-glue'?" in flat(close.output)
    assert "Traceback" not in result.output


def test_preset_and_sweep_file_together_is_an_error(tmp_path: Path):
    sweep = tmp_path / "s.toml"
    sweep.write_text('task = "bbc-news"\nvariant = "lora"\nlr = 1e-4\n')
    result = invoke("plan", str(sweep), "--preset", "paper-nlg", "--dry-run")
    assert result.exit_code == 2
    assert "not both" in result.output


def test_estimate_of_a_hand_computed_sweep():
    # Table II: LoRA 4h42min = 4.7 h, DoRA 9h19min = 559 min; one epoch over 100k samples.
    result = invoke(
        "plan", "--task", "gsm8k", "--variant", "lora,dora", "--lr", "1e-4", "--dry-run"
    )
    assert result.exit_code == 0, result.output
    assert "estimated GPU-hours: ~14.0" in result.output  # 4.7 + 9.3167 = 14.0167


@pytest.mark.parametrize(
    ("values", "hours"),
    [
        ({"task": "gsm8k", "variant": "lora"}, 4.7),
        ({"task": "gsm8k", "variant": "lora", "train_size": 395000}, 4.7 * 3.95),
        ({"task": "gsm8k", "variant": "lora", "adapter_checkpointing": True}, 382 / 60),
        ({"task": "gsm8k", "variant": "dora", "adapter_checkpointing": True}, 737 / 60),
        ({"task": "gsm8k", "variant": "hira", "adapter_checkpointing": True}, 490 / 60 * 382 / 282),
        ({"task": "gsm8k", "variant": "vera"}, 4.7),  # no Table II row: LoRA's time
        ({"task": "gsm8k", "variant": "loramoe", "variant_params": {"experts": 6}}, 1677 / 60),
        (
            {"task": "gsm8k", "variant": "randlora", "variant_params": {"max_basis_dim": 4096}},
            2371 / 60,
        ),
        ({"task": "glue-rte", "variant": "lora"}, 4.7 * 0.05),
        ({"task": "ic-dtd", "variant": "adalora"}, 730 / 60 * 0.03),
    ],
)
def test_job_gpu_hours(values, hours):
    assert job_gpu_hours(resolve_job({"lr": 1e-4, **values})) == pytest.approx(hours)
