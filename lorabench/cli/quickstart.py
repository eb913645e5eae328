"""`lorabench quickstart`: a small learning-rate sweep on the embedded task, end to end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from lorabench.cli.common import (
    DbOption,
    LogDirOption,
    LogOption,
    console,
    print_whole,
    quiet_libraries,
    tracking_backends,
    user_errors,
)

# Sized to finish in a few minutes on 2 CPU cores while showing the paper's point: the
# learning rate moves the score far more than the choice between LoRA and rsLoRA.
QUICKSTART_SWEEP = {
    "name": "quickstart",
    "task": ["bbc-news"],
    "variant": ["lora", "rslora"],
    "lr": [1e-5, 1e-4, 1e-3, 1e-2],
    "seed": [0],
    "epochs": [2],
    "max_length": [64],
    "train_size": [320],
    "eval_size": [300],
}

# The paper's headline on the same task and budget per job: five variants across half-decade
# learning rates from clearly too small to clearly too large, ~30 min on 2 CPU cores.
FULL_SWEEP = {
    **QUICKSTART_SWEEP,
    "name": "quickstart-full",
    "variant": ["lora", "dora", "pissa", "lora-plus", "lora-ga"],
    "lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
}


def quickstart_command(
    gpu: Annotated[str | None, typer.Option(help="GPU index or 'cpu' (default: auto).")] = None,
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports"),
    db: DbOption = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="LoRA, DoRA, PiSSA, LoRA+, LoRA-GA x 7 learning rates (~30 min on 2 CPU "
            "cores), then print how much the learning rate matters vs the variant.",
        ),
    ] = False,
    log: LogOption = None,
    log_dir: LogDirOption = None,
) -> None:
    """Plan LoRA and rsLoRA x 4 learning rates on bbc-news, run them, write the report.

    With --full: LoRA, DoRA, PiSSA, LoRA+ and LoRA-GA x 7 learning rates, then the finding."""
    from lorabench import api

    quiet_libraries()
    started = time.perf_counter()
    with user_errors():
        if out.exists() and not out.is_dir():  # said now, not after the sweep has run
            raise ValueError(f"--out {out} is a file; the report needs a folder")
        tracking = tracking_backends(log, log_dir)
        sweep = dict(FULL_SWEEP if full else QUICKSTART_SWEEP)
        name = sweep["name"]
        planned = api.plan(sweep, db=db)
        console.print(
            f"planned sweep [bold]{name}[/]: {planned.new} new job(s), "
            f"{planned.existing} already present"
        )
        try:
            api.run_worker(db=db, gpu=gpu, sweep=name, exit_when_empty=True,
                           heartbeat_seconds=5.0, lease_seconds=60.0,
                           checkpoint_every=10, log=tracking, log_dir=log_dir)  # fmt: skip
        except KeyboardInterrupt:  # the running job is checkpointed and back in the queue
            raise typer.Exit(130) from None
        written = api.write_report(
            db=db, table="lr", figure="lr-sweep", sweep=name, out=out,
            formats=["md", "csv", "png"],
        )  # fmt: skip
        if full:
            print_finding(db=db, sweep=name)
    minutes = (time.perf_counter() - started) / 60
    console.print(f"\nquickstart{' --full' if full else ''} finished in {minutes:.1f} min. Report:")
    for path in written:
        console.print(f"  {path}")


def print_finding(*, db: str | None, sweep: str) -> None:
    """The spread across learning rates vs across variants (95% intervals), under the val rule,
    and the variants statistically tied with the best: a short table and a few sentences."""
    from lorabench.report.finding import finding, render_finding
    from lorabench.report.load import load_data
    from lorabench.report.select import Scoring
    from lorabench.store import opened

    scoring = Scoring(select="val")
    with opened(db, read_only=True) as engine:  # outcomes are read while it is open
        data = load_data(engine, sweep=sweep)
        task = str(data.jobs["task"].iloc[0])
        found = finding(data, scoring, task)
    spec = scoring.spec(task)
    table, sentence = render_finding(found, metric=spec.name, percent=spec.percent)
    print_whole(table)
    console.print(sentence, highlight=False, markup=False)  # intervals in [ ] are no markup
