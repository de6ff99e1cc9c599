"""``backchannel audit``: the mission's audit log, as this device holds it.

``list`` shows every officer's entries, ``verify`` checks every chain (and,
with ``--file``, an exported record, offline, with nothing but the file), and
``export`` writes the record a review board can check.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated

import typer

from backchannel.cli.context import open_client, read_file, write_file
from backchannel.cli.output import Text, output
from backchannel.client.api import verify_record

app = typer.Typer(
    help="The mission's audit log: list, verify, export for a review board.",
    no_args_is_help=True,
)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Every officer's audit entries held on this device, in order."""
    with open_client(ctx) as client:
        names = {o.officer_id: o.name for s in client.mission().signed_chain()
                 for o in s.roster.officers}  # fmt: skip
        entries = client.audit_entries()
    items: list[dict[str, str | int]] = [
        {
            "officer": names.get(e.officer_id, e.officer_id.hex()[:12]),
            "number": e.seq,
            "at": datetime.datetime.fromtimestamp(e.at, datetime.UTC).isoformat(),
            "what": e.kind.name.lower().replace("_", " "),
            "about": e.subject.hex(),
            "note": e.note,
        }
        for e in entries
    ]
    lines = [
        Text(
            f"{i['officer']} #{i['number']} {i['at']} {i['what']} {str(i['about'])[:8]} {i['note']}"
        )
        for i in items
    ]
    output(ctx).done({"entries": items}, *(lines or [Text("no audit entries yet")]))


@app.command()
def verify(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="An exported record to check offline instead."),
    ] = None,
    peer_record: Annotated[
        list[Path] | None,
        typer.Option(
            "--peer-record",
            help="A peer mission's exported record: the latest anchor of this mission's "
            "audit log that it holds must be opened by --file (repeatable).",
        ),
    ] = None,
) -> None:
    """Check every officer's chain; exit 1 naming the entry where one breaks."""
    messages = anchors = 0
    if peer_record and file is None:
        raise typer.BadParameter("--peer-record checks an exported record: give --file too")
    if file is not None:
        peers = [read_file(p, "a peer mission's audit record") for p in peer_record or []]
        check = verify_record(read_file(file, "an audit record"), peers)
        count, messages, problems, anchors = check
    else:
        with open_client(ctx) as client:
            count, problems = len(client.audit_entries()), client.audit_verify()
    lines = [Text(f"broken: {p}", style="bold red") for p in problems]
    if not problems:
        signed = f"; {messages} messages signed and opened as recorded" if messages else ""
        signed += f"; opens the latest anchor {anchors} peer record(s) hold" if anchors else ""
        lines = [
            Text.assemble(("holds", "green"), f": {count} entries, every chain intact{signed}")
        ]
    doc = {
        "entries": count,
        "messages": messages,
        "anchors": anchors,
        "holds": not problems,
        "problems": problems,
    }
    output(ctx).done(doc, *lines)
    if problems:
        raise typer.Exit(1)


@app.command()
def export(
    ctx: typer.Context,
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the record.")],
) -> None:
    """Write the audit record for a review board: the roster and policy chains, every
    entry, and the messages this device sent or opened for the record, with their
    signatures and the key that opens each (so the file holds their text)."""
    with open_client(ctx) as client:
        text = client.export_record()
    write_file(out_file, text)
    output(ctx).done(
        {"written": str(out_file)},
        Text(f"audit record written to {out_file}"),
        output(ctx).hint("anyone can check it with `backchannel audit verify --file FILE`"),
    )
