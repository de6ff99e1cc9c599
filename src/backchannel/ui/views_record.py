"""The record: what every officer did, checked on this device, exported, and checked from a file.

The same as ``backchannel audit list / verify / export / verify --file`` on the
command line (``docs/spec/audit-v1.md``), for an officer at the desk or a
review board's clerk handed a record.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backchannel.client.api import verify_record
from backchannel.errors import BackchannelError, ConfigError
from backchannel.ui.desk import Desk
from backchannel.ui.security import Session
from backchannel.ui.web import action, attachment, desk_of, mission_page, page, render, slug

#: Entries shown on the page, newest first (the export holds every one).
SHOWN = 200
#: Largest record file accepted for a check.
MAX_RECORD = 64 * 1024 * 1024


def _entries(desk: Desk) -> tuple[list[dict[str, Any]], int]:
    c = desk.client
    names = {o.officer_id: o.name for s in c.mission().signed_chain() for o in s.roster.officers}
    entries = sorted(c.audit_entries(), key=lambda e: (e.at, e.seq), reverse=True)
    shown = [
        {
            "officer": names.get(e.officer_id, e.officer_id.hex()[:12]),
            "n": e.seq,
            "at": dt.datetime.fromtimestamp(e.at).strftime("%d %b %Y, %H:%M:%S"),
            "what": e.kind.name.lower().replace("_", " "),
            "note": e.note,
        }
        for e in entries[:SHOWN]
    ]
    return shown, len(entries)


@mission_page
async def record(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        entries, total = _entries(desk)
        problems = c.audit_verify()
        made = c.anchors_made()
        held = [
            {
                "peer": c.peer(mission_id).name,
                "count": len(anchors),
                "latest": anchors[-1].round,
            }
            for mission_id, anchors in c.peer_anchors().items()
        ]
    return render(
        request,
        session,
        "record.html",
        entries=entries,
        total=total,
        problems=problems,
        made=made[-1] if made else None,
        held=held,
    )


@page
async def export(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        text = c.export_record()
        name = slug(c.mission().name) + ".audit"
    return Response(text, media_type="application/json; charset=utf-8", headers=attachment(name))


async def _read(form: FormData, field: str, what: str) -> str:
    upload = form.get(field)
    if not isinstance(upload, UploadFile) or not upload.filename:
        return ""
    raw = await upload.read(MAX_RECORD + 1)
    if len(raw) > MAX_RECORD:
        raise ConfigError(f"that file is too large to be {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"that file is not {what}") from None


@action
async def check(request: Request, session: Session, form: FormData) -> str:
    text = await _read(form, "record_file", "an audit record")
    if not text:
        raise ConfigError("choose the record file to check")
    peer = await _read(form, "peer_file", "a peer mission's audit record")
    try:
        result = verify_record(text, [peer] if peer else [])
    except BackchannelError as exc:
        raise ConfigError(f"the file cannot be checked: {exc}") from None
    if result.problems:
        session.notes.append(("refused", f"The record does not hold: {len(result.problems)} "
                              "problem(s), each named below."))  # fmt: skip
        session.notes.extend(("refused", p) for p in result.problems)
    else:
        text = f"The record holds: {result.entries} entries, every chain intact"
        if result.messages:
            n = result.messages
            text += f"; {n} message{'s' if n > 1 else ''} signed and opened as recorded"
        if result.anchors:
            text += "; it opens the latest anchor the other mission's record holds"
        session.notes.append(("ok", text + "."))
    return "/record#check"


routes = [
    Route("/record", record),
    Route("/record/export", export),
    Route("/record/check", check, methods=["POST"]),
]
