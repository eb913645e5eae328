"""The `lorabench` command line. Commands are thin: parse, call, print."""

import typer

from lorabench.cli.db import db_app
from lorabench.cli.export import export_command
from lorabench.cli.fetch import fetch_command
from lorabench.cli.joblist import jobs_app
from lorabench.cli.jobs import cancel_command, retry_command
from lorabench.cli.plan import plan_command
from lorabench.cli.quickstart import quickstart_command
from lorabench.cli.report import report_command
from lorabench.cli.results import results_command
from lorabench.cli.slurm import slurm_command
from lorabench.cli.status import status_command
from lorabench.cli.variants import tasks_command, variants_command
from lorabench.cli.version import main_options
from lorabench.cli.work import work_command

app = typer.Typer(
    name="lorabench",
    help="Benchmark LoRA variants fairly: plan sweeps, run workers, report the paper's tables.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for the user's shell
    pretty_exceptions_enable=False,
)
app.callback()(main_options)  # --version
app.command("plan")(plan_command)
app.command("work")(work_command)
app.command("status")(status_command)
app.command("retry")(retry_command)
app.command("cancel")(cancel_command)
app.command("report")(report_command)
app.command("results")(results_command)
app.command("quickstart")(quickstart_command)
app.command("export")(export_command)
app.command("variants")(variants_command)
app.command("tasks")(tasks_command)
app.command("slurm")(slurm_command)
app.command("fetch")(fetch_command)
app.add_typer(jobs_app, name="jobs")
app.add_typer(db_app, name="db")
