"""Commands that do not train never load the deep-learning stack: each runs in a fresh
process, and afterwards torch, transformers, datasets, peft, the tracking libraries and every
variant/task/trainer implementation module are still absent from sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from report_db import ReportDB

HEAVY = ("torch", "transformers", "datasets", "peft", "sklearn", "tensorboard", "wandb", "mlflow")
IMPLEMENTATION = ("lorabench.variants", "lorabench.tasks", "lorabench.train", "lorabench.worker")

# Runs one command in-process, then prints the heavy and implementation modules it loaded.
PROBE = """
import json, sys
from lorabench.cli import app
try:
    app(sys.argv[1:], prog_name="lorabench")
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy, impl = json.loads(sys.stdin.read())
loaded = sorted(name for name in sys.modules
                if name.split(".")[0] in heavy or any(name == p or name.startswith(p + ".")
                                                      for p in impl))
print("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}))
"""


def loaded_after(*args: str, cwd: Path) -> tuple[int, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps([HEAVY, IMPLEMENTATION]), capture_output=True, text=True, cwd=cwd,
        timeout=300,
    )  # fmt: skip
    line = next((x for x in result.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, result.stdout + result.stderr
    report = json.loads(line.removeprefix("PROBE "))
    return report["code"], report["loaded"]


@pytest.fixture(scope="module")
def finished_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("imports") / "done.db"
    db = ReportDB(path)
    for variant in ("lora", "dora"):
        for lr in (1e-4, 1e-3):
            db.add({"task": "bbc-news", "variant": variant, "lr": lr},
                   test={"accuracy": [0.5, 0.6]}, select_={"accuracy": [0.4, 0.7]})  # fmt: skip
    db.close()
    return path


COMMANDS = {
    "help": ["--help"],
    "version": ["--version"],
    "report tex": ["report", "--table", "lr", "--format", "tex", "--db", "{db}", "--out", "{out}"],
    "plan help": ["plan", "--help"],
    "work help": ["work", "--help"],
    "export help": ["export", "--help"],
    "quickstart help": ["quickstart", "--help"],
    "status": ["status", "--db", "{db}"],
    "plan dry-run": ["plan", "--task", "bbc-news", "--variant", "lora,dora", "--lr", "1e-4",
                     "--dry-run", "--db", "{db}"],
    "plan preset dry-run": ["plan", "--preset", "paper-glue", "--dry-run", "--db", "{db}"],
    "plan": ["plan", "--task", "noop", "--variant", "vera", "--lr", "1e-3", "--db", "{db}"],
    "report lr": ["report", "--table", "lr", "--db", "{db}", "--out", "{out}"],
    "report figure": ["report", "--figure", "lr-sweep", "--db", "{db}", "--out", "{out}"],
    "variants": ["variants"],
    "tasks": ["tasks"],
    "cancel": ["cancel", "--jobs", "1", "--db", "{db}"],
    "retry": ["retry", "--jobs", "1", "--db", "{db}"],
    "slurm": ["slurm", "--workers-per-node", "2", "--db", "postgresql://u@h/d"],
    "db version": ["db", "version", "--db", "{db}"],
    "jobs": ["jobs", "--db", "{db}"],
    "jobs show": ["jobs", "show", "1", "--db", "{db}"],
    "results": ["results", "--db", "{db}", "--format", "parquet", "--out", "{out}.parquet"],
}  # fmt: skip


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_loads_no_torch_and_no_implementation(name, finished_db, tmp_path):
    db = tmp_path / "copy.db"
    db.write_bytes(finished_db.read_bytes())
    args = [a.format(db=db, out=tmp_path / "reports") for a in COMMANDS[name]]
    code, loaded = loaded_after(*args, cwd=tmp_path)
    assert code == 0, f"lorabench {' '.join(args)} exited {code}"
    assert loaded == []


def test_the_probe_sees_an_import_of_the_stack(finished_db, tmp_path):
    # `work` on a queue with nothing left builds a worker: the probe must notice its imports.
    db = tmp_path / "copy.db"
    db.write_bytes(finished_db.read_bytes())
    code, loaded = loaded_after("work", "--db", str(db), "--exit-when-empty", cwd=tmp_path)
    assert code == 0
    assert "lorabench.worker" in loaded
