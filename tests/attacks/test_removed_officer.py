"""Attacks by an officer his colleagues remove, with his own device's whole state.

A removal moves the mission to a new secret (the mailbox's lanes, the relay
credential, each channel's new slot chain, the intake's key) that only the
officers who stay may learn. Whoever draws it knows it: the removed officer
must not be the one who does, nor slip a secret of his into a colleague's
change, nor keep his epoch key among those his colleagues' devices seal to.
After the change, a share request of his gets nothing, and none is needed of
him.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from backchannel.client import roster_change
from backchannel.client.cards import CardError
from backchannel.client.home import Home
from backchannel.client.officer_alarms import AlarmKind
from backchannel.client.service import Client
from backchannel.errors import ConfigError, RosterError
from backchannel.protocol import roster as rs
from backchannel.protocol.outgoing import Outgoing
from backchannel.protocol.payload import note
from backchannel.protocol.sealing import sign, start_epoch
from tests.client.conftest import FAST_KDF, InProcessRelay
from tests.client.test_client_flow import two_missions
from tests.client.test_roster_change import _washington_writes


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[InProcessRelay]:
    r = InProcessRelay(tmp_path / "relay")
    async with r.app.router.lifespan_context(r.app):
        yield r


async def _three_and_two(
    tmp: Path, relay: InProcessRelay
) -> tuple[tuple[Client, Client, Client], tuple[Client, Client]]:
    """New York with Ri, Han and Kim (2 of 3; Ri's device runs the rounds), and
    Washington (Smith, Jones) holding New York's card that names the three."""
    (ri, han), dc = await two_missions(tmp, relay)
    kim = Client(Home.create(tmp / "ny-kim", "Officer Kim", "pw", FAST_KDF), relay.factory())
    change = roster_change.propose(ri, [kim.officer_card()], [], 2)
    change = roster_change.sign(kim, roster_change.sign(han, change))
    for c in (ri, han, kim):
        roster_change.adopt(c, change)
    for c in dc:
        c.add_peer(ri.mission_card().encode())
    return (ri, han, kim), dc


async def _three(tmp: Path, relay: InProcessRelay) -> tuple[Client, Client, Client]:
    ny, _ = await _three_and_two(tmp, relay)
    return ny


def _with_his_secret(
    defector: Client, change: roster_change.RosterChange, fresh: bytes
) -> roster_change.RosterChange:
    """``change`` as the defector's modified device rewrites it: the new mission
    secret is ``fresh``, which he drew, sealed to each officer who stays with the
    commitment it opens to; the signatures on the old secret are gone."""
    m = defector.mission()
    v = change.new.version
    boxes = tuple(
        (c.officer_id, c.public_key.seal(fresh, roster_change._rekey_info(m.mission_id,
                                                                         c.officer_id, v)))
        for c in m.epoch_certs()
        if change.new.contains(c.officer_id)
    )  # fmt: skip
    return replace(
        change,
        rekey=boxes,
        rekey_commitment=roster_change._commitment(m.mission_id, v, fresh),
        credential_signatures=(),
        channel_signatures=(),
    )


async def test_an_officer_who_proposes_his_own_removal_draws_no_secret_that_counts(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Han, about to be cut off, offers to leave: he proposes the change that removes
    him, and its new mission secret is one he drew, and keeps. His colleagues must
    not move the mission to it."""
    ri, han, kim = await _three(tmp_path, relay)
    han_id = han.officer.officer_id
    state = ri.mission()
    # His own device refuses to draw it...
    with pytest.raises(ConfigError, match="an officer who stays"):
        roster_change.propose(han, [], [han_id], 2)
    # ...so his modified one does: the roster his colleagues want, his secret.
    new = rs.propose_update(state.roster, [o for o in state.roster.officers
                                           if o.officer_id != han_id], 2)  # fmt: skip
    fresh = secrets.token_bytes(32)
    certs = tuple(c for c in state.epoch_certs() if new.contains(c.officer_id))
    bare = roster_change.RosterChange(state.mission_id, new, (), certs, ())
    his = _with_his_secret(han, bare, fresh)
    his = replace(his, signatures=(rs.sign_roster(new, han.officer),))
    for colleague in (ri, kim):
        with pytest.raises(RosterError, match="officer who stays"):
            roster_change.sign(colleague, his)
    # With only the roster signed, no device adopts it: the relay's move and the
    # channels' new keys need the signatures of officers who stay.
    signed = replace(his, signatures=(*his.signatures, rs.sign_roster(new, ri.officer)))
    with pytest.raises(RosterError, match="too few of the officers who stay"):
        roster_change.adopt(kim, signed)
    assert ri.mission() == state and kim.mission().secret == state.secret != fresh
    # Proposed by an officer who stays, the change goes through on a secret Han
    # never saw.
    change = roster_change.sign(kim, roster_change.propose(ri, [], [han_id], 2))
    for c in (ri, kim):
        roster_change.adopt(c, change)
    assert ri.mission().secret == kim.mission().secret not in (fresh, state.secret)


async def test_a_secret_slipped_into_a_colleagues_change_is_refused(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Ri proposes Han's removal; Han gets hold of the file and puts a secret of his
    own in Ri's (Ri's signature on the roster stays good: it covers the roster
    only). Kim's device refuses to sign it: no officer who stays vouches for
    that secret."""
    ri, han, kim = await _three(tmp_path, relay)
    honest = roster_change.propose(ri, [], [han.officer.officer_id], 2)
    fresh = secrets.token_bytes(32)
    for swapped in (
        _with_his_secret(han, honest, fresh),
        # Ri's signatures on the relay's and the channels' move kept: they are on
        # Ri's secret, not his.
        replace(_with_his_secret(han, honest, fresh),
                credential_signatures=honest.credential_signatures,
                channel_signatures=honest.channel_signatures),
    ):  # fmt: skip
        with pytest.raises(RosterError, match="officer who stays"):
            roster_change.sign(kim, swapped)
    assert kim.mission().secret != fresh
    # Ri's own change goes through, on the secret Ri drew.
    change = roster_change.sign(kim, honest)
    for c in (ri, kim):
        roster_change.adopt(c, change)
    assert ri.mission().secret == kim.mission().secret != fresh


async def test_an_epoch_key_slipped_into_the_change_is_refused(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """The change carries the epoch keys of the officers it names, and nothing signs
    that list as a whole. Han, handed the file, adds his own key (so that his
    colleagues' devices keep sealing to him: the next removal's secret, a new
    channel's contribution, the peer's re-keys through the mission's card), or puts
    a key of his in Kim's name. No device adopts either."""
    ri, han, kim = await _three(tmp_path, relay)
    change = roster_change.sign(kim, roster_change.propose(ri, [], [han.officer.officer_id], 2))
    state = ri.mission()
    his = state.cert_of(han.officer.officer_id)
    kims = state.cert_of(kim.officer.officer_id)
    in_kims_name = replace(his, officer_id=kims.officer_id, epoch=kims.epoch + 1)
    for bad in (
        (*change.certs, his),
        tuple(in_kims_name if c.officer_id == kims.officer_id else c for c in change.certs),
    ):
        for c in (ri, kim):
            with pytest.raises(CardError, match="epoch key"):
                roster_change.adopt(c, replace(change, certs=bad))
    assert ri.mission() == state
    roster_change.adopt(ri, change)
    card = ri.mission_card()
    assert han.officer.officer_id not in {c.officer_id for c in card.certs}
    assert card.certs == tuple(ri.mission().epoch_certs())


async def test_after_his_removal_his_share_requests_get_nothing_and_are_not_needed(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Han asked to open a message before his removal; his colleagues' devices
    still list his request. Approving it after the change releases nothing to him.
    And what Washington sealed to the roster with Han, before it had New York's
    new card, Ri and Kim open between them, without asking him."""
    (ri, han, kim), (smith, jones) = await _three_and_two(tmp_path, relay)
    await _washington_writes(smith, jones, "before the change")
    for c in (ri, han, kim):
        await c.settle()
    [before] = han.inbox()
    han.request_open(before.message_id)
    await han.settle()
    await kim.settle()
    [his_request] = kim.share_requests()
    change = roster_change.sign(kim, roster_change.propose(ri, [], [han.officer.officer_id], 2))
    for c in (ri, kim):
        roster_change.adopt(c, change)
    waiting = kim.mailbox.waiting()
    with pytest.raises(ConfigError, match="removed"):
        kim.approve_share(his_request.request_id)
    assert kim.mailbox.waiting() == waiting  # nothing queued for him
    # Washington, still on the card that names Han, seals to the three.
    await _washington_writes(smith, jones, "sealed to the roster with Han")
    for c in (ri, kim):
        await c.settle()
    [item] = [i for i in kim.inbox() if i.message_id != before.message_id]
    kim.request_open(item.message_id)
    await kim.settle()
    await ri.settle()
    [request] = [r for r in ri.share_requests() if r.message_id == item.message_id]
    ri.approve_share(request.request_id)
    await ri.settle()
    await kim.settle()
    assert kim.read(item.message_id).text == "sealed to the roster with Han"


async def test_a_second_roster_of_one_version_is_refused_and_its_signers_named(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    # Han is removed by Ri and Kim; Han, on his device from before, has Kim sign
    # another roster of the same version that removes Ri instead (Kim signed it
    # before his device adopted the first): a fork of the mission's roster.
    (ri, han, kim), _ = await _three_and_two(tmp_path, relay)
    han_id, ri_id, kim_id = (c.officer.officer_id for c in (han, ri, kim))
    good = roster_change.sign(kim, roster_change.propose(ri, [], [han_id], 2))
    fork = roster_change.sign(kim, roster_change.propose(han, [], [ri_id], 2))
    for officer in (ri, kim):
        roster_change.adopt(officer, good)
    with pytest.raises(RosterError, match="forks its roster"):
        roster_change.adopt(ri, fork)
    forks = [a for a in ri.officer_alarms() if a.kind is AlarmKind.ROSTER_FORK]
    assert {a.officer_id for a in forks} == {han_id, kim_id}
    assert ri.mission().roster.hash == good.new.hash
    roster_change.adopt(ri, good)  # the same one again changes nothing, and raises nothing
    assert len([a for a in ri.officer_alarms() if a.kind is AlarmKind.ROSTER_FORK]) == 2
    # Once a device holds a version, it signs nothing that does not follow it.
    with pytest.raises(RosterError, match="does not follow"):
        roster_change.sign(kim, roster_change.propose(han, [], [ri_id], 2))


async def test_a_runner_and_the_officer_removed_cannot_send_under_the_old_roster(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    # Ri (the runner) and Kim remove Han. Ri's device, changed, then seals a
    # message under the roster before the change and has Han, who kept his keys,
    # sign it: two signatures of that roster, one of an officer who stays. The
    # re-key after the removal came first in the channel, so it is refused.
    (ri, han, kim), (smith, jones) = await _three_and_two(tmp_path, relay)
    before = ri.mission().roster
    han_keys = han.officer
    change = roster_change.sign(kim, roster_change.propose(ri, [], [han.officer.officer_id], 2))
    for officer in (ri, kim, han):
        roster_change.adopt(officer, change)
    after = ri.mission().roster
    for peer in (smith, jones):
        peer.add_peer(ri.mission_card().encode())
    for _ in range(4):
        for c in (ri, kim, smith, jones):
            await c.settle()
    channel = ri.channel_for("Washington").channel_id
    rec, ep = ri.channel(channel), ri._endpoint(channel)
    card = ri._peer_card(rec.peer_mission)
    epoch = start_epoch(channel, ep.out_direction, rec.epoch_no + 1, card.roster,
                        list(card.certs), secrets.token_bytes)  # fmt: skip
    ep.own_roster = before
    header = ep.new_header(note("x").kind, epoch, int(time.time()))
    out, epoch = Outgoing.draft(note("Ri and the removed Han")).seal(
        header, epoch, card.roster, ri.officer, before, secrets.token_bytes
    )
    ep.queue(sign(out.message, han_keys, before))
    ep.own_roster = after
    ri._save_endpoint(channel, ep)
    ri._put("channels", channel, replace(rec, send_epoch=epoch, epoch_no=rec.epoch_no + 1))
    alarms: list[str] = []
    for _ in range(4):
        for c in (ri, kim, smith, jones):
            alarms += (await c.settle()).alarms
    assert smith.inbox() == [] and jones.inbox() == []
    # Refused as what it is, not lost on the way.
    assert any("earlier roster" in a for a in alarms), alarms
