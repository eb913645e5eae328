"""Judging how a sandboxed run ended: outcome, reason, output, layers in force."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess

from lorabench.sandbox.collect import Collected
from lorabench.sandbox.limits import SandboxLimits
from lorabench.sandbox.results import Outcome, SandboxError, SandboxResult

log = logging.getLogger("lorabench.sandbox")


def _exit_status(code: int | None, strong: bool) -> int | None:
    """bwrap reports a child killed by signal N as exit status 128 + N: make it -N again."""
    if strong and code is not None and 128 < code < 128 + signal.NSIG:
        with contextlib.suppress(ValueError):
            return -signal.Signals(code - 128).value
    return code


def judge(
    process: subprocess.Popen,
    collected: Collected,
    duration: float,
    limits: SandboxLimits,
    nonce: bytes,
    os_layers: tuple[str, ...],
    namespace: int | None,
) -> SandboxResult:
    """The result of a finished run, from its exit status, output and the harness's channels."""
    code = _exit_status(process.returncode, bool(os_layers))
    report = _parse_report(collected.out["report"])
    stdout = collected.out["stdout"].decode("utf-8", errors="replace")
    stderr = collected.out["stderr"].decode("utf-8", errors="replace")
    if report is None and not (collected.timed_out or collected.truncated):
        raise SandboxError(f"sandbox setup failed (exit code {code}): {stderr.strip()[-2000:]}")
    finished = bytes(collected.out["marker"]) == nonce
    if collected.truncated:
        stdout, stderr = _cut(stdout, stderr, limits.output_bytes)
    if collected.timed_out:
        outcome, reason = Outcome.TIMED_OUT, f"wall-clock limit of {limits.timeout_s:g} s"
    elif collected.truncated:
        outcome, reason = Outcome.KILLED, f"output over {limits.output_bytes} bytes"
    elif code == -signal.SIGXCPU:
        outcome, reason = Outcome.TIMED_OUT, f"CPU-time limit of {limits.cpu_seconds} s"
    elif code is not None and code < 0:
        outcome, reason = Outcome.KILLED, f"killed by {signal.Signals(-code).name}"
    elif code == 0 and finished:
        outcome, reason = Outcome.PASSED, ""
    elif code == 0:
        outcome, reason = Outcome.FAILED, "exited before its end (no end marker from the harness)"
    else:
        outcome, reason = Outcome.FAILED, _last_line(stderr) or f"exit code {code}"
    layers = (*os_layers, *(report["layers"] if report else ()))
    if not os_layers:
        _warn_missing(layers)
    return SandboxResult(
        outcome=outcome,
        exit_code=code,
        stdout=stdout,
        stderr=stderr,
        truncated=collected.truncated,
        duration_s=duration,
        reason=reason,
        pid=process.pid,
        isolation=layers,
        pid_namespace=namespace,
        finished=finished,
    )


def _parse_report(data: bytearray) -> dict | None:
    try:
        return json.loads(data.decode()) if data else None
    except ValueError:
        return None


def _cut(stdout: str, stderr: str, budget: int) -> tuple[str, str]:
    stdout = stdout[:budget]
    return stdout, stderr[: max(0, budget - len(stdout))]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def _warn_missing(layers: tuple[str, ...]) -> None:
    missing = []
    if "network-namespace" not in layers:
        missing.append("network namespace (only the audit hook blocks sockets)")
    if os.geteuid() == 0 and "dedicated-uid" not in layers:
        missing.append("uid switch (only the audit hook guards files)")
    if missing:
        _warn_once("; ".join(missing))


@functools.cache
def _warn_once(missing: str) -> None:
    # Once per process and kind of gap, not once per program (HumanEval runs hundreds).
    log.warning("weak sandbox runs without: %s", missing)
