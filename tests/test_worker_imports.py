"""A job's trainer child is forked from a fork server that imported FORK_SERVER_PRELOAD once; any
module the child imports beyond those is imported again by every job. SQLAlchemy through
`lorabench.store` once was: 0.24 s per job, half of a noop job's whole path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lorabench.worker.supervisor import FORK_SERVER_PRELOAD

# Runs a noop job alone, as a halving rung, and a pack of two, through the child's entry points
# as the fork server's child would, in a fresh interpreter that has imported only the preload;
# prints each final message's type and every module the jobs imported.
CHILD = """
import importlib, json, sys, multiprocessing
preload, out_dir = json.loads(sys.argv[1]), sys.argv[2]
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
configs = [resolve_job({**job, "lr": lr}).model_dump(mode="json") for lr in (1e-3, 1e-2)]
rung = {"search": {"method": "halving", "eta": 3, "min_budget": 1, "unit": "steps"}, "rung": 0}
worker_end, child_end = multiprocessing.Pipe(duplex=False)
before, finals = set(sys.modules), []
for mode in ("job", "rung", "pack"):
    events = Events()
    if mode == "pack":
        dirs = [f"{out_dir}/pack-0", f"{out_dir}/pack-1"]
        options = {"checkpoint_every": 50, "compile": False}
        run_pack_child(configs, dirs, "cpu", options, worker_end, events)
    else:
        options = {"rung": rung} if mode == "rung" else {}
        run_child(configs[0], f"{out_dir}/{mode}", "cpu", options, worker_end, events)
    finals.append(type(events.messages[-1]).__name__)
print(json.dumps({"finals": finals, "imported": sorted(set(sys.modules) - before)}))
"""


def test_a_jobs_child_imports_nothing_heavy_beyond_the_fork_servers_preload(tmp_path: Path):
    preload = json.dumps(FORK_SERVER_PRELOAD)
    run = subprocess.run(
        [sys.executable, "-c", CHILD, preload, str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["finals"] == ["Done", "Done", "PackResults"]
    heavy = ("sqlalchemy", "sqlmodel", "lorabench.store", "pandas", "transformers", "datasets")
    assert [name for name in report["imported"] if name.startswith(heavy)] == []
