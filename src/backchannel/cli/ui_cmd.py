"""``backchannel ui``: the officers' desk, a local web page over this officer's device."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from backchannel.cli.context import open_client


def ui(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Serve on this port (default: a free one)."),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the login link in the default browser.")
    ] = False,
    round_seconds: Annotated[
        float | None,
        typer.Option(
            "--round-seconds",
            min=0.2,
            help="Seconds between rounds (default: the round length), as `run --interval`.",
        ),
    ] = None,
) -> None:
    """Serve the desk on 127.0.0.1 for this officer, with the rounds running, until Ctrl-C.

    Prints a login link to open once, in one browser.
    """
    from backchannel.ui.app import serve

    with open_client(ctx) as client, contextlib.suppress(KeyboardInterrupt):
        serve(
            client,
            port=port,
            open_browser=open_browser,
            round_seconds=round_seconds,
            echo=typer.echo,
        )
