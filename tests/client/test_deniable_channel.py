"""A deniable channel between two missions, end to end through a relay: both
missions choose it in their signed offers, messages arrive with a MAC and no
signature, and the receiving desk and CLI say so; offers that disagree on the
policy open no channel."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from backchannel.client import demo, roster_change
from backchannel.client.service import Client
from backchannel.errors import ConfigError, NotEnoughSignatures, RemoteProtocolError
from backchannel.protocol import channel as ch
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import note
from backchannel.protocol.states import SendState
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay, adopt_policy

Mission = tuple[Client, Client]


async def founded(tmp: Path, relay: InProcessRelay) -> tuple[Mission, Mission]:
    f = relay.factory()
    ny = await demo.found(tmp, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    dc = await demo.found(tmp, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF)
    # Deniable messages on official channels are a standing decision of each mission.
    for mission in (ny, dc):
        await adopt_policy(mission, set(ch.Policy))
    return ny, dc


def offers(
    ny: Mission, dc: Mission, policies: tuple[ch.Policy, ch.Policy]
) -> list[ch.ChannelOffer]:
    made = []
    for (mine, theirs), policy in zip(((ny, dc), (dc, ny)), policies, strict=True):
        for officer in mine:
            rec = officer.add_peer(theirs[0].mission_card().encode())
            officer.confirm_peer(rec.mission_id, rec.safety_number)
        offer = mine[0].make_offer(theirs[0].mission().mission_id, policy=policy)
        made.append(mine[1].sign_offer(offer))
    return made


async def test_a_deniable_channel_carries_macs_and_says_so(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await founded(tmp_path, relay)
    own, theirs = offers(ny, dc, (ch.Policy.DENIABLE, ch.Policy.DENIABLE))
    assert ch.ChannelOffer.decode(own.encode()) == own and own.terms.deniable
    for officer in (*ny, *dc):
        rec = officer.accept_channel(own, theirs)
        assert rec.terms.deniable
    ri, han = ny
    smith, jones = dc
    ri.compose(ri.channel_for("Washington").channel_id, note("off the record"))
    for _ in range(3):
        for c in (ri, han, smith, jones):
            await c.settle()
    for req in han.cosign_requests():
        han.approve_cosign(req.request_id)
    for _ in range(4):
        for c in (han, ri, smith, jones):
            await c.settle()
    [item] = smith.inbox()
    wire = SealedMessage.decode(item.message)
    assert wire.deniable and wire.signatures == ()
    assert smith.channel(item.channel_id).terms.deniable
    smith.request_open(item.message_id)
    for _ in range(3):
        for c in (smith, jones):
            await c.settle()
    for req in jones.share_requests():
        jones.approve_share(req.request_id)
    for _ in range(3):
        for c in (jones, smith):
            await c.settle()
    assert smith.read(item.message_id).text == "off the record"
    # The two-person rule held (the audit log says who co-signed), and the sender's
    # device keeps no signature over what it sent (test_deniable_kept.py).
    [draft] = ri.drafts()
    assert draft.outgoing.message is not None and draft.outgoing.message.signatures == ()
    assert draft.outgoing.message.digest == wire.digest
    assert any(
        e.kind is AuditKind.COSIGNED and e.subject == draft.draft_id for e in ri.audit_entries()
    )


async def test_offers_that_disagree_on_the_policy_open_no_channel(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await founded(tmp_path, relay)
    own, theirs = offers(ny, dc, (ch.Policy.DENIABLE, ch.Policy.RECORD))
    with pytest.raises(RemoteProtocolError, match="disagree"):
        ny[0].accept_channel(own, theirs)
    assert ny[0].channels() == []


def test_an_offer_with_unknown_flags_is_refused() -> None:
    from backchannel.errors import DecodeError

    raw = bytearray(ch.ChannelOffer(bytes(32), ch.ChannelTerms(bytes(32), bytes([1]) * 32,
                    bytes(32), bytes(32), policy=ch.Policy.DENIABLE), 7, ()).encode())  # fmt: skip
    # The flags byte follows the two u32 and the u64: 4 + 1 + 32 * 5 + 4 + 4 + 8.
    at = 4 + 1 + 32 * 5 + 16
    assert raw[at] == 1
    for bad in (0, 3, 255):
        raw[at] = bad
        with pytest.raises(DecodeError, match="flags"):
            ch.ChannelOffer.decode(bytes(raw))


async def contact(tmp: Path, relay: InProcessRelay, name: str) -> Client:
    """A Track II contact: a private person with a home of his own, a roster of one."""
    from backchannel.client.home import Home

    c = Client(Home.create(tmp / name.lower(), name, "pw", FAST_KDF), relay.factory())
    c.adopt_mission(c.propose_mission(name, 1, [], RELAY_URL))
    await c.register_tenant()
    assert c.mission().roster.is_contact
    return c


async def founded_either(tmp: Path, relay: InProcessRelay) -> tuple[Mission, Mission]:
    """Two missions paired on a channel that allows both kinds of message."""
    ny, dc = await founded(tmp, relay)
    own, theirs = offers(ny, dc, (ch.Policy.EITHER, ch.Policy.EITHER))
    for officer in (*ny, *dc):
        officer.accept_channel(own, theirs)
    return ny, dc


def confirm_cards(officers: tuple[Client, Client], kim: Client) -> None:
    """The mission's officers and the contact confirm each other's cards."""
    for officer in officers:
        rec = officer.add_peer(kim.mission_card().encode())
        officer.confirm_peer(rec.mission_id, rec.safety_number)
    rec = kim.add_peer(officers[0].mission_card().encode())
    kim.confirm_peer(rec.mission_id, rec.safety_number)


def pair_with_contact(officers: tuple[Client, Client], kim: Client) -> None:
    """The mission's two officers and the contact pair on a deniable channel
    (the only kind a contact may have): cards confirmed, offers made, accepted."""
    ri, han = officers
    confirm_cards(officers, kim)
    ours = han.sign_offer(ri.make_offer(kim.mission().mission_id, policy=ch.Policy.DENIABLE))
    his = kim.make_offer(ri.mission().mission_id, policy=ch.Policy.DENIABLE)
    for device in (ri, han, kim):
        device.accept_channel(ours, his)


async def test_a_contact_and_a_mission_talk_deniably_through_a_relay(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, _ = await founded(tmp_path, relay)
    kim = await contact(tmp_path, relay, "Kim")
    ri, han = ny
    confirm_cards(ny, kim)
    # A channel with a contact is deniable, or there is none.
    for policy in (ch.Policy.RECORD, ch.Policy.EITHER):
        with pytest.raises(Exception, match="deniable"):
            ri.make_offer(kim.mission().mission_id, policy=policy)
        with pytest.raises(Exception, match="deniable"):
            kim.make_offer(ri.mission().mission_id, policy=policy)
    ours = han.sign_offer(ri.make_offer(kim.mission().mission_id, policy=ch.Policy.DENIABLE))
    his = kim.make_offer(ri.mission().mission_id, policy=ch.Policy.DENIABLE)  # alone: k = 1
    for device in (ri, han, kim):
        device.accept_channel(ours, his)

    async def rounds(n: int = 3) -> None:
        for _ in range(n):
            for c in (ri, han, kim):
                await c.settle()

    # The mission writes under its two-person rule; the contact reads alone.
    ri.compose(ri.channel_for("Kim").channel_id, note("Could we meet on Thursday?"))
    await rounds()
    for req in han.cosign_requests():
        han.approve_cosign(req.request_id)
    await rounds(4)
    [item] = kim.inbox()
    assert SealedMessage.decode(item.message).signatures == ()
    kim.request_open(item.message_id)
    assert kim.read(item.message_id).text == "Could we meet on Thursday?"
    # He answers, alone; both officers must open it together.
    kim.compose(kim.channel_for("New York").channel_id, note("Thursday suits me."))
    await rounds(4)
    [back] = ri.inbox()
    assert SealedMessage.decode(back.message).deniable
    ri.request_open(back.message_id)
    await rounds()
    for req in han.share_requests():
        han.approve_share(req.request_id)
    await rounds()
    assert ri.read(back.message_id).text == "Thursday suits me."


async def test_on_a_channel_for_either_each_message_goes_as_its_author_chose(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await founded_either(tmp_path, relay)
    ri, han = ny
    smith, _ = dc
    channel = ri.channel_for("Washington").channel_id

    async def rounds(n: int = 3) -> None:
        for _ in range(n):
            for c in (*ny, *dc):
                await c.settle()

    for text, deniable in (("for the record", False), ("off the record", True)):
        ri.compose(channel, note(text), deniable=deniable)
        await rounds()
        [req] = han.cosign_requests()
        assert req.deniable is deniable  # the co-signer is told, and signs the choice
        han.approve_cosign(req.request_id)
        await rounds(4)
    got = [(i.deniable, len(SealedMessage.decode(i.message).signatures)) for i in smith.inbox()]
    assert got == [(False, 2), (True, 0)]


async def test_a_peer_shrinking_to_one_officer_does_not_make_an_official_channel_track_two(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    # Whether a channel is to a Track II contact is how it was paired, not what
    # the peer's roster became: a peer that drops to one officer must not let one
    # of our officers send on it alone, nor deniably once our policy forbids it.
    ny, dc = await founded_either(tmp_path, relay)
    ri, han = ny
    smith, jones = dc
    await adopt_policy(ny, set(ch.Policy), track2_k=1)  # Track II k = 1: for contacts
    change = roster_change.propose(smith, [], [jones.officer.officer_id], 1)
    roster_change.adopt(smith, roster_change.sign(jones, change))
    for officer in ny:
        officer.add_peer(smith.mission_card().encode())
    assert ri.is_contact(smith.mission().mission_id)  # the card now shows a roster of one
    channel = ri.channel_for("Washington").channel_id
    draft = ri.compose(channel, note("one officer's word"), deniable=True)
    assert ri.find_draft(draft.draft_id.hex()).outgoing.state is SendState.SEALED
    with pytest.raises(NotEnoughSignatures):
        ri.send_now(draft.draft_id)
    # A channel record kept before the pairing was noted: the peer's roster is no
    # longer the one paired with, so the channel counts as official.
    rec = ri.channel(channel)
    with ri._tx():
        ri._put("channels", channel, replace(rec, peer_contact=None))
    with pytest.raises(NotEnoughSignatures):
        ri.send_now(draft.draft_id)
    # Narrowed to "for the record" on official channels: nothing deniable goes out.
    await adopt_policy(ny, {ch.Policy.RECORD}, track2_k=1)
    with pytest.raises(ConfigError, match="only messages for the record"):
        ri.compose(channel, note("off the record, after all"), deniable=True)
    for _ in range(4):
        for c in (ri, han, smith):
            await c.settle()
    assert smith.inbox() == []
