"""The Python API (`lorabench.plan`, `run_worker`, `load_results`, `write_report`): the README's
example is the embedded quickstart and runs as written (on the noop task, for speed), the
functions are the ones the commands call, and `import lorabench` stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_import_floors import cli_implementation_imports

import lorabench
from lorabench.cli.quickstart import QUICKSTART_SWEEP

README = Path(__file__).resolve().parent.parent / "README.md"
# The README's sweep with a 4x4 linear model instead of MiniLM on BBC News: same code path.
NOOP_SWEEP = {"name": "quickstart", "task": ["noop"], "variant": ["lora", "rslora"],
              "lr": [1e-3, 1e-2], "seed": [0], "epochs": [2]}  # fmt: skip


def readme_example() -> str:
    """The python block of the README's "Python API" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def sweep_assignment(source: str) -> ast.Assign:
    tree = ast.parse(source)
    found = [node for node in tree.body if isinstance(node, ast.Assign)
             and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["sweep"]]  # fmt: skip
    assert len(found) == 1, "the example assigns `sweep` once"
    return found[0]


def test_the_readme_example_plans_the_embedded_quickstart():
    source = readme_example()
    assert ast.literal_eval(sweep_assignment(source).value) == QUICKSTART_SWEEP
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "lorabench"
    }
    assert calls == {"plan", "run_worker", "load_results", "write_report"}


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path: Path, monkeypatch):
    """The README's code, its sweep replaced by the noop one and nothing else changed."""
    source = readme_example()
    assignment = sweep_assignment(source)
    lines = source.splitlines(keepends=True)
    before = "".join(lines[: assignment.lineno - 1])
    after = "".join(lines[assignment.end_lineno :])
    code = f"{before}sweep = {NOOP_SWEEP!r}\n{after}"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    results = namespace["results"]
    assert sorted(set(results["job_id"])) == [1, 2, 3, 4]
    assert set(results["state"]) == {"done"}
    assert set(results["split"]) == {"train", "select", "test", "summary"}
    # Two epochs of one step each (8 examples, batch 8): loss and lr per step.
    train = results[results["split"] == "train"]
    assert sorted(set(train["metric"])) == ["loss", "lr"]
    assert train.groupby("job_id").size().tolist() == [4, 4, 4, 4]
    best = results[results["best"] & (results["split"] == "test")]
    assert len(best) == 4 and set(best["metric"]) == {"score"}
    assert (tmp_path / "reports" / "lr-table-noop.md").is_file()
    assert (tmp_path / "reports" / "lr-sweep.png").is_file()
    # Planned again: nothing new; the worker finds nothing left.
    again = lorabench.plan(NOOP_SWEEP, db="quickstart.db")
    assert (again.sweep, again.jobs, again.new, again.existing) == ("quickstart", 4, 0, 4)
    run = lorabench.run_worker(db="quickstart.db", sweep="quickstart")
    assert (run.device, run.handled, run.failed) == ("cpu", 0, 0)


@pytest.mark.slow
def test_run_worker_counts_failed_jobs(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    planned = lorabench.plan({"task": "noop", "variant": "lora", "lr": [1e-3, 1e-2]},
                             db="f.db", name="faults", max_attempts=1,
                             task_params={"fault": "error"})  # fmt: skip
    assert (planned.sweep, planned.new) == ("faults", 2)
    run = lorabench.run_worker(db="f.db", gpu="cpu")
    assert (run.handled, run.failed) == (2, 2)
    frame = lorabench.load_results("f.db")
    assert frame["state"].tolist() == ["failed", "failed"]
    assert frame["attempts"].tolist() == [1, 1]
    assert frame["split"].isna().all()


def test_plan_takes_a_file_a_mapping_or_fields(tmp_path: Path):
    sweep_file = tmp_path / "lr.toml"
    sweep_file.write_text('task = "noop"\nvariant = ["lora", "dora"]\nlr = [1e-3]\n')
    db = str(tmp_path / "p.db")
    assert lorabench.plan(sweep_file, db=db) == lorabench.Planned("lr", jobs=2, new=2)
    # Keyword fields override the file's keys; the sweep keeps the file's name.
    assert lorabench.plan(str(sweep_file), db=db, lr=[1e-3, 1e-2]).new == 2
    assert lorabench.plan({"task": "noop", "variant": "lora", "lr": 1e-3}, db=db,
                          name="lr").existing == 1  # fmt: skip
    dry = lorabench.plan(task="noop", variant=["lora"], lr=[1e-4, 1e-3], seed=[0, 1],
                         name="dry", dry_run=True, db=db)  # fmt: skip
    assert (dry.sweep, dry.jobs, dry.new, dry.dry_run) == ("dry", 4, 0, True)
    assert dry.parts == (("dry", 4, dry.gpu_hours),)


def test_plan_raises_the_commands_errors(tmp_path: Path):
    db = str(tmp_path / "e.db")
    with pytest.raises(ValueError, match="unknown variant 'doar'; did you mean 'dora'"):
        lorabench.plan({"task": "noop", "variant": "doar", "lr": 1e-3}, db=db)
    with pytest.raises(ValueError, match="not both"):
        lorabench.plan({"task": "noop"}, preset="paper-glue", db=db)
    assert not Path(db).exists()  # nothing written


def test_the_commands_call_the_api():
    from lorabench.api import plan
    from lorabench.cli import plan as plan_module

    assert plan_module.plan is plan  # `lorabench plan` plans through lorabench.plan
    source = Path(sys.modules["lorabench.cli.quickstart"].__file__).read_text()
    assert "api.plan(" in source and "api.run_worker(" in source and "api.write_report(" in source


def test_no_api_name_is_shadowed_by_a_subpackage():
    import lorabench.api as api
    import lorabench.report.load  # noqa: F401  (sets lorabench.report to the package)

    for name in api.__all__:
        assert getattr(lorabench, name) is getattr(api, name)


@pytest.mark.parametrize(
    ("outcome", "code", "said"),
    [
        (lorabench.WorkerRun("cpu", handled=3, failed=0), 0, "worker finished: 3 job(s) handled"),
        (lorabench.WorkerRun("cpu", handled=3, failed=2), 1, "2 job(s) ended failed"),
        (KeyboardInterrupt(), 130, ""),
    ],
)
def test_work_runs_the_api_worker_and_maps_its_outcome_to_an_exit_code(
    tmp_path: Path, monkeypatch, outcome, code: int, said: str
):
    from typer.testing import CliRunner

    from lorabench.cli import app

    calls = []

    def fake(**options):
        calls.append(options)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr("lorabench.api.run_worker", fake)
    args = ["work", "--db", str(tmp_path / "w.db"), "--gpu", "cpu", "--sweep", "s",
            "--exit-when-empty", "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    assert said in " ".join(result.output.split())
    (options,) = calls
    assert (options["db"], options["gpu"], options["sweep"]) == (str(tmp_path / "w.db"), "cpu", "s")
    assert options["exit_when_empty"] is True and options["runs_dir"] == tmp_path / "runs"


def test_the_api_imports_implementations_only_inside_run_worker():
    path = Path(lorabench.__file__).parent / "api.py"
    assert cli_implementation_imports(path.read_text(), "lorabench.api") == []


PROBE = """
import json, sys
import lorabench
before = sorted(m for m in ("pandas", "torch", "sqlalchemy", "lorabench.api") if m in sys.modules)
lorabench.load_results  # the attribute imports the API module, not pandas or torch
after = sorted(m for m in ("pandas", "torch", "lorabench.api") if m in sys.modules)
print(json.dumps([before, after, lorabench.__version__]))
"""


def test_import_lorabench_stays_light():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120, check=True)  # fmt: skip
    before, after, version = json.loads(result.stdout.strip().splitlines()[-1])
    assert before == [] and after == ["lorabench.api"] and version == "0.1.0"
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        lorabench.nothing  # noqa: B018
