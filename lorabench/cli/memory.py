"""The peak-memory table `plan --dry-run` and `tasks NAME` print (lorabench.memory computes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.markup import escape
from rich.table import Table

from lorabench.cli.common import console, print_whole

if TYPE_CHECKING:
    from lorabench.memory import Family

MEMORY_NOTE = (
    "GiB, estimated before any job runs: base weights in their dtype + adapters with fp32 "
    "gradients and AdamW state (16 B per trainable parameter) + activations at batch x "
    "max_length (an upper bound; SDPA attention; after Korthikanti et al. 2022, see "
    "lorabench/memory/estimate.py). ckpt: with `work --grad-ckpt`; fits: the smallest GPU "
    "with 5% to spare, H100 80GB or H200 141GB"
)


def gib(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**30:,.1f}"


def fits(family: Family) -> str:
    """The smallest GPU the family fits on, else the one --grad-ckpt makes it fit on."""
    from lorabench.memory import fitting

    estimate = family.estimate
    if estimate is None:
        return ""
    plain = fitting(estimate.peak)
    if plain:
        return plain[0]
    checkpointed = fitting(estimate.peak_ckpt) if estimate.peak_ckpt is not None else []
    return f"{checkpointed[0]} ckpt" if checkpointed else "none"


def memory_table(found: Sequence[Family], title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("family", overflow="fold")
    for column in ("base", "adapters", "activations", "peak", "ckpt"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("fits", no_wrap=True)
    for family in found:
        estimate = family.estimate
        if estimate is None:
            continue
        table.add_row(
            escape(family.label), gib(estimate.base + estimate.buffers),
            gib(estimate.trainable), gib(estimate.activations), gib(estimate.peak),
            gib(estimate.peak_ckpt), fits(family),
        )  # fmt: skip
    return table


def print_memory(found: Sequence[Family], title: str = "peak GPU memory per job family") -> None:
    estimated = [family for family in found if family.estimate is not None]
    if estimated:
        print_whole(memory_table(estimated, title))
    for family in found:
        if family.estimate is None:
            console.print(f"{escape(family.label)}: {family.problem}", highlight=False)
    if estimated:
        console.print(f"({MEMORY_NOTE})", style="dim", highlight=False)


def print_task_memory(task: str) -> None:
    """`tasks NAME`: LoRA r=8 at the task's defaults, in fp32 and with a bf16 base."""
    from lorabench.memory.families import default_jobs, families

    found = families(default_jobs(task))
    if all(family.estimate is None for family in found):
        console.print(f"peak GPU memory: {found[0].problem}", highlight=False)
        return
    # default_jobs: fp32 first, then precision and base_dtype bf16
    found = [dataclasses.replace(family, label=label)
             for family, label in zip(found, ("fp32", "bf16"), strict=True)]  # fmt: skip
    title = f"peak GPU memory, LoRA r=8 at {task}'s defaults (bf16: base and autocast)"
    print_memory(found, title=title)
