"""A job's trainer child is forked from a fork server that imported FORK_SERVER_PRELOAD once; any
module the child imports beyond those is imported again by every job. SQLAlchemy through
`lorabench.store` once was: 0.24 s per job, half of a noop job's whole path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lorabench.worker.supervisor import FORK_SERVER_PRELOAD

# Runs one noop job through `run_child`, as the fork server's child would, in a fresh interpreter
# that has imported only the preload; prints the final message's type and what the job imported.
CHILD = """
import importlib, json, sys, multiprocessing
preload, out_dir, mode = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
for name in preload:
    importlib.import_module(name)
from lorabench.config import resolve_job
from lorabench.worker.child import run_child, run_pack_child

class Events:
    def __init__(self): self.messages = []
    def put(self, message): self.messages.append(message)
    def close(self): pass
    def join_thread(self): pass

job = {"task": "noop", "variant": "lora", "seed": 0}
configs = [resolve_job({**job, "lr": lr}).model_dump(mode="json")
           for lr in (1e-3, 1e-2)]
worker_end, child_end = multiprocessing.Pipe(duplex=False)
events = Events()
before = set(sys.modules)
if mode == "pack":
    dirs, options = [out_dir + "-0", out_dir + "-1"], {"checkpoint_every": 50, "compile": False}
    run_pack_child(configs, dirs, "cpu", options, worker_end, events)
else:
    rung = {"search": {"method": "halving", "eta": 3, "min_budget": 1, "unit": "steps"}, "rung": 0}
    options = {"rung": rung} if mode == "rung" else {}
    run_child(configs[0], out_dir, "cpu", options, worker_end, events)
print(json.dumps({"final": type(events.messages[-1]).__name__,
                  "imported": sorted(set(sys.modules) - before)}))
"""


@pytest.mark.parametrize(
    ("mode", "final"), [("job", "Done"), ("rung", "Done"), ("pack", "PackResults")]
)
def test_a_jobs_child_imports_nothing_heavy_beyond_the_fork_servers_preload(
    tmp_path: Path, mode: str, final: str
):
    preload = json.dumps(FORK_SERVER_PRELOAD)
    run = subprocess.run(
        [sys.executable, "-c", CHILD, preload, str(tmp_path / "job"), mode],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["final"] == final
    heavy = ("sqlalchemy", "sqlmodel", "lorabench.store", "pandas", "transformers", "datasets")
    assert [name for name in report["imported"] if name.startswith(heavy)] == []
