"""The public intake on the desk: the queue, one request, triage, answers.

Every action writes an audit entry on this device; colleagues' desks show it
after the next rounds (``docs/intake.md``). An answer goes out once k
officers of the roster approved the same text.
"""

from __future__ import annotations

import functools
from typing import Any

import segno
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backchannel.client.api import TO_TRIAGE
from backchannel.errors import ConfigError
from backchannel.ui.security import Session
from backchannel.ui.web import action, desk_of, mission_page, render, when

STATES = {
    "new": "New",
    "assigned": "Assigned",
    "answered": "Answered",
    "ignored": "Ignored",
    "blocked": "Blocked",
}
KINDS = {
    "interview": "Interview request",
    "media-tour": "Media-tour request",
    "meeting": "Meeting request",
    "other": "Other request",
}


def _view(item: Any) -> dict[str, Any]:
    return {
        "number": item.number,
        "id": item.request_id.hex(),
        "kind": KINDS.get(item.kind, item.kind),
        "state": item.state,
        "state_label": (
            f"Same reply code as request {item.duplicate_of}: answer that one"
            if item.state == "duplicate"
            else STATES.get(item.state, item.state)
        ),
        "subject": item.subject or "(no subject)",
        "body": item.body,
        "contact": item.contact,
        "received": when(item.received_at),
        "assigned_to": item.assigned_to,
        "tags": list(item.tags),
        "notes": list(item.notes),
        "answer": item.answer,
        "approvals": list(item.approvals),
        "needed": item.needed,
        "sent": item.sent,
        "proposals": [
            {"text": p.text, "approvals": list(p.approvals), "id": p.answer_id.hex()}
            for p in item.proposals
        ],
    }


#: Requests on one page of the queue, newest first.
PAGE_SIZE = 50
#: The queue's views: the states each shows (None: every state), and its name.
VIEWS: dict[str, tuple[frozenset[str] | None, str]] = {
    "all": (None, "All"),
    "open": (TO_TRIAGE, "To triage"),
    "answered": (frozenset({"answered"}), "Answered"),
    "closed": (frozenset({"ignored", "blocked", "duplicate"}), "Ignored, blocked or duplicate"),
}


def _number(text: str | None, default: int) -> int:
    """``text`` as a page number: ASCII digits only (``int`` takes ``²`` and ``-1``)."""
    if text is None or not (text.isascii() and text.isdecimal()) or len(text) >= 10:
        return default
    return int(text)


@functools.lru_cache(maxsize=8)
def _qr(url: str) -> str:
    """The intake page's address as a QR code (the queue refreshes every two seconds)."""
    return str(segno.make(url, error="l").svg_data_uri(scale=2, dark="#111", light="#fff"))


@mission_page
async def queue(request: Request, session: Session) -> Response:
    """The requests, newest first, a page at a time: a flood leaves thousands."""
    desk = desk_of(request)
    show = request.query_params.get("show", "all")
    if show not in VIEWS:
        show = "all"
    async with desk.use() as c:
        every = c.intake_items()
        card = c.intake_card()
        is_open = c.intake_is_open()
    counts = {
        name: sum(1 for i in every if states is None or i.state in states)
        for name, (states, _) in VIEWS.items()
    }
    states = VIEWS[show][0]
    chosen = [i for i in reversed(every) if states is None or i.state in states]
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    page = min(max(_number(request.query_params.get("page"), 1), 1), pages)
    items = [_view(i) for i in chosen[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]]
    views = [(name, label, counts[name]) for name, (_, label) in VIEWS.items()]
    session.intake_view = (show, page)
    return render(
        request, session, "intake.html", items=items, is_open=is_open,
        page_url=card.page_url(), fingerprint=card.fingerprint(), qr=_qr(card.page_url()),
        show=show, views=views, page=page, pages=pages, shown=len(chosen),
    )  # fmt: skip


@mission_page
async def one(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        item = c.intake_item(str(request.path_params["number"]))
        officers = [o.name for o in c.mission().roster.officers]
        me = c.officer.name
    show, page = session.intake_view
    return render(
        request, session, "intake_request.html", r=_view(item), officers=officers, me=me,
        back_to=f"/intake?show={show}&page={page}",
    )  # fmt: skip


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"the {name} is empty")
    return value


def _triage(verb: str, done: str) -> Any:
    async def act(request: Request, session: Session, form: FormData) -> str:
        desk = desk_of(request)
        number = str(request.path_params["number"])
        async with desk.use() as c:
            if verb == "assign":
                c.intake_assign(number, _text(form, "officer"))
            elif verb == "tag":
                c.intake_tag(number, _text(form, "tag"))
            elif verb == "note":
                c.intake_note(number, _text(form, "note"))
            elif verb == "answer":
                c.intake_answer(number, _text(form, "answer"))
            elif verb == "approve":
                c.intake_approve(number, _text(form, "answer"))
            elif verb == "ignore":
                c.intake_ignore(number)
            elif verb == "block":
                c.intake_block(number)
        session.notes.append(("ok", done))
        return f"/intake/{number}"

    act.__name__ = f"intake_{verb}"
    # What the officer wrote stays in the form if it is refused (not an answer's id).
    return action(act, frozenset({verb} & {"tag", "note", "answer"}))


@action
async def switch(request: Request, session: Session, form: FormData) -> str:
    is_open = form.get("open") == "1"
    async with desk_of(request).use() as c:
        c.intake_set_open(is_open)
    said = (
        "Intake opened: the relay learns it in the next round."
        if is_open
        else "Intake closed: from the next round the relay refuses requests and withholds "
        "the answers already sent, until it is opened again."
    )
    session.notes.append(("ok", said))
    return "/intake"


_LATER = "your colleagues see it after the next rounds"
routes = [
    Route("/intake", queue),
    Route("/intake/switch", switch, methods=["POST"]),
    Route("/intake/{number:int}", one),
    Route("/intake/{number:int}/assign", _triage("assign", f"Assigned; {_LATER}."),
          methods=["POST"]),
    Route("/intake/{number:int}/tag", _triage("tag", f"Tagged; {_LATER}."), methods=["POST"]),
    Route("/intake/{number:int}/note", _triage("note", f"Noted; {_LATER}."), methods=["POST"]),
    Route("/intake/{number:int}/answer",
          _triage("answer", f"Answer proposed and approved by you; {_LATER}."),
          methods=["POST"]),
    Route("/intake/{number:int}/approve",
          _triage("approve", "Approved: once enough officers have, it goes out by itself."),
          methods=["POST"]),
    Route("/intake/{number:int}/ignore",
          _triage("ignore", "Ignored: nothing is sent; the submitter learns nothing."),
          methods=["POST"]),
    Route("/intake/{number:int}/block",
          _triage("block", "Blocked: later requests from the same contact are filed as blocked."),
          methods=["POST"]),
]  # fmt: skip
