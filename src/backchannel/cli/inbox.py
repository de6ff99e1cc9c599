"""Receiving under the two-person rule: ``inbox``, ``open``, ``read`` and ``share ...``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from backchannel.cli.context import open_client
from backchannel.cli.messages import channel_peers, officer_name, payload_answer
from backchannel.cli.output import Text, output, short, table
from backchannel.client.records import InboxRecord

MessageArg = Annotated[
    str, typer.Argument(metavar="MESSAGE_ID", help="The message's id prefix (see `inbox`).")
]


def _state(item: InboxRecord) -> str:
    if item.payload:
        return "opened"
    return "open requested" if item.open_requested else "sealed"


_DENIABLE = (
    "deniable: no signature; the other side could have written it itself, so it proves "
    "nothing to anyone else"
)


def _doc(
    item: InboxRecord, peers: dict[bytes, str], threshold: int, deniable: bool
) -> dict[str, Any]:
    return {
        "message_id": item.message_id.hex(),
        "peer": peers.get(item.channel_id, "?"),
        "received_round": item.received_round,
        "state": _state(item),
        "shares": len(item.shares),
        "threshold": threshold,
        "deniable": deniable,
    }


def inbox(ctx: typer.Context) -> None:
    """List the messages received; each needs k officers to open."""
    with open_client(ctx) as client:
        peers = channel_peers(client)
        k = client.mission().roster.threshold
        docs = [_doc(i, peers, k, i.deniable) for i in client.inbox()]
    t = table("message", "from", "round", "state")
    for d in docs:
        state = d["state"]
        if state == "open requested":
            state += f" ({d['shares']} of {k} shares)"
        if d["deniable"]:
            state += ", deniable (no signature)"
        t.add_row(d["message_id"][:8], Text(d["peer"]), str(d["received_round"]), state)
    output(ctx).done({"messages": docs}, t if docs else Text("no messages"))


def open_message(ctx: typer.Context, message: MessageArg) -> None:
    """Contribute your share of the message's key and ask your colleagues for theirs."""
    with open_client(ctx) as client:
        item = client.request_open(client.inbox_item(message).message_id)
        asked = 0 if item.payload else client.mission().roster.n - 1
    done = bool(item.payload)
    output(ctx).done(
        {"message_id": item.message_id.hex(), "state": _state(item), "asked": asked},
        Text.assemble(("ok", "green"), f" your share of {short(item.message_id)} is in"),
        Text(
            f"opened: `backchannel read {short(item.message_id)}`"
            if done
            else f"asked {asked} colleague(s) for theirs; `backchannel sync` sends the request"
        ),
    )


def read(ctx: typer.Context, message: MessageArg) -> None:
    """Print a message once k officers have opened it together."""
    with open_client(ctx) as client:
        item = client.inbox_item(message)
        payload = client.read(item.message_id)
        peer = channel_peers(client).get(item.channel_id, "?")
        deniable = item.deniable
    body, lines = payload_answer(payload)
    output(ctx).done(
        {"message_id": item.message_id.hex(), "peer": peer, "deniable": deniable} | body,
        Text.assemble(f"message {short(item.message_id)} from ", (peer, "bold")),
        *([Text(_DENIABLE, style="yellow")] if deniable else []),
        *lines,
    )


def forget(ctx: typer.Context, message: MessageArg) -> None:
    """Erase a message from this device for good (its text, shares and ciphertext)."""
    with open_client(ctx) as client:
        item = client.inbox_item(message)
        client.forget(item.message_id)
    output(ctx).done(
        {"message_id": item.message_id.hex(), "forgotten": True},
        Text.assemble(
            ("ok", "green"), f" message {short(item.message_id)} erased from this device"
        ),
    )


share_app = typer.Typer(help="Your colleagues' requests for your share of a message's key.")


@share_app.command("list")
def share_list(ctx: typer.Context) -> None:
    """List the colleagues' requests to open a message with your share."""
    with open_client(ctx) as client:
        docs = [
            {
                "request_id": r.request_id.hex(),
                "from": officer_name(client, r.from_officer),
                "message_id": r.message_id.hex(),
            }
            for r in client.share_requests()
        ]
    t = table("request", "from", "message")
    for d in docs:
        t.add_row(d["request_id"][:8], Text(d["from"]), d["message_id"][:8])
    output(ctx).done(
        {"requests": docs},
        t if docs else Text("no share requests (run `backchannel sync` to fetch them)"),
    )


@share_app.command("approve")
def share_approve(
    ctx: typer.Context,
    request: Annotated[str, typer.Argument(metavar="ID", help="The request's id prefix.")],
) -> None:
    """Send your share of the message's key to the colleague who asked."""
    with open_client(ctx) as client:
        req = client.find_share_request(request)
        client.approve_share(req.request_id)
        who = officer_name(client, req.from_officer)
    output(ctx).done(
        {"request_id": req.request_id.hex(), "approved": True},
        Text.assemble(("ok", "green"), " share for ", (who, "bold"), " approved"),
        Text("`backchannel sync` sends it"),
    )
