"""The relay's command line: ``serve``.

The Typer app lives here, inside the relay package, so that
``python -m backchannel.relay`` runs it without the relay importing
``backchannel.cli`` (an import-linter contract forbids that);
``backchannel.cli.relay_cmd`` re-exports it for ``backchannel relay ...``.
"""

from __future__ import annotations

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
        str | None, typer.Option("--db", help="sqlite:///<path> or postgresql://... URL")
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
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except OSError as e:
        typer.echo(f"error: cannot create the data directory: {e.strerror}", err=True)
        raise typer.Exit(2) from None
    run(settings)
