"""The mail views: inbox and joint opening, writing, co-signing, what was sent."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backchannel.client.api import MessageKind, Payload, SendState
from backchannel.client.service import Client
from backchannel.errors import (
    ConfigError,
    NotEnoughShares,
    NotEnoughSignatures,
)
from backchannel.ui.desk import Desk
from backchannel.ui.security import Session
from backchannel.ui.text import said
from backchannel.ui.web import (
    action,
    desk_of,
    find,
    keeping,
    mission_page,
    officer_name,
    page,
    peer_names,
    render,
    when,
)

KINDS = {
    "note": (MessageKind.NOTE, ()),
    "meeting": (MessageKind.MEETING_REQUEST, ("when", "where")),
    "media": (MessageKind.MEDIA_REQUEST, ("outlet", "subject")),
}


def _payload_view(payload: Payload) -> dict[str, Any]:
    kind = next((k for k, (v, _) in KINDS.items() if v == payload.kind), "note")
    return {"kind": kind, "fields": list(payload.fields), "text": payload.text}


def _message_state(desk: Desk, item: Any) -> dict[str, Any]:
    k = desk.client.mission().roster.threshold
    if item.payload:
        return {"key": "opened", "label": "Opened", "have": k, "need": k}
    have = len(item.shares)
    if item.open_requested:
        label = f"Waiting for colleagues: {have} of {k} officers have joined"
        return {"key": "waiting", "label": label, "have": have, "need": k}
    return {"key": "sealed", "label": f"Sealed: {k} officers must open it together", "have": 0,
            "need": k}  # fmt: skip


# --- the inbox ------------------------------------------------------------------------


@mission_page
async def inbox(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        names = peer_names(desk)
        items = [
            {
                "id": i.message_id.hex(),
                "short": i.message_id.hex()[:8],
                "peer": names.get(i.channel_id, "?"),
                "state": _message_state(desk, i),
                "round": i.received_round,
            }
            for i in reversed(c.inbox())
        ]
        shares = _share_requests(desk)
        sent = [_draft_view(desk, c, d) for d in reversed(c.drafts())]
    return render(request, session, "inbox.html", items=items, shares=shares, sent=sent)


def _share_requests(desk: Desk) -> list[dict[str, Any]]:
    c = desk.client
    names = peer_names(desk)
    out = []
    for r in c.share_requests():
        out.append(
            {
                "id": r.request_id.hex(),
                "from": officer_name(desk, r.from_officer),
                "peer": names.get(r.channel_id, "?"),
                "message": r.message_id.hex(),
                "short": r.message_id.hex()[:8],
            }
        )
    return out


@page
async def message(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    hex_id = request.path_params["message_id"]
    async with desk.use() as c:
        item = find(c.inbox(), lambda i: i.message_id, hex_id)
        if item is None:
            raise ConfigError("unknown message; it may have been erased")
        state = _message_state(desk, item)
        content = _payload_view(c.read(item.message_id)) if item.payload else None
        view = {
            "id": hex_id,
            "short": hex_id[:8],
            "peer": peer_names(desk).get(item.channel_id, "?"),
            "state": state,
            "round": item.received_round,
            "deniable": item.deniable,
        }
    return render(request, session, "message.html", m=view, content=content)


@action
async def open_message(request: Request, session: Session, form: FormData) -> str:
    desk = desk_of(request)
    hex_id = request.path_params["message_id"]
    back = f"/inbox/{hex_id}"
    async with desk.use() as c:
        item = find(c.inbox(), lambda i: i.message_id, hex_id)
        if item is None:
            raise ConfigError("unknown message; it may have been erased")
        item = c.request_open(item.message_id)
        try:
            c.read(item.message_id)
            session.notes.append(("ok", "Opened together with your colleagues."))
        except NotEnoughShares as exc:
            session.notes.append(("refused", f"You cannot open it alone: {exc}."))
            desk.note(
                "A message could not be opened by one officer alone",
                "That is the two-person rule at work: a colleague approves the request "
                "on his own desk, and the message opens at the next rounds.",
            )
    return back


@action
async def approve_share(request: Request, session: Session, form: FormData) -> str:
    desk = desk_of(request)
    async with desk.use() as c:
        req = find(c.share_requests(), lambda r: r.request_id, request.path_params["request_id"])
        if req is None:
            raise ConfigError("that request is no longer waiting")
        c.approve_share(req.request_id)
        who = officer_name(desk, req.from_officer)
    session.notes.append(("ok", said("Your part of the key goes to {} in the next rounds.", who)))
    return "/inbox"


# --- writing ----------------------------------------------------------------------------


@mission_page
async def compose_form(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        channels = [
            {
                "id": rec.channel_id.hex(),
                "peer": c.peer(rec.peer_mission).name,
                "policy": rec.terms.policy.label,
            }
            for rec in c.channels()
        ]
    either = any(ch["policy"] == "either" for ch in channels)
    return render(request, session, "compose.html", channels=channels, either=either)


@keeping("channel", "authentication", "kind", "when", "where", "outlet", "subject", "text")
async def compose(request: Request, session: Session, form: FormData) -> str:
    desk = desk_of(request)
    kind_name = str(form.get("kind") or "note")
    if kind_name not in KINDS:
        raise ConfigError("choose a kind of message")
    kind, needed = KINDS[kind_name]
    fields = tuple((f, str(form.get(f) or "").strip()) for f in needed)
    if any(not v for _, v in fields):
        raise ConfigError(f"a {kind_name} needs: {', '.join(needed)}")
    text = str(form.get("text") or "")
    if not text.strip():
        raise ConfigError("write the message first")
    payload = Payload(kind, text, fields)  # refuses what the other end could not read
    async with desk.use() as c:
        rec = find(c.channels(), lambda r: r.channel_id, str(form.get("channel") or ""))
        if rec is None:
            raise ConfigError("choose the mission to write to")
        chosen = form.get("authentication")
        deniable = {"deniable": True, "record": False}.get(str(chosen)) if chosen else None
        draft = c.compose(rec.channel_id, payload, deniable=deniable)
    if draft.outgoing.state is SendState.QUEUED:
        # A contact's own message, or one to a contact where the mission's policy
        # lets one officer write alone.
        session.notes.append(("ok", "Sealed and signed by you; it goes out with the next rounds."))
    else:
        session.notes.append(
            ("ok", "Sealed and signed by you; your colleagues are asked to co-sign.")
        )
    return f"/sent/{draft.draft_id.hex()}"


def _draft_view(desk: Desk, c: Client, d: Any) -> dict[str, Any]:
    state = d.outgoing.state.value
    k = c.mission().roster.threshold
    msg = d.outgoing.message
    # A deniable draft that went out keeps the count of its signatures, not
    # the signatures (deniable-v1 §3).
    signed = max(len(msg.signatures) if msg is not None else 0, d.signers)
    pending = 0
    if state == "queued":
        pending = next(
            (ch["pending_cells"] for ch in c.status()["channels"]
             if ch["channel_id"] == d.channel_id.hex()),
            0,
        )  # fmt: skip
    steps = [
        ("Written, sealed and signed by you", True),
        (
            f"Co-signed: {min(signed, k)} of {k} signatures",
            state in ("cosigned", "queued", "delivered"),
        ),
        ("Queued for the next rounds", state in ("queued", "delivered")),
        ("Sent to the relay", state == "delivered" or (state == "queued" and pending == 0)),
        ("Delivered: the other mission's receipt came back", state == "delivered"),
    ]
    labels = {
        "sealed": f"Waiting for co-signature ({signed} of {k})",
        "queued": "Queued: leaving in the next rounds" if pending else "Sent: waiting for receipt",
        "delivered": "Delivered (receipt received)",
        "rejected": f"Withdrawn: {d.withdrawn}" if d.withdrawn else "Refused by a colleague",
        "cosigned": "Co-signed: leaves after the draft before it on this channel",
    }
    return {
        "id": d.draft_id.hex(),
        "short": d.draft_id.hex()[:8],
        "peer": peer_names(desk).get(d.channel_id, "?"),
        "state": state,
        "label": labels.get(state, state),
        "steps": steps,
        "created": when(d.created_at),
        "content": _payload_view(d.outgoing.payload),
        "seq": d.seq,
    }


@page
async def draft(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        d = find(c.drafts(), lambda d: d.draft_id, request.path_params["draft_id"])
        if d is None:
            raise ConfigError("unknown message")
        view = _draft_view(desk, c, d)
    return render(request, session, "draft.html", d=view)


@action
async def send_now(request: Request, session: Session, form: FormData) -> str:
    desk = desk_of(request)
    hex_id = request.path_params["draft_id"]
    async with desk.use() as c:
        d = find(c.drafts(), lambda d: d.draft_id, hex_id)
        if d is None:
            raise ConfigError("unknown message")
        if d.outgoing.on_its_way:
            session.notes.append(("ok", "Already on its way: nothing to do."))
            return f"/sent/{hex_id}"
        try:
            c.send_now(d.draft_id)
        except NotEnoughSignatures as exc:
            session.notes.append(("refused", f"Refused: you cannot send it alone. {exc}."))
            desk.note(
                "A message could not be sent by one officer alone",
                "That is the two-person rule at work: a colleague reads it on his own desk "
                "and co-signs; then it leaves by itself.",
            )
            return f"/sent/{hex_id}"
    session.notes.append(("ok", "Queued: it leaves in the next rounds."))
    return f"/sent/{hex_id}"


# --- co-signing --------------------------------------------------------------------------


@mission_page
async def cosign_queue(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        names = peer_names(desk)
        requests = []
        for r in c.cosign_requests():
            _, payload = c.show_cosign(r.request_id)
            requests.append(
                {
                    "id": r.request_id.hex(),
                    "from": officer_name(desk, r.from_officer),
                    "peer": names.get(r.channel_id, "?"),
                    "content": _payload_view(payload),
                    "deniable": r.deniable,
                }
            )
    return render(request, session, "cosign.html", requests=requests)


async def _decide(request: Request, session: Session, approve: bool) -> str:
    desk = desk_of(request)
    async with desk.use() as c:
        req = find(c.cosign_requests(), lambda r: r.request_id, request.path_params["request_id"])
        if req is None:
            raise ConfigError("that request is no longer waiting")
        if approve:
            c.approve_cosign(req.request_id)
        else:
            c.reject_cosign(req.request_id)
        who = officer_name(desk, req.from_officer)
    verb = "Co-signed" if approve else "Refused"
    session.notes.append(("ok", said(verb + "; {}'s desk learns it in the next rounds.", who)))
    return "/cosign"


@action
async def cosign_approve(request: Request, session: Session, form: FormData) -> str:
    return await _decide(request, session, True)


@action
async def cosign_reject(request: Request, session: Session, form: FormData) -> str:
    return await _decide(request, session, False)


@mission_page
async def sent(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        items = [_draft_view(desk, c, d) for d in reversed(c.drafts())]
    return render(request, session, "sent.html", sent=items)


routes = [
    Route("/inbox", inbox),
    Route("/inbox/{message_id:str}", message),
    Route("/inbox/{message_id:str}/open", open_message, methods=["POST"]),
    Route("/shares/{request_id:str}/approve", approve_share, methods=["POST"]),
    Route("/compose", compose_form),
    Route("/compose", compose, methods=["POST"]),
    Route("/sent", sent),
    Route("/sent/{draft_id:str}", draft),
    Route("/sent/{draft_id:str}/send", send_now, methods=["POST"]),
    Route("/cosign", cosign_queue),
    Route("/cosign/{request_id:str}/approve", cosign_approve, methods=["POST"]),
    Route("/cosign/{request_id:str}/reject", cosign_reject, methods=["POST"]),
]
