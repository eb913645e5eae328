"""`lorabench db upgrade`, `db version`: the database's schema version and its explicit upgrade.

Every other command refuses a database of an older schema and names `db upgrade`; nothing
upgrades one silently (see store/migrate.py for why).
"""

from __future__ import annotations

import shlex

import typer

from lorabench.cli.common import DbOption, console, user_errors

db_app = typer.Typer(
    help="The database's schema: its version, and the upgrade a newer lorabench needs.",
    no_args_is_help=True,
)


@db_app.command("upgrade")
def upgrade_command(db: DbOption = None) -> None:
    """Upgrade an older lorabench's database to this one's schema (stop workers, back it up)."""
    from lorabench.store import opened
    from lorabench.store.migrate import upgrade

    with user_errors(), opened(db, allow_older=True) as engine:
        result = upgrade(engine)
    console.print(result.describe(), highlight=False, soft_wrap=True)


@db_app.command("version")
def version_command(db: DbOption = None) -> None:
    """Print the database's schema version (read-only) and whether it needs `db upgrade`."""
    from lorabench.store import opened
    from lorabench.store.migrate import stored_version
    from lorabench.store.models import SCHEMA_VERSION

    with (
        user_errors(),
        opened(db, read_only=True, allow_older=True) as engine,
        engine.connect() as conn,
    ):
        version = stored_version(conn)
    if version is None or version == SCHEMA_VERSION:
        shown = SCHEMA_VERSION if version is None else version
        console.print(f"schema {shown} (current)", highlight=False, soft_wrap=True)
        return
    option = "" if db is None else f" --db {shlex.quote(db)}"
    console.print(
        f"schema {version}; this lorabench needs {SCHEMA_VERSION}: run "
        f"`lorabench db upgrade{option}` (back it up first)",
        highlight=False,
        soft_wrap=True,
    )
