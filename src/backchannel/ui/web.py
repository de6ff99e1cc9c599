"""What every view shares: templates, the gate's checks, redirects, plain-word helpers."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import escape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from backchannel.client.api import TO_TRIAGE
from backchannel.errors import BackchannelError
from backchannel.ui.desk import Desk
from backchannel.ui.security import Gate, Session
from backchannel.ui.text import environment

HERE = Path(__file__).parent
#: Every value a template renders has its invisible controls shown (:mod:`backchannel.ui.text`).
templates = Jinja2Templates(env=environment(HERE / "templates"))

Page = Callable[[Request, Session], Awaitable[Response]]
Action = Callable[[Request, Session, FormData], Awaitable[str]]
Endpoint = Callable[[Request], Awaitable[Response]]


def desk_of(request: Request) -> Desk:
    desk: Desk = request.app.state.desk
    return desk


def gate_of(request: Request) -> Gate:
    gate: Gate = request.app.state.gate
    return gate


def refreshing(request: Request) -> bool:
    """A page refreshing itself (htmx's timed ``hx-get``), not the officer at work.

    htmx names every request it makes (``HX-Request``) and those of a link or
    form the officer used (``HX-Boosted``); the rest are the pages' timers.
    """
    h = request.headers
    return h.get("hx-request") == "true" and h.get("hx-boosted") != "true"


def session_of(request: Request) -> Session:
    """The request's session (a refresh does not keep it from idling out)."""
    return gate_of(request).session(request.cookies, active=not refreshing(request))


def page(fn: Page) -> Endpoint:
    """A GET view: only for the signed-in browser."""

    async def endpoint(request: Request) -> Response:
        return await fn(request, session_of(request))

    return endpoint


def mission_page(fn: Page) -> Endpoint:
    """A GET view of a device that has a mission; before it has one, a page saying how."""

    async def endpoint(request: Request) -> Response:
        session = session_of(request)
        if desk_of(request).client.mission_or_none() is None:
            return render(request, session, "no_mission.html")
        return await fn(request, session)

    return endpoint


def action(fn: Action, keep: frozenset[str] = frozenset()) -> Endpoint:
    """A POST: the session, the desk's own origin and the CSRF token, then the action.

    The action returns where to go next; a refusal of the client (the two-person
    rule, an unknown id) is shown on the page the form came from, in the
    officer's words, with what he had written in the fields ``keep`` names
    still in the form.
    """

    async def endpoint(request: Request) -> Response:
        gate = gate_of(request)
        session = gate.session(request.cookies)
        form = await request.form()
        token = form.get("csrf")
        gate.check_post(session, request.headers, token if isinstance(token, str) else "")
        try:
            target = await fn(request, session, form)
        except BackchannelError as exc:
            session.notes.append(("refused", str(exc)))
            target = local_path(form.get("back"), "/")
            fields = {k: v for k, v in form.items() if k in keep and isinstance(v, str)}
            session.kept = (target.split("#")[0], fields)
        return redirect(request, target)

    return endpoint


def keeping(*fields: str) -> Callable[[Action], Endpoint]:
    """:func:`action`, keeping ``fields`` in the form when the action is refused."""
    return lambda fn: action(fn, frozenset(fields))


#: A path on this desk: what its own forms name (ids in hex, numbers, an anchor).
_LOCAL = re.compile(r"/(?!/)[A-Za-z0-9/_.#-]*")


def local_path(value: object, default: str) -> str:
    """A path on this desk (never another site: browsers read ``/\\host`` as ``//host``)."""
    if isinstance(value, str) and _LOCAL.fullmatch(value):
        return value
    return default


def redirect(request: Request, target: str) -> Response:
    if request.headers.get("hx-request"):
        # htmx follows with a whole page load.
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def render(
    request: Request, session: Session | None, name: str, status: int = 200, **context: Any
) -> HTMLResponse:
    """Render a page; without the session (a refusal), one that names nobody."""
    if session is None:
        bare = {"request": request, "csrf": "", "notes": [], "officer": None, **context}
        return templates.TemplateResponse(request, name, bare, status_code=status)
    desk = desk_of(request)
    notes: list[tuple[str, str]] = []
    kept: dict[str, str] = {}
    if not refreshing(request):  # a refresh shows only its live part: keep them for the page
        notes, session.notes = session.notes, []
        if session.kept is not None and session.kept[0] == request.url.path:
            # The officer's own words, back in the form he corrects as he wrote them.
            kept = {k: escape(v) for k, v in session.kept[1].items()}
        session.kept = None
    client = desk.client
    mission = client.mission_or_none()
    counts = {"cosign": 0, "shares": 0, "alarms": 0, "intake": 0}
    if mission is not None:
        counts = {
            "cosign": len(client.cosign_requests()),
            "shares": len(client.share_requests()),
            "alarms": alarm_count(desk),
            "intake": sum(i.state in TO_TRIAGE for i in client.intake_items()),
        }
    ctx = {
        "request": request,
        "csrf": session.csrf,
        "notes": notes,
        "officer": client.officer.name,
        "mission": mission.name if mission else None,
        "runner": client.is_runner if mission else False,
        "counts": counts,
        "path": request.url.path,
        "kept": kept,
        **context,
    }
    return templates.TemplateResponse(request, name, ctx, status_code=status)


def slug(name: str) -> str:
    """``name`` as part of a file name: its letters and digits, in any script."""
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-") or "mission"


def attachment(name: str) -> dict[str, str]:
    """The header that makes ``name`` a download, whatever the letters of its name.

    A header is Latin-1 at most: a name in another script goes in ``filename*``
    (RFC 6266), and a plain ASCII one beside it for browsers that want one.
    """
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    plain = re.sub(r"[^A-Za-z0-9_]+", "-", stem).strip("-") or "backchannel"
    plain += "." + re.sub(r"[^A-Za-z0-9]+", "", ext) if ext else ""
    header = f'attachment; filename="{plain}"'
    if plain != name:
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return {"Content-Disposition": header}


def alarm_count(desk: Desk) -> int:
    c = desk.client
    channel_alarms = sum(len(rec.alarms) for rec in c.channels())
    return len(c.relay_alarms()) + channel_alarms + len(c.officer_alarms()) + len(desk.events)


def when(ts: float | None) -> str:
    if ts is None:
        return "not yet"
    return dt.datetime.fromtimestamp(ts).strftime("%d %b %Y, %H:%M:%S")


def grouped(hex_or_digits: str, size: int = 4) -> str:
    s = "".join(hex_or_digits.split())
    return " ".join(s[i : i + size] for i in range(0, len(s), size))


def officer_name(desk: Desk, officer_id: bytes) -> str:
    roster = desk.client.mission().roster
    return roster.officer(officer_id).name if roster.contains(officer_id) else "an officer"


def peer_names(desk: Desk) -> dict[bytes, str]:
    c = desk.client
    return {rec.channel_id: c.peer(rec.peer_mission).name for rec in c.channels()}


def find(items: list[Any], key: Callable[[Any], bytes], hex_id: str) -> Any:
    for item in items:
        if key(item).hex() == hex_id:
            return item
    return None
