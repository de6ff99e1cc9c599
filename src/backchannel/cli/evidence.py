"""``backchannel evidence``: the proofs of relay misbehaviour this device kept.

``list`` and ``export`` read the officer's home; ``verify`` needs nothing but
the files: anyone (a court, a newsroom, the other mission, the relay's
operator) can check a proof offline, with no key and no account.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backchannel.cli.context import open_client, read_file, write_file
from backchannel.cli.output import Text, output
from backchannel.client.api import evidence_from_text, evidence_relay, verify_misbehaviour
from backchannel.errors import ConfigError, RemoteProtocolError

app = typer.Typer(
    help="Proofs that a relay lied: list, export, verify offline.", no_args_is_help=True
)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Show the proofs of relay misbehaviour kept on this device."""
    with open_client(ctx) as client:
        blobs = client.relay_evidence()
        names = [name for name, _ in client.evidence_files()]
    items = [
        {"file": n, "proves": verify_misbehaviour(b)} for n, b in zip(names, blobs, strict=True)
    ]
    lines = [Text(f"{i['file']}: {i['proves']}", style="bold red") for i in items]
    output(ctx).done(
        {"evidence": items},
        *(lines or [Text("no proof of relay misbehaviour: no relay was caught lying")]),
    )


@app.command()
def export(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Where to write one file per proof.")],
) -> None:
    """Write each kept proof to its own text file, for anyone to verify."""
    with open_client(ctx) as client:
        files = client.evidence_files()
    if not directory.is_dir():
        raise ConfigError(f"no such directory {directory}; create it first")
    written = []
    for name, text in files:
        path = directory / name
        write_file(path, text)
        written.append(str(path))
    output(ctx).done(
        {"written": written},
        Text(f"{len(written)} proof(s) written to {directory}"),
        output(ctx).hint("check one anywhere with `backchannel evidence verify FILE`"),
    )


@app.command()
def verify(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Proof files written by `export`.")],
    relay_key: Annotated[
        str | None,
        typer.Option(
            "--relay-key",
            help="The relay's key fingerprint (64 hex digits, as `backchannel relay key` "
            "prints it, or a mission card states it): a proof about another key does not hold.",
        ),
    ] = None,
) -> None:
    """Check proofs of relay misbehaviour offline; exit 1 if any does not hold.

    A proof holds for the relay key inside it: anyone can make a key that
    contradicts itself. Name the relay's key with --relay-key, or compare the
    full fingerprint printed with each proof with the relay's.
    """
    expected = _fingerprint(relay_key) if relay_key is not None else None
    results = []
    for path in files:
        try:
            blob = evidence_from_text(read_file(path, "a proof file"))
            key = evidence_relay(blob).hex()
            line = verify_misbehaviour(blob)
            if expected is not None and key != expected:
                why = "it is about another relay key than the one named"
                results.append({"file": str(path), "holds": False, "relay_key": key, "reason": why})
                continue
            results.append({"file": str(path), "holds": True, "relay_key": key, "proves": line})
        except RemoteProtocolError as exc:
            results.append({"file": str(path), "holds": False, "reason": str(exc)})
    lines = [
        Text.assemble(
            ("holds", "green"), f" {r['file']}: {r['proves']} (relay key {r['relay_key']})"
        )
        if r["holds"]
        else Text.assemble(("does not hold", "red"), f" {r['file']}: {r['reason']}")
        for r in results
    ]
    hint = []
    if expected is None and any(r["holds"] for r in results):
        check = "a proof holds for the key inside it: check that the relay key above is the relay's"
        hint.append(output(ctx).hint(f"{check} (or pass --relay-key)"))
    output(ctx).done({"results": results}, *lines, *hint)
    if not all(r["holds"] for r in results):
        raise typer.Exit(1)


def _fingerprint(text: str) -> str:
    value = text.strip().replace(" ", "").lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ConfigError("a relay key fingerprint is 64 hex digits, as `relay key` prints it")
    return value
