"""``backchannel peer ...``: the other mission, pinned by its card and a safety number."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from backchannel.cli.context import (
    open_client,
    read_file,
    read_secret_input,
    run,
    settings,
    warn_argv,
)
from backchannel.cli.output import Text, output, short, table
from backchannel.client.records import PeerRecord
from backchannel.errors import RelayUnavailable

app = typer.Typer(help="The peer mission: add its card, confirm its safety number, list.")

PeerArg = Annotated[
    str, typer.Argument(metavar="PEER", help="The peer mission's name or id prefix.")
]


def _doc(rec: PeerRecord) -> dict[str, Any]:
    return {
        "peer": rec.name,
        "mission_id": rec.mission_id.hex(),
        "safety_number": rec.safety_number,
        "confirmed": rec.confirmed,
    }


@app.command()
def add(
    ctx: typer.Context,
    card_file: Annotated[
        Path, typer.Argument(metavar="CARD", help="The peer mission's card file.")
    ],
) -> None:
    """Add the peer mission's card and show the safety number to compare in person."""
    text = read_file(card_file, "a mission card")
    with open_client(ctx) as client:
        before = len(client.inbox())
        rec = client.add_peer(text)
        released = len(client.inbox()) - before
    waited = (
        [Text(f"{released} message(s) that waited for this card are now in the inbox")]
        if released > 0
        else []
    )
    output(ctx).done(
        {**_doc(rec), "released": released},
        Text.assemble(
            ("ok", "green"),
            " added peer mission ",
            (rec.name, "bold"),
            f" ({short(rec.mission_id)})",
        ),
        Text(f"safety number: {rec.safety_number}", style="bold"),
        Text(
            "Compare it in person (or on a channel you already trust) with an officer of "
            f"{rec.name}. Only if it matches, run:"
        ),
        Text(
            f'  backchannel peer confirm {short(rec.mission_id)} --safety-number "'
            f'{rec.safety_number}"'
        ),
        *waited,
    )


@app.command()
def confirm(
    ctx: typer.Context,
    peer: PeerArg,
    safety_number: Annotated[
        str, typer.Option("--safety-number", help="The number as read out by the peer mission.")
    ],
) -> None:
    """Confirm the safety number compared in person; pairing needs it."""
    with open_client(ctx) as client:
        rec = client.find_peer(peer)
        rec = client.confirm_peer(rec.mission_id, safety_number)
    output(ctx).done(
        _doc(rec),
        Text.assemble(("ok", "green"), " safety number of ", (rec.name, "bold"), " confirmed"),
        Text(f"next: `backchannel channel offer {short(rec.mission_id)} --out FILE`", style="dim"),
    )


@app.command("list")
def list_peers(ctx: typer.Context) -> None:
    """List the peer missions this device knows."""
    with open_client(ctx) as client:
        peers = client.peers()
    t = table("peer", "id", "confirmed", "safety number")
    for p in peers:
        t.add_row(
            Text(p.name, style="bold"),
            short(p.mission_id),
            "[green]yes[/green]" if p.confirmed else "[yellow]no[/yellow]",
            p.safety_number,
        )
    output(ctx).done({"peers": [_doc(p) for p in peers]}, t if peers else Text("no peers yet"))


#: New codes drawn before giving up when each one's place on the relay is taken.
_CODES_TRIED = 5


@app.command()
def invite(
    ctx: typer.Context,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the other mission.")
    ] = 600.0,
) -> None:
    """Pair by a short code: print a one-time code to read to the other mission, then wait."""
    from backchannel.client import pairing

    out = output(ctx)
    as_json = settings(ctx).json

    def show(code: str) -> None:
        """Once the run has its place on the relay: only then is the code worth reading out."""
        if as_json:  # the document comes at the end; the code is needed now
            typer.echo(f"pairing code: {code}", err=True)
            return
        out.console.print(Text(f"pairing code: {code}", style="bold"))
        out.console.print(
            Text(
                "Read it to an officer of the other mission; they run "
                "`backchannel peer join` and type it at the prompt. Waiting...",
                style="dim",
            )
        )

    with open_client(ctx) as client:
        # A code whose place on the relay is taken (another run drew it lately,
        # or someone fills places) is never shown: another is drawn.
        for _ in range(_CODES_TRIED):
            code = pairing.new_code()
            try:
                rec = run(
                    pairing.invite(
                        client, code, timeout=timeout, ready=functools.partial(show, code)
                    )
                )
                break
            except pairing.NameplateTaken:
                continue
        else:
            raise RelayUnavailable(
                f"the relay had no place free for {_CODES_TRIED} new pairing codes in a row; "
                "try again later, or pair by safety number (`peer add`, `peer confirm`)"
            )
    out.done(
        {**_doc(rec), "code": code},
        Text.assemble(
            ("ok", "green"),
            " paired with ",
            (rec.name, "bold"),
            f" ({short(rec.mission_id)}); safety number confirmed by the code",
        ),
        Text(f"safety number: {rec.safety_number}"),
    )


@app.command()
def join(
    ctx: typer.Context,
    code: Annotated[
        str | None,
        typer.Argument(
            metavar="[CODE]",
            help="The code read to you, 1234-5678-9012 (asked for when not given).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the other mission.")
    ] = 600.0,
) -> None:
    """Pair by the short code the other mission read to you (asked for when not given)."""
    from backchannel.client import pairing

    if code is None:
        code = read_secret_input("pairing code", hide=True).strip()
    else:
        warn_argv("the pairing code", "leave it out and type it at the prompt")
    with open_client(ctx) as client:
        rec = run(pairing.join(client, code, timeout=timeout))
    output(ctx).done(
        _doc(rec),
        Text.assemble(
            ("ok", "green"),
            " paired with ",
            (rec.name, "bold"),
            f" ({short(rec.mission_id)}); safety number confirmed by the code",
        ),
        Text(f"safety number: {rec.safety_number}"),
    )
