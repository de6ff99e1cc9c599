"""``backchannel recovery ...``: headquarters' offline keys (the recovery quorum).

Each key lives in a passphrase-sealed file of its own, kept offline; its card
goes to the mission's founder (``mission create --recovery CARD``). When the
mission cannot act (a 2-of-2 mission that lost an officer), ``r`` keyholders
each sign the roster change the officers who remain propose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backchannel.cli.context import passphrase, read_file, settings, warn_fast_kdf, write_file
from backchannel.cli.officer import OutOption
from backchannel.cli.output import Text, fingerprint, output
from backchannel.client import recovery, roster_change

app = typer.Typer(
    help="Headquarters' recovery keys: create one, or sign a roster change the mission cannot."
)

KeyOption = Annotated[
    Path, typer.Option("--key", metavar="FILE", help="The recovery key file (kept offline).")
]


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Whose key this is, e.g. 'HQ desk 1'.")],
    key_file: KeyOption,
    card_file: OutOption = None,
) -> None:
    """Draw a recovery key into --key (asks for its own passphrase) and print its card."""
    s = settings(ctx)
    warn_fast_kdf(s)
    key = recovery.create(key_file, name, passphrase(s, confirm=True), s.kdf)
    text = recovery.card(key)
    if card_file is not None:
        write_file(card_file, text)
    out = output(ctx)
    out.done(
        {
            "name": name,
            "recovery_key_id": key.officer_id.hex(),
            "key": str(key_file),
            "card": text.strip(),
            "out": str(card_file) if card_file is not None else None,
        },
        Text.assemble(
            ("ok", "green"),
            f" recovery key {name} ({fingerprint(key.officer_id)}) "
            f"sealed in {key_file}: keep it offline",
        ),
        Text(f"card written to {card_file}") if card_file is not None else Text(text.strip()),
        out.hint("next: give the card to the mission's founder (`mission create --recovery CARD`)"),
    )


@app.command()
def sign(
    ctx: typer.Context,
    change_file: Annotated[
        Path, typer.Argument(metavar="CHANGE", help="The roster-change file to sign.")
    ],
    key_file: KeyOption,
) -> None:
    """Sign a roster change with a recovery key (the file is updated in place)."""
    change = roster_change.RosterChange.decode(read_file(change_file, "a roster change"))
    key = recovery.unlock(key_file, passphrase(settings(ctx)))
    change = recovery.sign(change, key)
    write_file(change_file, change.encode())
    output(ctx).done(
        {"roster": change.describe(), "signatures": len(change.signatures)},
        Text.assemble(("ok", "green"), f" signed as headquarters: {change.describe()}"),
        Text("the officers who remain adopt it: `backchannel mission change adopt FILE`"),
    )
