"""The relay's command line: ``serve``.

The Typer app lives here, inside the relay package, so that
``python -m backchannel.relay`` runs it without the relay importing
``backchannel.cli`` (an import-linter contract forbids that);
``backchannel.cli.relay_cmd`` re-exports it for ``backchannel relay ...``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from backchannel.errors import ConfigError

relay_app = typer.Typer(help="Run a Backchannel relay.", no_args_is_help=True)


@relay_app.callback()
def _relay() -> None:
    """Run a Backchannel relay."""


@relay_app.command()
def serve(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="SQLite database file (relay.db), or a sqlite:///<path> or postgresql://... URL",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file", dir_okay=False)
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the embedded database lives")
    ] = None,
    open_registration: Annotated[
        bool | None,
        typer.Option(
            "--open-registration/--closed-registration",
            help="Let anyone register a tenant (demos only)",
        ),
    ] = None,
) -> None:
    """Serve the relay until interrupted; in-flight deposits finish before it exits."""
    from backchannel.relay.server import serve as run
    from backchannel.relay.settings import resolve_settings

    try:
        settings = resolve_settings(
            {
                "db_url": db,
                "host": host,
                "port": port,
                "data_dir": data_dir,
                "open_registration": open_registration,
            },
            config_file=config,
        )
        if not settings.db_url:
            settings.data_dir.expanduser().mkdir(parents=True, exist_ok=True)
        else:
            _check_database_file(settings.db_url)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except OSError as e:
        typer.echo(f"error: cannot create the data directory: {e.strerror}", err=True)
        raise typer.Exit(2) from None
    try:
        run(settings)
    except ConfigError as e:  # e.g. an unknown URL scheme, found when the store is made
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _check_database_file(db_url: str) -> None:
    """Refuse, in one line, an SQLite database given where no file can be made.

    The data directory is created when missing; the directory of a database
    named by ``--db`` is not (it may be a typo), so it must exist.
    """
    from backchannel.store.factory import sqlite_path

    path = sqlite_path(db_url)
    if path is None:
        return
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise ConfigError(
            f"the relay database {path} is a directory; give a file in it, "
            f"e.g. --db {shlex.quote(os.path.join(path, 'relay.db'))}"
        )
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ConfigError(
            f"the directory of the relay database, {directory}, does not exist; "
            f"create it (mkdir -p {shlex.quote(directory)}) "
            "or give --db a file in an existing directory"
        )
