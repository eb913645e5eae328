"""`work --gpu 0,1,2,3` (or `--gpu all`): one supervised `lorabench work --gpu i` per GPU.

Each GPU gets a worker process of its own, exactly the one `work --gpu i` starts (its own
supervisor, fork server, heartbeats and leases), so a crash on one GPU cannot take the others
down and nothing about running jobs is new. The fleet only starts them, divides the CPU threads
between them, forwards signals, relays their output line by line ("[gpu 1] ...") and exits
with the worst exit code among them.

- Workers run in their own session: a terminal's Ctrl-C reaches the fleet alone, which
  forwards it to each worker once; a second Ctrl-C is forwarded again (stop at once), as for
  one worker. SIGTERM (Slurm, systemd) likewise.
- A worker whose fleet is killed outright gets SIGTERM from the kernel (PR_SET_PDEATHSIG):
  it checkpoints and requeues its job instead of working on unsupervised. The fleet is one
  thread (its output relay is a selector loop): the kernel sends that signal each time a
  worker is handed to another thread of the dying process, and a second SIGTERM would tell the
  worker to stop without its final checkpoint.
- Threads: the CPUs this process may run on (its affinity, which Slurm and taskset set),
  divided evenly, at least one each; `--threads N` gives each worker N instead.

Standard library only: the fleet never imports torch (`--gpu all` asks torch for the GPU count
only when CUDA_VISIBLE_DEVICES does not say it).
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

from lorabench.worker import lifeline

Say = Callable[[str], None]


def split_gpus(raw: str | None) -> list[str]:
    """The devices `--gpu` names: ["0"] for "0", ["0", "1"] for "0,1", every visible GPU for
    "all", ["cpu", "cpu"] for "cpu,cpu" (two CPU workers); [] when it names none (the default
    device). A ValueError names an entry that is neither an index nor "cpu"."""
    if raw is None:
        return []
    if raw.strip().lower() == "all":
        count = visible_gpus()
        if count == 0:
            raise ValueError("--gpu all: no CUDA GPU is visible here (use --gpu cpu)")
        return [str(i) for i in range(count)]
    devices = [part.strip().lower() for part in raw.split(",")]
    for device in devices:
        if device != "cpu" and not device.isdigit():
            raise ValueError(
                f"--gpu takes a GPU index (0, 1, ...), 'cpu', a list of them (0,1,2,3) or "
                f"'all', not {raw!r}"
            )
    return devices


def visible_gpus() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES when set (CUDA renumbers them from 0),
    else what torch sees."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: what Slurm's cgroup or taskset
    allows), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_share(workers: int, threads: int | None = None) -> int:
    """Threads per worker: `threads` when given, else the available CPUs divided evenly."""
    return threads if threads is not None else max(1, available_cpus() // workers)


def _say(line: str) -> None:
    print(line, flush=True)  # at once, also into a log file


def _arm_parent_death() -> None:  # runs in each worker between fork and exec
    lifeline.die_with_parent(signal.SIGTERM)


def _relay(streams: dict[int, str], say: Say) -> None:
    """Say each non-blank line the workers write, with its worker's prefix, until every stream
    ends. `streams`: file descriptor -> prefix."""
    pending = {fd: b"" for fd in streams}
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            for key, _ in selector.select():
                fd = key.fd
                chunk = os.read(fd, 65536)
                lines = (pending[fd] + chunk).split(b"\n")
                pending[fd] = lines.pop() if chunk else b""
                if not chunk:  # end of stream: its last line may lack a newline
                    selector.unregister(fd)
                for line in lines:
                    text = line.decode(errors="replace").rstrip()
                    if text.strip():  # a progress display ending leaves blank lines
                        say(streams[fd] + text)


def run_fleet(
    devices: Sequence[str],
    threads: int,
    options: Sequence[str],
    *,
    say: Say = _say,
    command: Sequence[str] = (sys.executable, "-m", "lorabench", "work"),
) -> int:
    """Run `command --gpu D --threads T OPTIONS...` per device D until all exit; returns the
    worst exit code (the highest; a worker killed by signal N counts as 128 + N)."""
    width = max(40, shutil.get_terminal_size().columns - 10)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "COLUMNS": str(width)}
    workers: list[subprocess.Popen[bytes]] = []
    forwarded: dict[int, object] = {}

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            forwarded[sig] = signal.signal(sig, forward)
        for device in devices:
            argv = [*command, "--gpu", device, "--threads", str(threads), *options]
            workers.append(subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, preexec_fn=_arm_parent_death,
            ))  # fmt: skip
        prefixes = [f"[cpu {i}] " if d == "cpu" else f"[gpu {d}] " for i, d in enumerate(devices)]
        _relay({w.stdout.fileno(): p for w, p in zip(workers, prefixes, strict=True)}, say)
        codes = [worker.wait() for worker in workers]
    finally:
        for worker in workers:  # only if starting one failed: the others must not run on
            if worker.poll() is None:
                worker.terminate()
                worker.wait()
        for sig, handler in forwarded.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    return max(128 - code if code < 0 else code for code in codes)
