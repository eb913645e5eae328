"""Reading a sandboxed program's output and the harness's channels, within time and budget."""

from __future__ import annotations

import json
import os
import selectors
import time
from collections.abc import Sequence

_CHUNK = 65536


def pid_namespace(info: bytes) -> int | None:
    try:
        return int(json.loads(info.decode())["pid-namespace"])
    except (ValueError, KeyError, TypeError):
        return None


class Collected:
    def __init__(self, channels: Sequence[str]) -> None:
        self.out = {name: bytearray() for name in ("stdout", "stderr", *channels)}
        self.truncated = False
        self.timed_out = False


def collect(process, channels: dict[str, int], deadline: float, budget: int) -> Collected:
    """Read the program's output and the harness's channels until EOF, deadline or budget.

    Every byte counts against the budget, the private channels too: a program that finds
    one of them cannot make the parent buffer without limit.
    """
    collected = Collected(list(channels))
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    for name, fd in channels.items():
        selector.register(fd, selectors.EVENT_READ, name)
    used = 0
    try:
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                collected.timed_out = True
                return collected
            for key, _ in selector.select(timeout=remaining):
                data = os.read(key.fd, min(_CHUNK, budget - used + 1))
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                collected.out[key.data] += data
                used += len(data)
                if used > budget:
                    collected.truncated = True
                    return collected
    finally:
        selector.close()
    return collected


def wait_unreaped(pid: int, deadline: float, collected: Collected) -> None:
    """Wait for the program to exit without reaping it, so its pid cannot be reused yet.

    The pipes can close before the exit (a program may close its stdout and loop on).
    """
    if collected.timed_out or collected.truncated:
        return
    while time.monotonic() < deadline:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None and info.si_pid == pid:
            return
        time.sleep(0.005)
    collected.timed_out = True
