"""`lorabench slurm`: print (or write) an sbatch script that runs workers on Slurm nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorabench.cli.common import DbOption, err_console, user_errors


def slurm_command(
    workers_per_node: Annotated[
        int, typer.Option(help="Workers per node (one per GPU).", show_default=False)
    ],
    nodes: Annotated[int, typer.Option(help="Nodes, one array task each.")] = 1,
    sweep: Annotated[str | None, typer.Option(help="Only run jobs of this sweep.")] = None,
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    time: Annotated[
        str | None, typer.Option("--time", help="Time limit per node, HH:MM:SS.")
    ] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option(help="GPUs to request per node. Default: --workers-per-node.")
    ] = None,
    runs_dir: Annotated[
        Path, typer.Option(help="Job folders (checkpoints); on a filesystem all nodes share.")
    ] = Path("runs"),
    python_env: Annotated[
        str | None,
        typer.Option(
            help="Command that activates lorabench's environment, e.g. 'source venv/bin/activate'."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the script here instead of printing.")
    ] = None,
    db: DbOption = None,
) -> None:
    """An sbatch array script: per node, one `lorabench work --gpu i` per GPU; SIGTERM from
    Slurm (preemption, time limit) checkpoints and requeues the running jobs."""
    from lorabench.slurm import SlurmOptions, sbatch_script

    with user_errors():
        script = sbatch_script(
            SlurmOptions(
                db=db or "",
                workers_per_node=workers_per_node,
                nodes=nodes,
                gpus_per_node=gpus_per_node,
                sweep=sweep,
                partition=partition,
                time=time,
                runs_dir=runs_dir.absolute(),
                python_env=python_env,
            )
        )
        if output is None:
            typer.echo(script, nl=False)
            return
        output.write_text(script)
    err_console.print(f"wrote {output}; submit it with: sbatch {output}", highlight=False)
