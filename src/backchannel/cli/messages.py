"""Sending under the two-person rule: ``compose``, ``send``, ``drafts`` and ``cosign ...``."""

from __future__ import annotations

import datetime as dt
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import RenderableType

from backchannel.cli.context import open_client, read_file, warn_argv
from backchannel.cli.output import Text, output, short, table
from backchannel.cli.peer import PeerArg
from backchannel.client.api import REQUIRED_FIELDS, MessageKind, Payload, SendState
from backchannel.client.records import CosignRequest
from backchannel.client.service import Client
from backchannel.errors import ConfigError, DecodeError


class Kind(StrEnum):
    note = "note"
    meeting = "meeting"
    media = "media"


_KINDS = {
    Kind.note: MessageKind.NOTE,
    Kind.meeting: MessageKind.MEETING_REQUEST,
    Kind.media: MessageKind.MEDIA_REQUEST,
}
_NAMES = {v: k.value for k, v in _KINDS.items()}


def kind_name(kind: MessageKind) -> str:
    return _NAMES.get(kind, kind.name.lower())


def payload_answer(payload: Payload) -> tuple[dict[str, Any], list[RenderableType]]:
    """A message's full content, as JSON and as lines (plain text, never markup)."""
    doc = {"kind": kind_name(payload.kind), "fields": dict(payload.fields), "text": payload.text}
    lines: list[RenderableType] = [Text(f"kind: {doc['kind']}")]
    lines += [Text(f"{k}: {v}") for k, v in payload.fields]
    lines += [Text(""), Text(payload.text)]
    return doc, lines


def officer_name(client: Client, officer_id: bytes) -> str:
    roster = client.mission().roster
    if roster.contains(officer_id):
        return roster.officer(officer_id).name
    return short(officer_id)


def channel_peers(client: Client) -> dict[bytes, str]:
    return {c.channel_id: client.peer(c.peer_mission).name for c in client.channels()}


def message_text(text: str | None, file: Path | None) -> str:
    """The message from --file, stdin (``--text -``, or a pipe), $EDITOR, or --text (warned)."""
    if text is not None and file is not None:
        raise ConfigError("give the text once: --text or --file")
    if file is not None:
        body = read_file(file, "a text file")
    elif text == "-" or (text is None and not sys.stdin.isatty()):
        body = sys.stdin.read()
    elif text is not None:
        warn_argv("the message text", "give it with --file, on stdin (--text -) or in $EDITOR")
        body = text
    elif os.environ.get("VISUAL") or os.environ.get("EDITOR"):
        # click.edit writes a private temporary file (0600) and removes it afterwards.
        body = click.edit("", extension=".txt", require_save=True) or ""
    else:
        raise ConfigError("no text: give --file PATH, pipe it on stdin, or set $EDITOR")
    if not body.strip():
        raise ConfigError("the message is empty; nothing was drafted")
    return body


def compose(
    ctx: typer.Context,
    peer: PeerArg,
    text: Annotated[
        str | None,
        typer.Option(
            "--text",
            help="The message text, or - for stdin. Prefer --file, stdin or $EDITOR: "
            "a command line is visible to other users of the machine.",
        ),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Read the message text from this file.")
    ] = None,
    kind: Annotated[Kind, typer.Option("--kind", help="What kind of message.")] = Kind.note,
    deniable: Annotated[
        bool | None,
        typer.Option(
            "--deniable/--for-the-record",
            help="On a channel whose policy is 'either': a MAC instead of signatures, or "
            "signatures (default: as the channel's policy says).",
        ),
    ] = None,
    when: Annotated[str | None, typer.Option("--when", help="Meeting: when.")] = None,
    where: Annotated[str | None, typer.Option("--where", help="Meeting: where.")] = None,
    outlet: Annotated[str | None, typer.Option("--outlet", help="Media: the outlet.")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Media: the subject.")] = None,
) -> None:
    """Seal and sign a draft on the desk device, and ask the colleagues to co-sign it.

    The text comes from --file, from stdin (--text -, or piped), else from $EDITOR.
    """
    body = message_text(text, file)
    given = (("when", when), ("where", where), ("outlet", outlet), ("subject", subject))
    missing = [f for f in REQUIRED_FIELDS[_KINDS[kind]] if dict(given).get(f) is None]
    if missing:
        options = ", ".join(f"--{f}" for f in missing)
        raise ConfigError(f"a {kind} needs {options}")
    try:
        payload = Payload(_KINDS[kind], body, tuple((k, v) for k, v in given if v is not None))
    except DecodeError as exc:
        raise ConfigError(str(exc)) from None
    with open_client(ctx) as client:
        rec = client.channel_for(peer)
        draft = client.compose(rec.channel_id, payload, deniable=deniable)
        peer_name = client.peer(rec.peer_mission).name
        alone = draft.outgoing.state is SendState.QUEUED  # no co-signature needed
        asked = 0 if alone else client.mission().roster.n - 1
    nxt = (
        "it goes out with the next rounds (`backchannel sync`)"
        if alone
        else f"asked {asked} colleague(s) to co-sign; `backchannel sync` sends the request"
    )
    output(ctx).done(
        {
            "draft_id": draft.draft_id.hex(),
            "peer": peer_name,
            "kind": kind.value,
            "state": draft.outgoing.state.value,
            "cosigners_asked": asked,
        },
        Text.assemble(
            ("ok", "green"),
            f" draft {short(draft.draft_id)} to ",
            (peer_name, "bold"),
            " sealed and signed by you",
        ),
        Text(nxt),
    )


def send(
    ctx: typer.Context,
    draft: Annotated[
        str, typer.Argument(metavar="DRAFT", help="The draft's id prefix (see `drafts`).")
    ],
) -> None:
    """Queue a co-signed draft for the next rounds (refused without k signatures)."""
    with open_client(ctx) as client:
        found = client.find_draft(draft)
        queued = client.send_now(found.draft_id)
    state = queued.outgoing.state.value
    if found.outgoing.on_its_way:
        # Sent before: nothing to do (and nothing a colleague is told of).
        output(ctx).done(
            {"draft_id": queued.draft_id.hex(), "state": state},
            Text.assemble(("ok", "green"), f" draft {short(queued.draft_id)} already {state}"),
        )
        return
    output(ctx).done(
        {"draft_id": queued.draft_id.hex(), "state": state},
        Text.assemble(("ok", "green"), f" draft {short(queued.draft_id)} queued"),
        Text("it leaves in the next rounds: `backchannel sync` or `backchannel run`"),
    )


def drafts(ctx: typer.Context) -> None:
    """List this device's drafts and where each one stands."""
    with open_client(ctx) as client:
        peers = channel_peers(client)
        items = client.drafts()
    docs: list[dict[str, Any]] = []
    t = table("draft", "to", "kind", "state", "created (UTC)")
    for d in items:
        peer, kind, state = (
            peers.get(d.channel_id, "?"),
            kind_name(d.outgoing.payload.kind),
            d.outgoing.state.value,
        )
        doc = {
            "draft_id": d.draft_id.hex(),
            "peer": peer,
            "kind": kind,
            "state": state,
            "seq": d.seq,
            "created_at": d.created_at,
        }
        if d.withdrawn:
            doc["withdrawn"] = d.withdrawn
            state = "withdrawn"
        docs.append(doc)
        when = dt.datetime.fromtimestamp(d.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M")
        t.add_row(short(d.draft_id), Text(peer), kind, state, when)
    output(ctx).done({"drafts": docs}, t if docs else Text("no drafts"))


# --- co-signing -------------------------------------------------------------------

cosign_app = typer.Typer(help="Co-sign the desk device's drafts: list, show, approve, reject.")
RequestArg = Annotated[str, typer.Argument(metavar="ID", help="The request's id prefix.")]


def _request_doc(client: Client, req: CosignRequest, peers: dict[bytes, str]) -> dict[str, Any]:
    return {
        "request_id": req.request_id.hex(),
        "from": officer_name(client, req.from_officer),
        "peer": peers.get(req.channel_id, "?"),
        "draft_id": req.draft_id.hex(),
        "deniable": req.deniable,
    }


@cosign_app.command("list")
def cosign_list(ctx: typer.Context) -> None:
    """List the drafts waiting for your co-signature."""
    with open_client(ctx) as client:
        peers = channel_peers(client)
        docs = [_request_doc(client, r, peers) for r in client.cosign_requests()]
    t = table("request", "from", "to")
    for d in docs:
        t.add_row(d["request_id"][:8], Text(d["from"]), Text(d["peer"]))
    output(ctx).done(
        {"requests": docs},
        t if docs else Text("nothing to co-sign (run `backchannel sync` to fetch requests)"),
    )


@cosign_app.command("show")
def cosign_show(ctx: typer.Context, request: RequestArg) -> None:
    """Show the full plaintext of a draft: read it before you approve."""
    with open_client(ctx) as client:
        req = client.find_cosign(request)
        _, payload = client.show_cosign(req.request_id)
        doc = _request_doc(client, req, channel_peers(client))
    body, lines = payload_answer(payload)
    output(ctx).done(
        doc | body,
        Text.assemble(
            "draft from ",
            (doc["from"], "bold"),
            " to ",
            (doc["peer"], "bold"),
            " (checked: the sealed message holds exactly this)",
        ),
        Text(
            "to be sent deniably: no signature leaves the mission; the other side could deny "
            "having received it from us, and we could deny sending it"
            if doc["deniable"]
            else "to be sent for the record: it carries the officers' signatures"
        ),
        *lines,
    )


def _decide(ctx: typer.Context, request: str, approve: bool) -> None:
    with open_client(ctx) as client:
        req = client.find_cosign(request)
        if approve:
            client.approve_cosign(req.request_id)
        else:
            client.reject_cosign(req.request_id)
    verb = "approved" if approve else "rejected"
    output(ctx).done(
        {"request_id": req.request_id.hex(), "approved": approve},
        Text.assemble(("ok", "green"), f" {verb} draft request {short(req.request_id)}"),
        Text("`backchannel sync` takes your answer to the desk device"),
    )


@cosign_app.command("approve")
def cosign_approve(ctx: typer.Context, request: RequestArg) -> None:
    """Co-sign the draft (after `cosign show`)."""
    _decide(ctx, request, True)


@cosign_app.command("reject")
def cosign_reject(ctx: typer.Context, request: RequestArg) -> None:
    """Refuse to co-sign the draft; the desk device is told."""
    _decide(ctx, request, False)
