"""``backchannel officer ...``: this device's officer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backchannel.cli.context import open_client, passphrase, settings, warn_fast_kdf, write_file
from backchannel.cli.output import Text, fingerprint, output
from backchannel.client.home import Home

app = typer.Typer(help="This device's officer: create it, show it, hand out its card.")

OutOption = Annotated[
    Path | None, typer.Option("--out", help="Write to this file instead of stdout.")
]


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="The officer's name, as colleagues know it.")],
) -> None:
    """Create the officer's keys and encrypted home (asks for a new passphrase)."""
    s = settings(ctx)
    warn_fast_kdf(s)
    home = Home.create(s.home, name, passphrase(s, confirm=True), s.kdf)
    try:
        oid = home.officer.officer_id
    finally:
        home.close()
    out = output(ctx)
    out.done(
        {"officer": name, "officer_id": oid.hex(), "home": str(s.home)},
        Text.assemble(("ok", "green"), " officer ", (name, "bold"), f" created in {s.home}"),
        Text(f"officer id {fingerprint(oid)}"),
        out.hint("next: `backchannel officer card --out FILE` for the mission's founder"),
    )


@app.command()
def card(ctx: typer.Context, out_file: OutOption = None) -> None:
    """Print (or write) the officer card the mission's founder needs."""
    with open_client(ctx) as client:
        text = client.officer_card().encode()
    emit_card(ctx, text, out_file)


def emit_card(ctx: typer.Context, text: str, out_file: Path | None) -> None:
    out = output(ctx)
    if out_file is None:
        out.done({"card": text.strip(), "out": None}, Text(text.strip()))
        return
    write_file(out_file, text)
    out.done({"card": text.strip(), "out": str(out_file)}, Text(f"card written to {out_file}"))


@app.command()
def show(ctx: typer.Context) -> None:
    """Show this officer and the mission it belongs to."""
    s = settings(ctx)
    with open_client(ctx) as client:
        me = client.officer
        mission = client.mission_or_none()
        runner = client.is_runner if mission else None
    doc = {
        "officer": me.name,
        "officer_id": me.officer_id.hex(),
        "home": str(s.home),
        "mission": mission.name if mission else None,
        "mission_id": mission.mission_id.hex() if mission else None,
        "runner": runner,
    }
    role = "runs the mission's desk device" if runner else "co-signs and co-opens"
    where = (
        Text.assemble("mission ", (mission.name, "bold"), f" ({role})")
        if mission
        else Text("no mission yet: see `backchannel mission --help`")
    )
    output(ctx).done(
        doc,
        Text.assemble("officer ", (me.name, "bold")),
        Text(f"officer id {fingerprint(me.officer_id)}"),
        Text(f"home {s.home}"),
        where,
    )


@app.command("rotate-key")
def rotate_key(ctx: typer.Context) -> None:
    """Start a new epoch (decryption) key; colleagues learn it at their next sync.

    Hand the peer a fresh `backchannel mission card` afterwards: its senders
    then seal to the new key.
    """
    with open_client(ctx) as client:
        cert = client.rotate_epoch_key()
    out = output(ctx)
    out.done(
        {"epoch": cert.epoch},
        Text.assemble(("ok", "green"), f" epoch key {cert.epoch} is now current"),
        out.hint("next: `backchannel sync`, then give the peer a new `backchannel mission card`"),
    )


@app.command("erase-keys")
def erase_keys(
    ctx: typer.Context,
    keep: Annotated[int, typer.Option("--keep", help="How many newest epoch keys to keep.")] = 1,
) -> None:
    """Erase old epoch keys for good: what was sealed to them can no longer be opened here."""
    with open_client(ctx) as client:
        erased = client.erase_epoch_keys(keep)
    output(ctx).done(
        {"erased": erased, "kept": keep},
        Text.assemble(("ok", "green"), f" erased {erased} old epoch key(s); kept {keep}"),
    )
