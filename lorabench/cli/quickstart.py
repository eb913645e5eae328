"""`lorabench quickstart`: a small learning-rate sweep on the embedded task, end to end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from lorabench.cli.common import DbOption, console, quiet_libraries, user_errors

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


def quickstart_command(
    gpu: Annotated[str | None, typer.Option(help="GPU index or 'cpu' (default: auto).")] = None,
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports"),
    db: DbOption = None,
) -> None:
    """Plan LoRA and rsLoRA x 4 learning rates on bbc-news, run them, write the report."""
    from lorabench.cli.plan import plan
    from lorabench.cli.report import write_report
    from lorabench.cli.work import run_worker

    quiet_libraries()
    started = time.perf_counter()
    with user_errors():
        planned = plan(None, dict(QUICKSTART_SWEEP), db=db)
        console.print(
            f"planned sweep [bold]quickstart[/]: {planned['new']} new job(s), "
            f"{planned['existing']} already present"
        )
        run_worker(db=db, gpu=gpu, sweep="quickstart", exit_when_empty=True, heartbeat_seconds=5.0,
                   lease_seconds=60.0, checkpoint_every=10)  # fmt: skip
        written = write_report(
            db=db, table="lr", figure="lr-sweep", sweep="quickstart", out=out,
            formats=["md", "csv", "png"],
        )  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    console.print(f"\nquickstart finished in {minutes:.1f} min. Report:")
    for path in written:
        console.print(f"  {path}")
