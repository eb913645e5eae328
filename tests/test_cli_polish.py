"""The command line's manners: --version, shell completion, "did you mean" for every name a user
types (variants, tasks, presets, tables, figures, config fields), and no implicit sweep name in
errors."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorabench.catalog.task import task_names
from lorabench.catalog.variant import variant_names
from lorabench.cli import app
from lorabench.suggest import close_names, unknown_name

PLAN = ["plan", "--dry-run", "--task", "bbc-news", "--variant", "lora", "--lr", "1e-4"]


def invoke(*args: str, **kwargs):
    return CliRunner().invoke(app, list(args), **kwargs)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output == f"lorabench {version('lorabench')}\n"


def test_show_and_install_completion(tmp_path, monkeypatch):
    # Typer's switch for naming the shell instead of detecting the one running the tests.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    shown = invoke("--show-completion", "bash")
    assert shown.exit_code == 0
    assert "_LORABENCH_COMPLETE=complete_bash" in shown.output
    monkeypatch.setenv("HOME", str(tmp_path))
    installed = invoke("--install-completion", "bash")
    assert installed.exit_code == 0, installed.output
    assert "bash completion installed in" in installed.output
    assert "lorabench" in (tmp_path / ".bashrc").read_text()


def test_completion_completes_commands_and_options_in_a_real_shell_protocol(tmp_path):
    """What bash's completion function asks a fresh process, and what it answers."""

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {**os.environ, "_LORABENCH_COMPLETE": "complete_bash", "COMP_WORDS": line,
               "COMP_CWORD": str(len(words) - 1)}  # fmt: skip
        result = subprocess.run([sys.executable, "-m", "lorabench"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("lorabench rep") == ["report"]
    assert "--threads" in complete("lorabench work --thr")


# --- did you mean -----------------------------------------------------------------------------


def test_close_names_ignore_case_and_a_shared_prefix():
    assert close_names("doar", variant_names()) == ["dora"]
    assert close_names("LoRA", variant_names()) == ["lora"]
    assert close_names("xyzzy", variant_names()) == []
    presets = ["paper-glue", "paper-ic", "paper-nlg"]
    assert close_names("paper-nosuch", presets) == []  # not every "paper-" name
    assert close_names("paper-glu", presets) == ["paper-glue"]
    assert unknown_name("table", "x", ["a", "b"]) == "unknown table 'x'; known: a, b"
    assert unknown_name("key", "seeds", ["seed", "lr"], listed_as="allowed keys") == (
        "unknown key 'seeds'; did you mean 'seed'?"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variant", "doar"], "error: field 'variant': unknown variant 'doar'; did you mean "
         f"'dora'? (lorabench variants lists all {len(variant_names())})"),
        (["--task", "bbc-new"], "error: field 'task': unknown task 'bbc-new'; did you mean "
         f"'bbc-news'? (lorabench tasks lists all {len(task_names())})"),
        (["--set", "seeds=1"], "error: command line: unknown key 'seeds'; did you mean 'seed'?"),
        (["--set", "warmup=0.1"], "error: command line: unknown key 'warmup'; did you mean "
         "'warmup_ratio'?"),
    ],
)  # fmt: skip
def test_plan_suggests_the_name_meant_without_listing_every_name(args, message, tmp_path):
    result = invoke(*PLAN, *args, "--db", str(tmp_path / "x.db"))
    assert result.exit_code == 2
    assert flat(result.output) == message
    assert "default" not in result.output  # the implicit sweep name is no prefix


def test_a_sweep_file_key_and_a_preset(tmp_path):
    sweep = tmp_path / "lr.toml"
    sweep.write_text('task = "bbc-news"\nvariant = "lora"\nlr = 1e-4\nepoch = 3\n')
    result = invoke("plan", str(sweep), "--dry-run", "--db", str(tmp_path / "x.db"))
    assert result.exit_code == 2
    assert flat(result.output) == f"error: {sweep}: unknown key 'epoch'; did you mean 'epochs'?"
    result = invoke("plan", "--preset", "paper-glu", "--dry-run", "--db", str(tmp_path / "x.db"))
    assert result.exit_code == 2
    assert flat(result.output) == "error: unknown preset 'paper-glu'; did you mean 'paper-glue'?"


def test_a_named_sweep_is_still_named_in_its_errors(tmp_path):
    result = invoke(*PLAN, "--name", "mine", "--variant", "doar", "--db", str(tmp_path / "x.db"))
    assert result.exit_code == 2
    assert flat(result.output).startswith("error: mine: field 'variant': unknown variant 'doar'")
    sweep = tmp_path / "lr.toml"
    sweep.write_text('task = "bbc-news"\nvariant = "doar"\nlr = 1e-4\n')
    result = invoke("plan", str(sweep), "--dry-run", "--db", str(tmp_path / "x.db"))
    assert flat(result.output).startswith("error: lr: field 'variant': unknown variant 'doar'")


def test_report_suggests_tables_and_figures(tmp_path: Path):
    table = invoke("report", "--table", "glu", "--db", str(tmp_path / "x.db"))
    assert table.exit_code == 2
    assert flat(table.output) == "error: unknown table 'glu'; did you mean 'glue'?"
    figure = invoke("report", "--figure", "lr-swep", "--db", str(tmp_path / "x.db"))
    assert figure.exit_code == 2
    assert flat(figure.output) == "error: unknown figure 'lr-swep'; did you mean 'lr-sweep'?"
    nothing_alike = invoke("report", "--figure", "qqq", "--db", str(tmp_path / "x.db"))
    assert flat(nothing_alike.output) == (
        "error: unknown figure 'qqq'; available figures: lr-sweep, overhead, sensitivity"
    )
