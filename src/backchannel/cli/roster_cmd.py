"""``backchannel mission change ...``: add or remove officers, change the threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backchannel.cli.context import open_client, read_file, write_file
from backchannel.cli.output import Text, output
from backchannel.client import roster_change
from backchannel.client.cards import OfficerCard

app = typer.Typer(
    help="Change the roster: k officers of the current roster and every officer added sign."
)

ChangeArg = Annotated[
    Path, typer.Argument(metavar="CHANGE", help="The roster-change file passed between officers.")
]


@app.command()
def propose(
    ctx: typer.Context,
    threshold: Annotated[int, typer.Option("--threshold", help="k of the new roster.")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the change.")],
    add: Annotated[
        list[Path] | None, typer.Option("--add", help="An officer card to add (repeatable).")
    ] = None,
    remove: Annotated[
        list[str] | None,
        typer.Option("--remove", help="Officer id (hex prefix) to remove (repeatable)."),
    ] = None,
) -> None:
    """Propose the next roster version, signed by you."""
    cards = [OfficerCard.decode(read_file(p, "an officer card")) for p in add or []]
    with open_client(ctx) as client:
        roster = client.mission().roster
        ids = []
        for prefix in remove or []:
            hits = [o.officer_id for o in roster.officers if o.officer_id.hex().startswith(prefix)]
            if len(hits) != 1:
                from backchannel.errors import ConfigError

                raise ConfigError(f"no single officer matches {prefix!r}; see `mission show`")
            ids.append(hits[0])
        change = roster_change.propose(client, cards, ids, threshold)
    write_file(out_file, change.encode())
    output(ctx).done(
        {"out": str(out_file), "roster": change.describe()},
        Text.assemble(("ok", "green"), f" proposed {change.describe()}"),
        Text(f"written to {out_file}; colleagues run `backchannel mission change sign {out_file}`"),
    )


@app.command()
def sign(ctx: typer.Context, change_file: ChangeArg) -> None:
    """Review the proposed roster and sign it (the file is updated in place)."""
    change = roster_change.RosterChange.decode(read_file(change_file, "a roster change"))
    before = len(change.signatures)
    with open_client(ctx) as client:
        change = roster_change.sign(client, change)
    write_file(change_file, change.encode())
    n = len(change.signatures)
    said = (
        f" signed {change.describe()}"
        if n > before
        else (f" you had signed {change.describe()} already; it holds {n} signature(s)")
    )
    output(ctx).done(
        {"roster": change.describe(), "signatures": n, "added": n > before},
        Text.assemble(("ok", "green"), said),
    )


@app.command()
def adopt(ctx: typer.Context, change_file: ChangeArg) -> None:
    """Apply a fully signed change on this device (each officer runs it)."""
    change = roster_change.RosterChange.decode(read_file(change_file, "a roster change"))
    with open_client(ctx) as client:
        was_runner = client.mission_or_none() is not None and client.is_runner
        state = roster_change.adopt(client, change)
        takes_over = state is not None and client.is_runner and not was_runner
    if state is None:
        output(ctx).done(
            {"removed": True},
            Text("this officer is no longer on the roster; the mission's secrets were erased"),
        )
        return
    notes = [Text("give the peer a new `backchannel mission card`", style="dim")]
    if takes_over:
        notes = [
            Text(
                "this device now runs the rounds (the officer whose device did was removed): "
                "write the new `backchannel mission card` here and have every officer of each "
                "peer mission add it; messages wait until the peer has",
                style="bold",
            )
        ]
    if change.rekey_commitment:
        notes.append(
            Text(
                "the intake has a new key: publish the new `backchannel intake card` "
                "(requests sent to the old one still open here)",
                style="dim",
            )
        )
    output(ctx).done(
        {
            "removed": False,
            "version": state.roster.version,
            "runs_the_rounds": takes_over,
            "new_intake_card": bool(change.rekey_commitment),
        },
        Text.assemble(("ok", "green"), f" roster version {state.roster.version} adopted"),
        *notes,
    )
