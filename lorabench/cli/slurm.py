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
    account: Annotated[str | None, typer.Option(help="Slurm account to charge.")] = None,
    qos: Annotated[str | None, typer.Option(help="Slurm quality of service.")] = None,
    mem: Annotated[str | None, typer.Option(help="Memory per node, e.g. 64G.")] = None,
    cpus_per_task: Annotated[
        int | None,
        typer.Option(
            help="CPUs per node for its workers; each worker trains on an equal share "
            "(--threads). Default: the site's; the workers then divide what they get."
        ),
    ] = None,
    constraint: Annotated[str | None, typer.Option(help="Node features, e.g. 'a100|h100'.")] = None,
    sbatch_line: Annotated[
        list[str] | None,
        typer.Option(
            "--sbatch-line",
            help="Any other sbatch option, as '--mail-type=END' (repeatable).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the script here instead of printing.")
    ] = None,
    submit: Annotated[
        bool,
        typer.Option(
            "--submit", help="Submit it with sbatch and print the Slurm job id (needs sbatch)."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """An sbatch array script: per node, one `lorabench work --gpu i` per GPU; SIGTERM from
    Slurm (preemption, time limit) checkpoints and requeues the running jobs."""
    from lorabench.slurm import SlurmOptions, sbatch_script
    from lorabench.slurm import submit as sbatch

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
                account=account,
                qos=qos,
                mem=mem,
                cpus_per_task=cpus_per_task,
                constraint=constraint,
                sbatch_lines=tuple(sbatch_line or ()),
            )
        )
        if output is not None:
            output.write_text(script)
        if submit:
            job_id = sbatch(script, output)
    if submit:
        typer.echo(job_id)  # alone on stdout, for scripts: JOB=$(lorabench slurm ... --submit)
        err_console.print(f"submitted Slurm job {job_id}; follow it with: squeue -j {job_id}",
                          highlight=False)  # fmt: skip
    elif output is None:
        typer.echo(script, nl=False)
    else:
        err_console.print(f"wrote {output}; submit it with: sbatch {output}", highlight=False)
