"""`lorabench status [--watch]`: the queue at a glance, once or refreshed until Ctrl-C."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from lorabench.cli.common import DbOption, console, print_whole, require_finite, user_errors


def status_command(
    sweep: Annotated[str | None, typer.Option(help="Only this sweep.")] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh the view every --interval seconds.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.01, help="Seconds between refreshes with --watch.")
    ] = 2.0,
    iterations: Annotated[
        int | None, typer.Option(min=1, hidden=True, help="Stop after N refreshes (tests).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Progress, throughput and ETA per sweep; workers (alive/stopped/dead); running and
    failed jobs; for a successive-halving sweep, each bracket's rungs."""
    from lorabench.monitor import render_snapshot, take_snapshot
    from lorabench.store import opened, require_sweep

    with user_errors():
        require_finite("--interval", interval)
    with user_errors(), opened(db, read_only=True) as engine:
        require_sweep(engine, sweep)  # a misspelt name is an error, not "no jobs planned"
        if not watch:
            print_whole(render_snapshot(take_snapshot(engine, sweep=sweep)))
            return
        _watch(engine, sweep=sweep, interval=interval, iterations=iterations)


def _watch(engine, *, sweep: str | None, interval: float, iterations: int | None) -> None:  # noqa: ANN001
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text
    from sqlalchemy.exc import OperationalError

    from lorabench.monitor import render_snapshot, take_snapshot

    done = 0
    try:
        with Live(console=console, auto_refresh=False) as live:
            while iterations is None or done < iterations:
                try:
                    view = render_snapshot(take_snapshot(engine, sweep=sweep))
                except OperationalError as error:
                    # A restarting server or a busy file is no reason to end the watch.
                    view = Text(f"database unreachable, retrying: {error.orig}", style="red")
                stamp = Text(
                    f"{time.strftime('%H:%M:%S')}  every {interval:g}s  (Ctrl-C to quit)",
                    style="dim",
                )
                live.update(Group(view, stamp), refresh=True)
                done += 1
                if iterations is None or done < iterations:
                    time.sleep(interval)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends: exit 0, no traceback
