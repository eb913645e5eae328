"""The README's "From the demo to the paper": what `lorabench fetch` downloads, its tables and
commands, checked against the task catalog and the commands themselves, all offline."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from lorabench.catalog.tasks.glue import GLUE, ROBERTA_BASE, SPECS
from lorabench.catalog.tasks.vision import CLIP_VIT_B16, IC_DATASETS
from lorabench.cli import app
from lorabench.cli.presets import load_preset, plan_preset, preset_names
from lorabench.fetch import LEGACY_WEIGHTS, NEVER_LOADED, Download, FetchError, needed

README = Path(__file__).resolve().parents[1] / "README.md"
PG_URL = "postgresql+psycopg://lorabench@dbhost/lorabench"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## From the demo to the paper")
    return text[start : text.index("\n## ", start + 1)]


def table(title_row: str) -> list[list[str]]:
    """The rows of the section's Markdown table whose header starts with `title_row`."""
    lines = section().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title_row))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def preset_jobs(name: str) -> list:
    return [job for _, spec in plan_preset(load_preset(name), {}).parts for job in spec.expand()]


# --- what fetch lists ------------------------------------------------------------------------


def test_paper_glue_needs_roberta_and_each_glue_config():
    expected = [
        Download("model", ROBERTA_BASE, None, tuple(sorted(f"glue-{s.config}" for s in SPECS)))
    ]
    expected += [Download("dataset", GLUE, config, (f"glue-{config}",))
                 for config in sorted(s.config for s in SPECS)]  # fmt: skip
    assert needed(preset_jobs("paper-glue")) == expected
    assert GLUE == "nyu-mll/glue" and ROBERTA_BASE == "FacebookAI/roberta-base"


def test_paper_nlg_needs_llama_metamath_gsm8k_and_codefeedback():
    assert needed(preset_jobs("paper-nlg")) == [
        Download("model", "meta-llama/Llama-3.1-8B", None, ("gsm8k", "humaneval")),
        Download("dataset", "m-a-p/CodeFeedback-Filtered-Instruction", None, ("humaneval",)),
        Download("dataset", "meta-math/MetaMathQA", None, ("gsm8k",)),
        Download("dataset", "openai/gsm8k", "main", ("gsm8k",)),
    ]


def test_paper_ic_needs_clip_and_the_seven_datasets():
    listed = needed(preset_jobs("paper-ic"))
    assert listed[0] == Download("model", CLIP_VIT_B16, None,
                                 tuple(sorted(d.task for d in IC_DATASETS)))  # fmt: skip
    assert {(d.name, d.config) for d in listed[1:]} == {(d.source, d.config) for d in IC_DATASETS}
    assert ("ufldl-stanford/svhn", "cropped_digits") in {(d.name, d.config) for d in listed}
    assert len(listed) == 8


def test_local_data_and_embedded_models_are_not_fetched(tmp_path):
    model = tmp_path / "llama"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = tmp_path / "metamath.jsonl"
    data.write_text('{"query": "q", "response": "The answer is: 1"}\n')
    sweep = tmp_path / "mine.toml"
    sweep.write_text(f'task = "gsm8k"\nvariant = "lora"\nlr = 1e-4\nmodel = "{model}"\n'
                     f'[task_params]\ndata = "{data}"\n')  # fmt: skip
    result = CliRunner().invoke(app, ["fetch", str(sweep), "--task", "bbc-news,gsm8k-mini",
                                      "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()[1:]]
    assert lines == [["dataset", "openai/gsm8k", "(main)", "gsm8k"]]
    nothing = CliRunner().invoke(app, ["fetch", "--task", "bbc-news,digits", "--dry-run"])
    assert nothing.stdout.strip() == (
        "nothing to download: every model and dataset is local or embedded"
    )


def test_fetch_without_a_source_or_with_an_unknown_preset_is_refused():
    none = CliRunner().invoke(app, ["fetch"])
    assert none.exit_code == 2 and "say what to fetch" in none.stderr
    typo = CliRunner().invoke(app, ["fetch", "--preset", "paper-glu", "--dry-run"])
    assert typo.exit_code == 2 and "preset 'paper-glu'" in typo.stderr


# Lists a preset in a fresh process, then prints which heavy modules it loaded.
PROBE = """
import json, sys
from lorabench.cli import app
try:
    app(sys.argv[1:], prog_name="lorabench")
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = ("torch", "transformers", "datasets", "huggingface_hub", "peft", "sklearn")
loaded = sorted({n.split(".")[0] for n in sys.modules if n.split(".")[0] in heavy})
print("PROBE " + json.dumps({"code": code, "loaded": loaded}))
"""


def test_dry_run_lists_offline_without_the_deep_learning_stack(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "fetch", "--preset", "paper-nlg", "--dry-run"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    probe = json.loads(lines[-1].removeprefix("PROBE "))
    assert probe == {"code": 0, "loaded": []}, result.stderr
    assert lines[0] == f"from the Hugging Face Hub into {tmp_path / 'hf'} (HF_HOME):"
    assert [line.split() for line in lines[1:-1]] == [
        ["model", "meta-llama/Llama-3.1-8B", "gsm8k,", "humaneval"],
        ["dataset", "m-a-p/CodeFeedback-Filtered-Instruction", "humaneval"],
        ["dataset", "meta-math/MetaMathQA", "gsm8k"],
        ["dataset", "openai/gsm8k", "(main)", "gsm8k"],
    ]


# --- the README's tables against the catalog and the commands ---------------------------------


def readme_downloads(models: str, datasets: str) -> set[tuple[str, str, str | None]]:
    found = {("model", name, None) for name in re.findall(r"`([^`]+)`", models)}
    for name, configs in re.findall(r"`([^`]+)`(?: \(((?:`[^`]+`(?:, )?)+)\))?", datasets):
        for config in re.findall(r"`([^`]+)`", configs) or [None]:
            found.add(("dataset", name, config))
    return found


def test_the_readme_fetch_table_is_what_the_catalog_reads():
    rows = table("| preset | model | datasets (config) |")
    covered = []
    for presets, models, datasets in rows:
        for preset in re.findall(r"`([^`]+)`", presets):
            listed = {(d.kind, d.name, d.config) for d in needed(preset_jobs(preset))}
            assert readme_downloads(models, datasets) == listed, preset
            covered.append(preset)
    assert sorted(covered) == preset_names()  # every preset, once


def dry_runs(names: list[str]) -> dict[str, str]:
    """`lorabench plan --preset NAME --dry-run` for each name, one process, wide output."""
    script = """
import sys
from lorabench.cli import app
for name in sys.argv[1:]:
    print(f"=== {name}", flush=True)
    try:
        app(["plan", "--preset", name, "--dry-run"], prog_name="lorabench")
    except SystemExit as exit:
        assert not exit.code, exit.code
"""
    env = {**os.environ, "COLUMNS": "250"}
    result = subprocess.run([sys.executable, "-c", script, *names], capture_output=True,
                            text=True, env=env, timeout=300, check=True)  # fmt: skip
    parts = re.split(r"^=== (\S+)\n", result.stdout, flags=re.M)[1:]
    return dict(zip(parts[::2], parts[1::2], strict=True))


FAMILY_ROW = re.compile(
    r"^\s+\S.*?\s+([\d,]+\.\d)\s+([\d,]+\.\d)\s+([\d,]+\.\d)\s+([\d,]+\.\d)\s+(?:[\d,]+\.\d|n/a)"
    r"\s+(H100 ckpt|H200 ckpt|H100|H200|none)\s*$",
    flags=re.M,
)


def test_the_readme_gpu_table_quotes_plan_dry_run():
    rows = {re.sub(r"`", "", r[0]): r for r in table("| preset | jobs per seed | GPU-hours |")}
    assert sorted(rows) == preset_names()
    outputs = dry_runs(sorted(rows))
    for name, (_, jobs, hours, peaks, fits) in rows.items():
        out = outputs[name]
        assert f"sweep {name}: {jobs.replace(',', '')} jobs (dry run)" in out
        assert f"estimated GPU-hours: {hours}\n" in out
        families = FAMILY_ROW.findall(out)
        assert families, out
        values = [float(f[3].replace(",", "")) for f in families]
        low, high = re.findall(r"([\d,]+\.\d)", peaks)
        assert (min(values), max(values)) == (float(low.replace(",", "")),
                                              float(high.replace(",", ""))), name  # fmt: skip
        counted = Counter(f[4] for f in families)
        stated = {k: int(v) for k, v in re.findall(r"(H100 ckpt|H200 ckpt|H100|H200|none): (\d+)",
                                                   fits)}  # fmt: skip
        assert counted == stated, name


# --- the README's commands parse, and the Slurm one writes a valid script ----------------------


def readme_commands() -> list[list[str]]:
    """Every `lorabench ...` line of the section's bash blocks, continuations joined, with
    $LORABENCH_DB set to a PostgreSQL URL."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.replace("$LORABENCH_DB", PG_URL), comments=True)
            if words and words[0] == "lorabench":
                commands.append(words[1:])
    return commands


def test_every_readme_command_parses():
    commands = readme_commands()
    assert {c[0] for c in commands} == {"fetch", "plan", "slurm", "status", "report"}
    root = typer.main.get_command(app)
    parent = click.Context(root, info_name="lorabench")
    for name, *rest in commands:
        command = root.get_command(parent, name)
        assert command is not None, name
        command.make_context(name, rest, parent=parent)  # raises on an unknown or bad option


def test_readme_dry_runs_run():
    dry = [c for c in readme_commands() if "--dry-run" in c]
    assert dry == [["fetch", "--preset", "paper-glue", "--dry-run"]]
    result = CliRunner().invoke(app, dry[0])
    assert result.exit_code == 0, result.output
    assert "FacebookAI/roberta-base" in result.stdout and "nyu-mll/glue (wnli)" in result.stdout
    plan = CliRunner().invoke(app, ["plan", "--preset", "paper-glue", "--dry-run"])
    assert plan.exit_code == 0 and "sweep paper-glue: 1260 jobs (dry run)" in plan.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_readme_slurm_command_submits_a_script_bash_accepts(tmp_path, monkeypatch):
    [args] = [c for c in readme_commands() if c[0] == "slurm"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"  # a stand-in that keeps what it was given
    sbatch.write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sbatch\n'
                      'echo "Submitted batch job 4242"\n')  # fmt: skip
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LORABENCH_DB", PG_URL)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "4242"
    script = (tmp_path / "submitted.sbatch").read_text()
    assert script == (tmp_path / "paper-glue.sbatch").read_text()
    assert subprocess.run(["bash", "-n", str(tmp_path / "paper-glue.sbatch")]).returncode == 0
    for line in ("#SBATCH --array=0-7", "#SBATCH --gres=gpu:4", "#SBATCH --account=myproject",
                 "#SBATCH --qos=normal", "#SBATCH --mem=64G", "#SBATCH --cpus-per-task=32",
                 "#SBATCH --partition=gpu", "#SBATCH --time=24:00:00",
                 "export HF_HOME=/shared/hf HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1"):  # fmt: skip
        assert line in script.splitlines() or line in script, line
    workers = [line for line in script.splitlines() if line.startswith("lorabench work")]
    assert len(workers) == 4
    assert all(f"--db {PG_URL}" in w and "--sweep paper-glue" in w for w in workers)


# --- downloading, with the Hub replaced by stand-ins ------------------------------------------


def test_models_skip_what_transformers_does_not_load(monkeypatch):
    import huggingface_hub

    from lorabench.fetch import fetch_model

    calls = []
    repos = {"with/safetensors": ["config.json", "model.safetensors", "pytorch_model.bin",
                                  "tf_model.h5", "original/consolidated.00.pth"],
             "only/bin": ["config.json", "pytorch_model.bin"]}  # fmt: skip

    class Api:
        def list_repo_files(self, name):
            return repos[name]

    def snapshot(name, ignore_patterns):
        calls.append((name, tuple(ignore_patterns)))
        return f"/cache/{name}"

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    assert fetch_model("with/safetensors") == Path("/cache/with/safetensors")
    assert fetch_model("only/bin") == Path("/cache/only/bin")
    assert calls == [("with/safetensors", NEVER_LOADED + LEGACY_WEIGHTS),
                     ("only/bin", NEVER_LOADED)]  # fmt: skip
    assert "original/*" in NEVER_LOADED and "*.bin" not in NEVER_LOADED


def test_a_gated_model_says_how_to_get_access(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    from lorabench.fetch import fetch_model

    class Api:
        def list_repo_files(self, name):
            error = GatedRepoError.__new__(GatedRepoError)  # no HTTP response needed here
            error.args = ("403 Client Error: Cannot access gated repo",)
            raise error

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    with pytest.raises(FetchError) as raised:
        fetch_model("meta-llama/Llama-3.1-8B")
    message = str(raised.value)
    assert "https://huggingface.co/meta-llama/Llama-3.1-8B" in message
    assert "hf auth login" in message and "HF_TOKEN" in message


def test_datasets_are_prepared_by_the_tasks_own_call(monkeypatch):
    import datasets

    from lorabench.fetch import fetch_dataset

    calls = []

    def load_dataset(name, config):
        calls.append((name, config))
        if name == "missing/data":
            raise datasets.exceptions.DatasetNotFoundError("Dataset 'missing/data' doesn't exist")
        return {"train": [0] * 3, "validation": [0]}

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    assert fetch_dataset("nyu-mll/glue", "rte") == {"train": 3, "validation": 1}
    with pytest.raises(FetchError, match=r"missing/data: Dataset 'missing/data' doesn't exist"):
        fetch_dataset("missing/data", None)
    assert calls == [("nyu-mll/glue", "rte"), ("missing/data", None)]


def test_fetch_downloads_each_once_and_reports_failures(monkeypatch):
    import lorabench.fetch as fetch

    fetched = []

    def model(name):
        fetched.append(name)
        raise FetchError(f"{name} is gated: accept its licence")

    def dataset(name, config):
        fetched.append((name, config))
        return {"train": 7}

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)  # conftest sets them for the tests
    monkeypatch.setattr(fetch, "fetch_model", model)
    monkeypatch.setattr(fetch, "fetch_dataset", dataset)
    result = CliRunner().invoke(app, ["fetch", "--task", "gsm8k,humaneval"])
    assert result.exit_code == 1, result.output
    assert fetched == ["meta-llama/Llama-3.1-8B", ("m-a-p/CodeFeedback-Filtered-Instruction", None),
                       ("meta-math/MetaMathQA", None), ("openai/gsm8k", "main")]  # fmt: skip
    assert "failed: meta-llama/Llama-3.1-8B is gated" in result.stderr
    assert "1 of 4 failed: meta-llama/Llama-3.1-8B" in result.stderr
    assert result.stdout.count("  train 7") == 3


def test_fetch_refuses_to_download_while_offline(monkeypatch):
    import lorabench.fetch as fetch

    monkeypatch.setattr(fetch, "fetch_model", lambda name: pytest.fail("downloaded offline"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["fetch", "--task", "glue-rte"])
    assert result.exit_code == 2
    assert "error: HF_HUB_OFFLINE=1 is set, so nothing can be downloaded" in result.stderr
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "yes")
    assert (
        "HF_DATASETS_OFFLINE=yes" in CliRunner().invoke(app, ["fetch", "--task", "glue-rte"]).stderr
    )
