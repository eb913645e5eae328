"""An sbatch script for a sweep on a Slurm cluster: one array task per node, one worker per GPU.

Pure text generation (`sbatch_script`), so every line can be checked without a cluster.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from lorabench.store import normalise_url
from lorabench.store.dialects import for_url

TIME_FORMAT = re.compile(r"^(?:(\d+)-)?(\d+):([0-5]\d):([0-5]\d)$")
# Seconds of warning before the time limit: enough for every worker to finish its step,
# write a checkpoint and requeue its job.
WARNING_SECONDS = 120


@dataclass(frozen=True)
class SlurmOptions:
    db: str
    workers_per_node: int
    nodes: int = 1
    gpus_per_node: int | None = None  # default: workers_per_node
    sweep: str | None = None
    partition: str | None = None
    time: str | None = None  # [D-]HH:MM:SS
    runs_dir: Path = Path("runs")
    python_env: str | None = None  # e.g. "source ~/venvs/lorabench/bin/activate"
    job_name: str = "lorabench"

    @property
    def gpus(self) -> int:
        return self.workers_per_node if self.gpus_per_node is None else self.gpus_per_node


def validate(options: SlurmOptions) -> None:
    """Raise ValueError naming the first option that cannot work on a cluster."""
    backend = for_url(normalise_url(options.db))  # None: unsupported, refused when opened
    if backend is not None and not backend.shared_across_machines:
        raise ValueError(
            f"--db {options.db or '(default ./lorabench.db)'} is {backend.label}, which workers "
            "on several nodes cannot share; use PostgreSQL: "
            "--db postgresql+psycopg://user:password@host/dbname"
        )
    for flag, value in (
        ("--workers-per-node", options.workers_per_node),
        ("--nodes", options.nodes),
        ("--gpus-per-node", options.gpus),
    ):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if options.time is not None and not TIME_FORMAT.match(options.time):
        raise ValueError(f"--time must look like HH:MM:SS (or D-HH:MM:SS), got {options.time!r}")
    if options.sweep is not None and not options.sweep.strip():
        raise ValueError("--sweep must not be empty")


def work_command(options: SlurmOptions, gpu: int) -> str:
    parts = ["lorabench", "work", "--gpu", str(gpu), "--exit-when-empty"]
    parts += ["--db", normalise_url(options.db)]
    if options.sweep is not None:
        parts += ["--sweep", options.sweep]
    parts += ["--runs-dir", str(options.runs_dir)]
    return shlex.join(parts)


def sbatch_script(options: SlurmOptions) -> str:
    validate(options)
    header = [
        "#!/bin/bash",
        "# Written by `lorabench slurm`. Submit with: sbatch THIS_FILE",
        "# One array task per node; on each, one `lorabench work` per GPU until the queue empties.",
        f"#SBATCH --job-name={options.job_name}",
        f"#SBATCH --array=0-{options.nodes - 1}",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        f"#SBATCH --gres=gpu:{options.gpus}",
    ]
    if options.partition:
        header.append(f"#SBATCH --partition={options.partition}")
    if options.time:
        header.append(f"#SBATCH --time={options.time}")
    header += [
        # B: signals the batch shell only; its trap forwards the signal to each worker once.
        f"#SBATCH --signal=B:TERM@{WARNING_SECONDS}",
        "#SBATCH --output=lorabench-%A_%a.out",
        "",
    ]
    if options.python_env:
        header += [options.python_env, ""]
    body = [
        "pids=()",
        "forward_term() {",
        "    # Each worker checkpoints its job and puts it back in the queue (attempt not spent).",
        "    # Forward once: a second SIGTERM tells a worker to stop without the final checkpoint.",
        "    trap ':' TERM INT",
        '    echo "lorabench: SIGTERM, stopping ${#pids[@]} worker(s); jobs are requeued" >&2',
        '    kill -TERM "${pids[@]}" 2>/dev/null',
        "}",
        "trap forward_term TERM INT",
        "",
        "# GPU indices count the GPUs Slurm gave this task (CUDA_VISIBLE_DEVICES), from 0.",
    ]
    for worker in range(options.workers_per_node):
        body += [f"{work_command(options, worker % options.gpus)} &", "pids+=($!)"]
    body += [
        "",
        "# `wait` returns as soon as a trapped signal arrives: keep waiting until all have exited.",
        'while [ -n "$(jobs -pr)" ]; do wait; done',
        "",
    ]
    return "\n".join(header + body)
