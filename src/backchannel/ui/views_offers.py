"""Opening the channel with a paired mission: the signed offers, from the desk.

After the safety number, each mission makes one channel offer: one officer
makes it (signing it), colleagues co-sign it until ``k`` officers have, and
the complete offer goes to the other mission as a file (or its pasted text),
as mission cards do. With both missions' complete offers in hand, every
officer of both missions opens the channel on his own desk. The client checks
every signature when an offer is added (only those that verify are kept and
shown) and again when the channel opens; the desk keeps the offers in hand
(:attr:`Desk.offers`) and shows how far each one is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backchannel.client.api import ChannelOffer, Policy, decode_offer, encode_offer
from backchannel.client.service import Client
from backchannel.errors import ConfigError
from backchannel.ui.desk import Desk
from backchannel.ui.security import Session
from backchannel.ui.text import said
from backchannel.ui.web import (
    action,
    attachment,
    desk_of,
    find,
    keeping,
    mission_page,
    officer_name,
    page,
    render,
    slug,
)

#: Largest offer file accepted (offers are a few kilobytes).
MAX_OFFER = 256 * 1024


def _peer(c: Client, hex_id: str, confirmed: bool = True) -> Any:
    rec = find(c.peers(), lambda p: p.mission_id, hex_id)
    if rec is None:
        raise ConfigError("unknown mission; add its card first")
    if confirmed and not rec.confirmed:
        raise ConfigError(f"compare and confirm the safety number of {rec.name} first")
    return rec


def _open_with(c: Client, mission_id: bytes) -> bool:
    return any(rec.peer_mission == mission_id for rec in c.channels())


def _ours_view(desk: Desk, offer: ChannelOffer) -> dict[str, Any]:
    c = desk.client
    k = c.mission().roster.threshold
    good = c.offer_signers(offer)
    ids = list(dict.fromkeys(oid for oid, _ in offer.signatures if oid in good))  # each once
    return {
        "names": [officer_name(desk, oid) for oid in ids],
        "have": len(ids),
        "need": k,
        "complete": len(ids) >= k,
        "mine": c.officer.officer_id in ids,
        "policy": offer.terms.policy.label,
    }


@mission_page
async def channel_page(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    hex_id = request.path_params["mission_id"]
    async with desk.use() as c:
        rec = _peer(c, hex_id, confirmed=False)
        held = desk.offers.get(hex_id, {})
        ours = _ours_view(desk, held["ours"]) if "ours" in held else None
        theirs = held.get("theirs")
        view = {
            "id": hex_id,
            "name": rec.name,
            "confirmed": rec.confirmed,
            "open": _open_with(c, rec.mission_id),
            "ours": ours,
            "theirs": {"have": len(c.offer_signers(theirs)), "policy": theirs.terms.policy.label}
            if theirs is not None
            else None,
            "k": c.mission().roster.threshold,
            "us": c.mission().name,
            "contact": c.is_contact(rec.mission_id),
            # The mission's policy (k of n) says which an official channel may be.
            "allowed": [p.label for p in sorted(c.mission_policy().official)],
        }
    return render(request, session, "channel_offer.html", p=view)


@action
async def make(request: Request, session: Session, form: FormData) -> str:
    desk = desk_of(request)
    hex_id = request.path_params["mission_id"]
    async with desk.use() as c:
        rec = _peer(c, hex_id)
        if _open_with(c, rec.mission_id):
            raise ConfigError(f"the channel with {rec.name} is already open on this desk")
        chosen = form.get("policy") or "record"
        if chosen not in ("record", "deniable", "either"):
            raise ConfigError("choose how the channel's messages are authenticated")
        policy = Policy[str(chosen).upper()]
        made = c.make_offer(rec.mission_id, policy=policy)
        desk.offers.setdefault(hex_id, {})["ours"] = made
        k = c.mission().roster.threshold
    nxt = "give the file to a colleague to co-sign" if k > 1 else "give it to " + rec.name
    session.notes.append(("ok", f"Our offer is made and signed by you (1 of {k}). Now {nxt}."))
    return f"/pairing/{hex_id}/channel"


async def _offer_text(form: FormData) -> str:
    text = str(form.get("offer_text") or "").strip()
    upload = form.get("offer_file")
    if isinstance(upload, UploadFile) and upload.filename:
        raw = await upload.read(MAX_OFFER + 1)
        if len(raw) > MAX_OFFER:
            raise ConfigError("that file is too large to be a channel offer")
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError("that file is not a channel offer") from None
    if not text:
        raise ConfigError("choose the offer file, or paste its text")
    return text


def _merged(held: ChannelOffer | None, given: ChannelOffer) -> ChannelOffer:
    """``given``, with the signatures of the same offer already in hand added."""
    if held is None or held.signed_part() != given.signed_part():
        return given
    sigs = dict(held.signatures)
    sigs.update(dict(given.signatures))
    return dataclasses.replace(given, signatures=tuple(sigs.items()))


@keeping("offer_text")
async def add(request: Request, session: Session, form: FormData) -> str:
    desk = desk_of(request)
    hex_id = request.path_params["mission_id"]
    text = await _offer_text(form)
    offer = decode_offer(text)
    async with desk.use() as c:
        rec = _peer(c, hex_id)
        ours_id = c.mission().mission_id
        if {offer.terms.mission_a, offer.terms.mission_b} != {ours_id, rec.mission_id}:
            raise ConfigError(f"that offer is not for a channel between us and {rec.name}")
        offer = c.verified_offer(offer)
        if not offer.signatures:
            raise ConfigError(
                "no signature on that offer verifies: it was altered or damaged; "
                "ask for a fresh copy"
            )
        held = desk.offers.setdefault(hex_id, {})
        if offer.from_mission == ours_id:
            held["ours"] = _merged(held.get("ours"), offer)
            v = _ours_view(desk, held["ours"])
            note = f"Our offer added: {v['have']} of {v['need']} officers have signed it."
        else:
            held["theirs"] = _merged(held.get("theirs"), offer)
            note = said("The offer of {} added.", rec.name)
    session.notes.append(("ok", note))
    return f"/pairing/{hex_id}/channel"


@action
async def cosign(request: Request, session: Session, form: FormData) -> str:
    desk = desk_of(request)
    hex_id = request.path_params["mission_id"]
    async with desk.use() as c:
        rec = _peer(c, hex_id)
        held = desk.offers.get(hex_id, {}).get("ours")
        if held is None:
            raise ConfigError("add our mission's offer first (the file a colleague gave you)")
        if c.officer.officer_id in dict(held.signatures):
            raise ConfigError("you have signed this offer already; a colleague co-signs it")
        signed = c.sign_offer(held)
        desk.offers[hex_id]["ours"] = signed
        v = _ours_view(desk, signed)
    done = f"Co-signed: {v['have']} of {v['need']} officers have signed. Now "
    nxt = (
        said(done + "give the file to {} and to your colleagues.", rec.name)
        if v["complete"]
        else done + "give the file to another colleague to co-sign."
    )
    session.notes.append(("ok", nxt))
    return f"/pairing/{hex_id}/channel"


@page
async def download(request: Request, session: Session) -> Response:
    desk = desk_of(request)
    hex_id = request.path_params["mission_id"]
    async with desk.use() as c:
        rec = _peer(c, hex_id)
        held = desk.offers.get(hex_id, {}).get("ours")
        if held is None:
            raise ConfigError("no offer of ours in hand")
        name = f"{slug(c.mission().name)}-offer-for-{slug(rec.name)}.offer"
    return Response(
        encode_offer(held), media_type="text/plain; charset=utf-8", headers=attachment(name)
    )


@action
async def open_channel(request: Request, session: Session, form: FormData) -> str:
    desk = desk_of(request)
    hex_id = request.path_params["mission_id"]
    async with desk.use() as c:
        rec = _peer(c, hex_id)
        if _open_with(c, rec.mission_id):
            raise ConfigError(f"the channel with {rec.name} is already open on this desk")
        held = desk.offers.get(hex_id, {})
        if "ours" not in held or "theirs" not in held:
            raise ConfigError(f"both offers are needed: ours and the one of {rec.name}")
        c.accept_channel(held["ours"], held["theirs"])  # checks every signature
    session.notes.append(
        ("ok", said("The channel with {} is open on this desk. Messages can be written.", rec.name))
    )
    return f"/pairing/{hex_id}/channel"


routes = [
    Route("/pairing/{mission_id:str}/channel", channel_page),
    Route("/pairing/{mission_id:str}/channel/make", make, methods=["POST"]),
    Route("/pairing/{mission_id:str}/channel/add", add, methods=["POST"]),
    Route("/pairing/{mission_id:str}/channel/cosign", cosign, methods=["POST"]),
    Route("/pairing/{mission_id:str}/channel/offer", download),
    Route("/pairing/{mission_id:str}/channel/open", open_channel, methods=["POST"]),
]
