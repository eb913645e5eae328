"""An sbatch script for a sweep on a Slurm cluster: one array task per node, one worker per GPU.

Pure text generation (`sbatch_script`), so every line can be checked without a cluster;
`submit` hands it to `sbatch`.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lorabench.store import normalise_url
from lorabench.store.dialects import for_url

TIME_FORMAT = re.compile(r"^(?:(\d+)-)?(\d+):([0-5]\d):([0-5]\d)$")
# sbatch --mem: a size, in megabytes when no unit is given.
MEMORY_FORMAT = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
SUBMITTED = re.compile(r"Submitted batch job (\d+)")
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
    account: str | None = None
    qos: str | None = None
    mem: str | None = None  # per node, e.g. "64G"
    cpus_per_task: int | None = None  # the node's CPUs for its workers; None: the site default
    constraint: str | None = None  # node features, e.g. "a100|h100"
    sbatch_lines: tuple[str, ...] = ()  # more options, each "--opt=value" (or "#SBATCH ...")

    @property
    def gpus(self) -> int:
        return self.workers_per_node if self.gpus_per_node is None else self.gpus_per_node

    @property
    def threads(self) -> int | None:
        """CPU threads per worker: the task's CPUs divided among its workers, at least one;
        None when --cpus-per-task is not given (the script divides what it got, `nproc`)."""
        if self.cpus_per_task is None:
            return None
        return max(1, self.cpus_per_task // self.workers_per_node)

    def extra_lines(self) -> list[str]:
        """The `--sbatch-line` options as #SBATCH lines."""
        lines = []
        for line in self.sbatch_lines:
            option = line.strip().removeprefix("#SBATCH").strip()
            lines.append(f"#SBATCH {option}")
        return lines


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
        ("--cpus-per-task", options.cpus_per_task),
    ):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    for flag, text in (("--partition", options.partition), ("--account", options.account),
                       ("--qos", options.qos), ("--constraint", options.constraint)):  # fmt: skip
        if text is not None and (not text.strip() or any(c.isspace() for c in text)):
            raise ValueError(f"{flag} must be one word (no spaces or line breaks), got {text!r}")
    if options.mem is not None and not MEMORY_FORMAT.match(options.mem):
        raise ValueError(f"--mem must be a size like 64G, 500M or 1T, got {options.mem!r}")
    for line in options.sbatch_lines:
        option = line.strip().removeprefix("#SBATCH").strip()
        if "\n" in line or "\r" in line or not option.startswith("-"):
            raise ValueError(
                f"--sbatch-line must be one sbatch option such as --mail-type=END "
                f"(or '#SBATCH --mail-type=END'), got {line!r}"
            )
    if options.time is not None and not TIME_FORMAT.match(options.time):
        raise ValueError(f"--time must look like HH:MM:SS (or D-HH:MM:SS), got {options.time!r}")
    if options.sweep is not None and not options.sweep.strip():
        raise ValueError("--sweep must not be empty")


def work_command(options: SlurmOptions, gpu: int) -> str:
    parts = ["lorabench", "work", "--gpu", str(gpu)]
    rest = ["--exit-when-empty", "--db", normalise_url(options.db)]
    if options.sweep is not None:
        rest += ["--sweep", options.sweep]
    rest += ["--runs-dir", str(options.runs_dir)]
    # "$threads" is the script's own variable (see sbatch_script), so it is not quoted away.
    return f'{shlex.join(parts)} --threads "$threads" {shlex.join(rest)}'


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
    for option, value in (("partition", options.partition), ("time", options.time),
                          ("account", options.account), ("qos", options.qos),
                          ("mem", options.mem), ("cpus-per-task", options.cpus_per_task),
                          ("constraint", options.constraint)):  # fmt: skip
        if value is not None:
            header.append(f"#SBATCH --{option}={value}")
    header += options.extra_lines()
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
        *_threads_lines(options),
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


def _threads_lines(options: SlurmOptions) -> list[str]:
    """Shell lines that set $threads, each worker's share of the task's CPUs, so that workers
    on one node neither crowd one CPU nor each start a thread per core of the node."""
    workers = options.workers_per_node
    if options.threads is not None:
        return [f"threads={options.threads}  # --cpus-per-task={options.cpus_per_task} / "
                f"{workers} worker(s)"]  # fmt: skip
    return [
        f"# CPU threads per worker: the CPUs this task may use (nproc) / {workers} worker(s).",
        f"threads=$(( $(nproc) / {workers} ))",
        '[ "$threads" -ge 1 ] || threads=1',
    ]


def submit(script: str, path: Path | None = None) -> str:
    """Submit with `sbatch` (the file at `path`, else `script` on its standard input); returns
    the Slurm job id it printed. A ValueError says why not (no sbatch here, sbatch refused)."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ValueError(
            "--submit: sbatch is not on PATH (is this a Slurm login node?); write the script "
            "with --output and submit it where Slurm is: sbatch FILE"
        )
    command = [sbatch] if path is None else [sbatch, str(path)]
    piped = {"input": script} if path is None else {"stdin": subprocess.DEVNULL}
    result = subprocess.run(command, capture_output=True, text=True, **piped)
    said = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise ValueError(f"sbatch refused the script (exit {result.returncode}): {said}")
    found = SUBMITTED.search(result.stdout)
    if found is None:
        raise ValueError(f"sbatch answered {said!r}, not 'Submitted batch job <id>'")
    return found.group(1)
