"""The witness's command line: ``init``, ``follow``, ``show``, ``serve``.

Lives in the witness package (like the relay's) so that ``python -m
backchannel.witness`` runs it; ``backchannel.cli.witness_cmd`` mounts it as
``backchannel witness``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from backchannel.errors import BackchannelError, ConfigError
from backchannel.protocol.note import check_name

if TYPE_CHECKING:
    from backchannel.witness.service import Witness

witness_app = typer.Typer(
    help="Run a witness that cosigns a relay's log heads.", no_args_is_help=True
)

_Dir = Annotated[Path, typer.Option("--dir", help="The witness's directory (key and state)")]


@witness_app.callback()
def _witness() -> None:
    """Run a witness that cosigns a relay's log heads (c2sp.org/tlog-witness)."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@witness_app.command()
def init(
    directory: _Dir,
    name: Annotated[
        str, typer.Option(help="The witness's name, a schema-less URL such as example.org/w1")
    ],
) -> None:
    """Create the witness's keys and state; print its verifier keys for clients."""
    from backchannel.witness.service import Witness
    from backchannel.witness.state import WitnessState, create_keys

    try:
        check_name(name)
        keys = create_keys(directory)
    except BackchannelError as e:
        raise _fail(str(e)) from None
    state = WitnessState(directory)
    state.set_name(name)
    for v in Witness(name, keys, state).verifiers():
        typer.echo(v.vkey())
    state.close()


def _open(directory: Path) -> Witness:
    from backchannel.witness.service import Witness
    from backchannel.witness.state import WitnessState, load_keys

    keys = load_keys(directory)
    state = WitnessState(directory)
    name = state.name()
    if name is None:
        state.close()
        raise ConfigError(f"no witness in {directory}: run `backchannel witness init`")
    return Witness(name, keys, state)


@witness_app.command()
def follow(
    directory: _Dir,
    vkey: Annotated[str, typer.Argument(help="The log's checkpoint key (GET /v1/log/key)")],
) -> None:
    """Follow a log: cosign the checkpoints its key signs, if they only grow."""
    try:
        witness = _open(directory)
        verifier = witness.state.add_log(vkey)
    except BackchannelError as e:
        raise _fail(str(e)) from None
    typer.echo(f"following {verifier.name}")
    witness.state.close()


@witness_app.command()
def show(directory: _Dir) -> None:
    """Print the verifier keys, the logs followed with their heads, and refusals kept."""
    try:
        witness = _open(directory)
    except BackchannelError as e:
        raise _fail(str(e)) from None
    for v in witness.verifiers():
        typer.echo(f"key {v.vkey()}")
    for log in witness.state.logs():
        typer.echo(f"log {log.origin} size {log.size} root {log.root.hex()}")
    for origin, at, reason, _ in witness.state.evidence():
        typer.echo(f"refused {origin} at {at}: {reason}")
    witness.state.close()


@witness_app.command()
def serve(
    directory: _Dir,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8790,
) -> None:
    """Serve POST /add-checkpoint until interrupted."""
    import uvicorn

    from backchannel.witness.service import create_witness_app

    try:
        witness = _open(directory)
    except BackchannelError as e:
        raise _fail(str(e)) from None
    uvicorn.run(
        create_witness_app(witness),
        host=host,
        port=port,
        log_level="warning",
        server_header=False,
        date_header=False,
    )
