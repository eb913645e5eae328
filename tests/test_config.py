import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorabench.config import ConfigError, JobConfig, SweepSpec, resolve_job
from lorabench.tasks import get_task_info


def job(**values):
    return resolve_job({"task": "bbc-news", "variant": "lora", "lr": 1e-4, **values})


def test_task_defaults_fill_unset_fields():
    cfg = job()
    defaults = get_task_info("bbc-news").defaults
    assert cfg.model == defaults.model
    assert cfg.targets == defaults.targets
    assert (cfg.rank, cfg.alpha, cfg.dropout) == (8, 16.0, 0.0)  # the paper's defaults
    assert cfg.warmup_ratio == 0.03


def test_equal_numbers_written_differently_hash_the_same():
    assert job(lr=1e-4).config_hash == job(lr=0.0001).config_hash
    assert job(alpha=16).config_hash == job(alpha=16.0).config_hash
    assert job(weight_decay=-0.0).config_hash == job(weight_decay=0.0).config_hash
    assert job(lr=1e-4).config_hash != job(lr=2e-4).config_hash


def test_canonical_json_is_sorted_and_compact():
    text = job().canonical_json()
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert ", " not in text and ": " not in text
    assert JobConfig(**data).config_hash == job().config_hash  # round trip


def test_group_hash_ignores_only_the_seed():
    assert job(seed=0).group_hash == job(seed=1).group_hash
    assert job(seed=0).config_hash != job(seed=1).config_hash
    assert job(rank=4).group_hash != job(rank=8).group_hash


def test_sweep_expands_the_cross_product_without_duplicates():
    spec = SweepSpec.from_mapping(
        {
            "task": "bbc-news",
            "variant": ["lora", "rslora"],
            "lr": [1e-4, 1e-3, 0.001],
            "seed": [0, 1],
        }
    )
    jobs = spec.expand()
    assert len(jobs) == 2 * 2 * 2  # 1e-3 and 0.001 are one value
    assert len({j.config_hash for j in jobs}) == 8


def test_toml_file_and_cli_override(tmp_path: Path):
    path = tmp_path / "mysweep.toml"
    path.write_text(
        'task = "bbc-news"\nvariant = ["lora", "rslora"]\nlr = [1e-5, 1e-4]\n'
        'targets = ["query", "value"]\n'
    )
    spec = SweepSpec.from_toml(path)
    assert spec.name == "mysweep"
    jobs = spec.expand()
    assert len(jobs) == 4
    assert {j.targets for j in jobs} == {("query", "value")}  # one list is one value
    narrowed = spec.override({"variant": ["rslora"], "seed": [3]})
    assert {(j.variant, j.seed) for j in narrowed.expand()} == {("rslora", 3)}


def test_list_of_target_lists_is_an_axis():
    spec = SweepSpec.from_mapping(
        {"task": "bbc-news", "variant": "lora", "lr": 1e-4, "targets": [["query"], ["value"]]}
    )
    assert sorted(j.targets for j in spec.expand()) == [("query",), ("value",)]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"variant": "nosuch"}, "'variant'"),
        ({"lr": -1e-3}, "'lr'"),
        ({"rank": 0}, "'rank'"),
        ({"precision": "fp8"}, "'precision'"),
        ({"task": "nosuch"}, "'task'"),
        ({"dropout": 1.5}, "'dropout'"),
    ],
)
def test_invalid_values_name_the_field(values, field):
    with pytest.raises(ConfigError, match=field):
        SweepSpec.from_mapping(
            {"task": "bbc-news", "variant": "lora", "lr": 1e-4, **values}
        ).expand()


def test_unknown_key_is_rejected_with_the_allowed_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'learning_rate'.*allowed keys: .*\blr\b"):
        SweepSpec.from_mapping({"task": "bbc-news", "learning_rate": 1e-4})


def test_unknown_variant_param_is_rejected():
    with pytest.raises(ConfigError, match="foo"):
        job(variant_params={"foo": 1})


def test_bad_toml_and_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        SweepSpec.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = [1e-4,\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        SweepSpec.from_toml(bad)


@given(
    lrs=st.lists(st.floats(1e-8, 1.0), min_size=1, max_size=4),
    seeds=st.lists(st.integers(0, 50), min_size=1, max_size=3),
)
@settings(max_examples=30, deadline=None)
def test_plan_size_is_the_product_of_distinct_values(lrs, seeds):
    spec = SweepSpec.from_mapping(
        {"task": "bbc-news", "variant": ["lora", "rslora"], "lr": lrs, "seed": seeds}
    )
    jobs = spec.expand()
    assert len(jobs) == 2 * len(set(lrs)) * len(set(seeds))
    # The text a float prints as, read back, hashes the same: re-planning from a file is idempotent.
    for cfg in jobs[:3]:
        assert job(lr=float(repr(cfg.lr)), seed=cfg.seed, variant=cfg.variant).config_hash == (
            cfg.config_hash
        )


def test_empty_task_params_leave_the_canonical_json_as_before():
    # Jobs planned before task_params existed must keep their hash.
    assert "task_params" not in job().canonical_json()
    assert job(task_params={}).config_hash == job().config_hash


def test_select_split_on_by_default_leaves_the_hash_as_before():
    # Hashes computed by lorabench before `select_split` existed.
    assert job().config_hash == "727c9d068708647324febb3af24abdbde7b4599e225dcf2b22efe7624c9d9931"
    noop = resolve_job({"task": "noop", "variant": "dora", "lr": 1e-3, "seed": 3,
                        "task_params": {"sleep_s": 0.5}})  # fmt: skip
    assert noop.config_hash == "72d7be16c487694962967264750c194b3c25ce080093af809a20fe7b18172a8c"
    assert job().select_split is True and "select_split" not in job().canonical_json()
    off = job(select_split=False)
    assert json.loads(off.canonical_json())["select_split"] is False
    assert off.config_hash != job().config_hash and off.group_hash != job().group_hash
    assert JobConfig(**json.loads(off.canonical_json())) == off  # stored configs read back
    with pytest.raises(ConfigError, match="select_split"):
        job(select_split="sometimes")


def test_select_split_is_a_plan_flag_and_a_sweep_key(tmp_path):
    from typer.testing import CliRunner

    from lorabench.cli import app

    db = tmp_path / "plan.db"
    args = ["plan", "--db", str(db), "--task", "noop", "--variant", "lora", "--lr", "1e-3"]
    result = CliRunner().invoke(app, [*args, "--select-split", "true,false"])
    assert result.exit_code == 0 and "2 new" in result.output, result.output
    sweep = tmp_path / "off.toml"
    sweep.write_text('task = "noop"\nvariant = "lora"\nlr = 1e-3\nselect_split = false\n')
    again = CliRunner().invoke(app, ["plan", "--db", str(db), str(sweep)])
    assert again.exit_code == 0 and "0 new" in again.output, again.output  # the same job
    bad = CliRunner().invoke(app, [*args, "--select-split", "maybe"])
    assert bad.exit_code == 2 and "select_split" in bad.output


def test_unknown_task_params_are_refused_at_plan_time():
    with pytest.raises(ConfigError, match="task 'bbc-news': unknown parameter 'data'"):
        resolve_job({"task": "bbc-news", "variant": "lora", "lr": 1e-3, "task_params": {"data": 1}})


def test_pack_is_a_sweep_setting_outside_every_job(tmp_path: Path):
    path = tmp_path / "lr.toml"
    path.write_text('task = "noop"\nvariant = "lora"\nlr = [1e-4, 1e-3]\npack = 2\n')
    spec = SweepSpec.from_toml(path)
    assert spec.pack == 2 and spec.override({"seed": [1]}).pack == 2
    assert spec.override({"pack": 4}).pack == 4
    unpacked = SweepSpec.from_mapping({"task": "noop", "variant": "lora", "lr": [1e-4, 1e-3]})
    assert unpacked.pack == 1
    assert [j.config_hash for j in spec.expand()] == [j.config_hash for j in unpacked.expand()]
    with pytest.raises(ConfigError, match="pack"):
        SweepSpec.from_mapping({"task": "noop", "variant": "lora", "lr": 1e-3, "pack": 0})
