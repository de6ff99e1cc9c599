"""The ``backchannel`` command: a thin Typer adapter over the client library."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console

app = typer.Typer(
    name="backchannel",
    help="Secure mailbox between two missions, under the two-person rule.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Secure mailbox between two missions, under the two-person rule."""


@app.command()
def demo(
    message: str = typer.Option(
        "Proposal: working-level talks in Geneva next month.", help="Text to send."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Run two missions of two officers each and show the two-person rule at work."""
    from backchannel.client.demo_inmemory import run

    steps = run(message)
    if as_json:
        print(json.dumps({"steps": [s.as_dict() for s in steps]}, indent=2))
        return
    console = Console()
    for s in steps:
        mark = "[green]ok[/green]     " if s.outcome == "ok" else "[yellow]refused[/yellow]"
        console.print(f"{mark} [bold]{s.name}[/bold]: {s.detail}", highlight=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
