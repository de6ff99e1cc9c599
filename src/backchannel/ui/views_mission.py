"""The mission views: channels, alarms and evidence, the roster, pairing and the safety number."""

from __future__ import annotations

import re
from typing import Any

import segno
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backchannel.client.api import (
    DEFAULT_LAG_SECONDS,
    NO_FALLBACK,
    NO_WITNESSES,
    FallbackRelay,
    Policy,
    WitnessRule,
    evidence_kind,
)
from backchannel.client.policy import fallback_asked, witness_rule
from backchannel.errors import ConfigError
from backchannel.ui.desk import Desk
from backchannel.ui.security import Session
from backchannel.ui.text import said
from backchannel.ui.web import (
    action,
    attachment,
    desk_of,
    find,
    grouped,
    keeping,
    mission_page,
    page,
    render,
    slug,
    when,
)

#: Largest card file accepted (cards are a few kilobytes).
MAX_CARD = 256 * 1024


def _channels(desk: Desk) -> list[dict[str, Any]]:
    c = desk.client
    out = []
    for ch in c.status()["channels"]:
        out.append(
            {
                **ch,
                "short": ch["channel_id"][:8],
                "ok": not ch["alarms"],
            }
        )
    return out


@mission_page
async def channels(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        items = _channels(desk)
        st = c.status()
        info = desk.info
    return render(
        request,
        session,
        "channels.html",
        channels=items,
        rounds=info.rounds,
        last_round=when(info.last_at),
        relay_error=info.relay_error,
        waiting=st["waiting_cells"],
        waiting_objects=st["waiting_objects"],
        round_seconds=desk.round_seconds or c.round_seconds(),
    )


# --- alarms ------------------------------------------------------------------------------------


#: What each kind of proof shows, in plain words.
LIES = {
    "fork": "it showed two different histories of its log",
    "divergence": "it showed two histories of its log that disagree",
    "rewind": "it went back to an older, shorter log after showing a longer one",
    "drop": "it hid a message it had stored",
    "slot conflict": "it stored two different messages in one place",
}


def _lie(text: str) -> str | None:
    kind = re.search(r": (fork|divergence|rewind|drop|slot conflict): ", text)
    return kind.group(1) if kind else None


def _relay_alarm(text: str) -> dict[str, str]:
    proved = "proof of misbehaviour kept" in text
    kind = _lie(text)
    title = "The relay answered wrongly"
    if proved:
        title = "The relay was caught lying" + (f": {LIES[kind]}" if kind else "")
    return {
        "title": title,
        "advice": (
            "It is proven. Export the evidence below and send it to your headquarters "
            "and to the other mission: anyone can check it offline. Until they answer, "
            "send nothing that must not be delayed or lost."
            if proved
            else "Nothing is proven yet. If this repeats, tell your headquarters; "
            "the rounds go on and nothing is lost."
        ),
        "detail": text,
    }


@mission_page
async def alarms(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        relay = [_relay_alarm(a) for a in c.relay_alarms()]
        channel = [
            {
                "title": said(
                    "Something was wrong on the channel with {}", c.peer(rec.peer_mission).name
                ),
                "advice": "Check with the other mission on a channel you trust; the rounds go on.",
                "detail": a,
            }
            for rec in c.channels()
            for a in rec.alarms
        ]
        colleagues = [
            {"title": a.text, "advice": a.todo, "at": when(a.at)} for a in c.officer_alarms()
        ]
        move = c.relay_move_report()
        evidence = [
            {"n": i, "kind": LIES.get(evidence_kind(blob), evidence_kind(blob)), "name": name}
            for i, (blob, (name, _)) in enumerate(
                zip(c.relay_evidence(), c.evidence_files(), strict=True)
            )
        ]
    return render(
        request,
        session,
        "alarms.html",
        relay=relay,
        channel=channel,
        colleagues=colleagues,
        events=[{"title": e.title, "advice": e.advice, "at": when(e.at)} for e in desk.events],
        evidence=evidence,
        move=move,
        relay_error=desk.info.relay_error,
    )


@page
async def evidence_file(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    n = request.path_params["n"]
    async with desk.use() as c:
        files = c.evidence_files()
    if not 0 <= n < len(files):
        raise ConfigError("no such proof")
    name, text = files[n]
    return Response(text, media_type="text/plain; charset=utf-8", headers=attachment(name))


# --- roster -----------------------------------------------------------------------------------


@page
async def roster(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        m = c.mission_or_none()
        if m is None:
            return render(request, session, "no_mission.html")
        me = c.officer.officer_id
        officers = [
            {
                "name": o.name,
                "id": grouped(o.officer_id.hex()),
                "runner": o.officer_id == m.runner_id,
                "me": o.officer_id == me,
                "key": m.cert_of(o.officer_id).epoch,
            }
            for o in m.roster.officers
        ]
        mission = {
            "name": m.name,
            "k": m.roster.threshold,
            "n": m.roster.n,
            "id": grouped(m.mission_id.hex()),
            "relay": m.relay_url,
            "version": m.roster.version,
            "recovery_k": m.roster.recovery_threshold,
            "recovery": [
                {"name": o.name, "id": grouped(o.officer_id.hex())} for o in m.roster.recovery
            ],
        }
        policy = _policy_view(m.policy, c.policy_pending(), m.roster.n)
        policy["witnessing"] = c.witness_report()
    return render(request, session, "roster.html", officers=officers, m=mission, policy=policy)


def _policy_view(current: Any, pending: list[Any], n: int) -> dict[str, Any]:
    return {
        "version": current.version,
        "official": [p.phrase for p in sorted(current.official)],
        "official_values": [p.label for p in current.official],
        "track2_k": current.track2_k,
        "epoch_hours": current.epoch_seconds // 3600,
        "unseen_hours": current.unseen_seconds // 3600,
        "witnesses": current.witnesses.describe() if current.witnesses.asked else "",
        "witness_keys": "\n".join(k.vkey() for k in current.witnesses.keys),
        "witnesses_needed": current.witnesses.needed or 1,
        "witness_lag_minutes": current.witnesses.lag_seconds // 60,
        "fallback_url": current.fallback.url,
        "fallback_key": current.fallback.key_fingerprint.hex(),
        "n": n,
        "pending": [
            {
                "ref": p.ref,
                "text": p.policy.describe(),
                "signed_by": list(p.signed_by),
                "needed": p.needed,
                "mine": p.signed_by_me,
            }
            for p in pending
        ],
    }


@action
async def policy_propose(request: Request, session: Session, form: FormData) -> str:
    official = [Policy[str(v).upper()] for v in form.getlist("official") if v in _VALUES]
    if not official:
        raise ConfigError("tick at least one kind of official channel")
    k = _number(form, "track2_k") or 0
    hours = _number(form, "epoch_hours")
    unseen = _number(form, "unseen_hours")
    rule = _witness_form(form)
    fallback = _fallback_form(form)
    seconds = hours * 3600 if hours else None
    unseen_seconds = unseen * 3600 if unseen else None
    async with desk_of(request).use() as c:
        made = c.policy_propose(official, k, seconds, unseen_seconds, rule, fallback)
    session.notes.append(
        ("ok", f"Policy change proposed and signed by you ({len(made.signed_by)} of "
               f"{made.needed}); your colleagues see it after the next rounds.")
    )  # fmt: skip
    return "/roster#policy"


#: The policy form's whole numbers: the lowest and highest, and what to say of another.
_WITNESS_NUMBERS = "the witnesses needed and the minutes are whole numbers"
_NUMBERS = {
    "track2_k": (0, 999, "the Track II k is a number: 0 for the roster's k, or 1 and up"),
    "epoch_hours": (1, 168, "the send keys last 1 to 168 hours (an hour to a week)"),
    "unseen_hours": (
        1, 720, "a colleague's device may be silent 1 to 720 hours (up to thirty days)"
    ),
    "witnesses_needed": (0, 999, _WITNESS_NUMBERS),
    "witness_lag_minutes": (0, 999_999, _WITNESS_NUMBERS),
}  # fmt: skip


def _number(form: FormData, name: str) -> int | None:
    """The whole number in field ``name``, in ASCII digits and in range; None if empty.

    Not :meth:`str.isdigit` alone: it takes ``²`` and other digits ``int`` refuses.
    """
    low, high, error = _NUMBERS[name]
    raw = form.get(name)
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 9 and low <= int(text) <= high):
        raise ConfigError(error)
    return int(text)


def _fallback_form(form: FormData) -> FallbackRelay | None:
    """The fallback relay the form asks for; None keeps the one in force."""
    if form.get("no_fallback"):
        return NO_FALLBACK
    return fallback_asked(str(form.get("fallback_url") or ""), str(form.get("fallback_key") or ""))


def _witness_form(form: FormData) -> WitnessRule | None:
    """The witness rule the form asks for; None keeps the one in force."""
    if form.get("no_witnesses"):
        return NO_WITNESSES
    keys = str(form.get("witness_keys") or "").splitlines()
    if not any(k.strip() for k in keys):
        return None
    needed = _number(form, "witnesses_needed")
    lag = _number(form, "witness_lag_minutes")
    return witness_rule(keys, needed, DEFAULT_LAG_SECONDS // 60 if lag is None else lag)


@action
async def policy_sign(request: Request, session: Session, form: FormData) -> str:
    async with desk_of(request).use() as c:
        signed = c.policy_sign(request.path_params["ref"])
    if signed.adopted:
        session.notes.append(("ok", "Signed: the change has its signatures and is in force."))
    else:
        session.notes.append(
            ("ok", f"Signed ({len(signed.signed_by)} of {signed.needed}); "
                   "in force once enough colleagues sign.")
        )  # fmt: skip
    return "/roster#policy"


_VALUES = {p.label for p in Policy}


# --- pairing and the safety number --------------------------------------------------------------


def _peer_view(rec: Any) -> dict[str, Any]:
    return {
        "id": rec.mission_id.hex(),
        "name": rec.name,
        "confirmed": rec.confirmed,
        "groups": rec.safety_number.split(),
    }


@mission_page
async def pairing(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        peers = [_peer_view(p) for p in c.peers()]
        with_channel = {rec.peer_mission.hex() for rec in c.channels()}
    for p in peers:
        p["channel"] = p["id"] in with_channel
    return render(request, session, "pairing.html", peers=peers)


@page
async def mission_card(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        text = c.mission_card().encode()
        name = slug(c.mission().name) + ".card"
    return Response(text, media_type="text/plain; charset=utf-8", headers=attachment(name))


@keeping("card_text")
async def add_card(request: Request, session: Session, form: FormData) -> str:
    desk = desk_of(request)
    text = str(form.get("card_text") or "").strip()
    upload = form.get("card_file")
    if isinstance(upload, UploadFile) and upload.filename:
        raw = await upload.read(MAX_CARD + 1)
        if len(raw) > MAX_CARD:
            raise ConfigError("that file is too large to be a mission card")
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError("that file is not a mission card") from None
    if not text:
        raise ConfigError("choose the other mission's card file, or paste its text")
    async with desk.use() as c:
        before = len(c.inbox())
        rec = c.add_peer(text)
        released = len(c.inbox()) - before
    session.notes.append(("ok", said("Card of {} added. Now compare the safety number.", rec.name)))
    if released > 0:
        session.notes.append(
            ("ok", f"{released} message(s) that waited for this card are now in the inbox.")
        )
    return f"/pairing/{rec.mission_id.hex()}"


@page
async def safety(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    async with desk.use() as c:
        rec = find(c.peers(), lambda p: p.mission_id, request.path_params["mission_id"])
        if rec is None:
            raise ConfigError("unknown mission; add its card first")
        me = c.officer.name
    digits = "".join(rec.safety_number.split())
    qr = segno.make(digits, error="m").svg_data_uri(scale=4, dark="#111", light="#fff")
    return render(request, session, "safety.html", p=_peer_view(rec), qr=qr, me=me)


@action
async def confirm(request: Request, session: Session, form: FormData) -> str:
    desk = desk_of(request)
    hex_id = request.path_params["mission_id"]
    back = f"/pairing/{hex_id}"
    if form.get("read_aloud") != "yes" or form.get("peer_confirmed") != "yes":
        raise ConfigError(
            "confirm only after you and the other mission's officer have both compared "
            "the number aloud and found it the same"
        )
    async with desk.use() as c:
        rec = find(c.peers(), lambda p: p.mission_id, hex_id)
        if rec is None:
            raise ConfigError("unknown mission; add its card first")
        c.confirm_peer(rec.mission_id, rec.safety_number)
    session.notes.append(("ok", said("The safety number of {} is confirmed.", rec.name)))
    return back


routes = [
    Route("/channels", channels),
    Route("/alarms", alarms),
    Route("/alarms/evidence/{n:int}", evidence_file),
    Route("/roster", roster),
    Route("/roster/policy", policy_propose, methods=["POST"]),
    Route("/roster/policy/{ref:str}/sign", policy_sign, methods=["POST"]),
    Route("/pairing", pairing),
    Route("/pairing/card", mission_card),
    Route("/pairing/add", add_card, methods=["POST"]),
    Route("/pairing/{mission_id:str}", safety),
    Route("/pairing/{mission_id:str}/confirm", confirm, methods=["POST"]),
]
