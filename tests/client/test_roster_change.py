"""Roster changes through the client: add an officer, remove one, and the attacks."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import replace
from pathlib import Path

import pytest

from backchannel.client import driver, roster_change
from backchannel.client.cards import CardError
from backchannel.client.home import Home
from backchannel.client.mission import MissionState
from backchannel.client.relay_client import RelayRefusal
from backchannel.client.service import Client
from backchannel.errors import (
    AuthenticationError,
    ConfigError,
    RemoteProtocolError,
    RosterError,
)
from backchannel.protocol import intake as pi
from backchannel.protocol import joint, tenant_credential
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import note
from tests.client.conftest import FAST_KDF, InProcessRelay
from tests.client.test_client_flow import cosigned, two_missions


async def _add_kim(tmp: Path, relay: InProcessRelay, ny):  # type: ignore[no-untyped-def]
    ri, han = ny
    kim = Client(Home.create(tmp / "ny-kim", "Officer Kim", "pw", FAST_KDF), relay.factory())
    change = roster_change.propose(ri, [kim.officer_card()], [], 2)
    change = roster_change.sign(han, change)
    change = roster_change.sign(kim, change)
    for c in (ri, han, kim):
        roster_change.adopt(c, change)
    return kim, change


async def _three_and_two(tmp: Path, relay: InProcessRelay):  # type: ignore[no-untyped-def]
    """New York (Ri, Han, Kim; 2 of 3; Ri's device runs the rounds) and Washington
    (Smith, Jones), Washington holding New York's card with Kim."""
    ny, dc = await two_missions(tmp, relay)
    kim, _ = await _add_kim(tmp, relay, ny)
    for c in dc:
        c.add_peer(ny[0].mission_card().encode())
    return (*ny, kim), dc


async def _cosigned_by(ri: Client, kim: Client, text: str) -> None:
    """Ri drafts ``text`` to Washington, Kim co-signs, and it is queued."""
    ri.compose(ri.channel_for("Washington").channel_id, note(text))
    await ri.settle()
    await kim.settle()
    [req] = kim.cosign_requests()
    kim.approve_cosign(req.request_id)
    await kim.settle()
    await ri.settle()


async def _washington_writes(smith: Client, jones: Client, text: str) -> None:
    """Smith drafts ``text`` to New York, Jones co-signs, and it is queued."""
    smith.compose(smith.channel_for("New York").channel_id, note(text))
    await smith.settle()
    await jones.settle()
    [req] = jones.cosign_requests()
    jones.approve_cosign(req.request_id)
    await jones.settle()
    await smith.settle()


async def test_added_officer_opens_and_cosigns(tmp_path: Path, relay: InProcessRelay) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    smith, jones = dc
    kim, _ = await _add_kim(tmp_path, relay, ny)
    assert kim.mission().roster.n == 3 and kim.mission().roster.version == 1
    card = ri.mission_card().encode()
    for c in dc:
        c.add_peer(card)
    # Washington writes to the new three-officer roster: a new key epoch includes Kim.
    await _washington_writes(smith, jones, "to three")
    for c in (ri, han, kim):
        await c.settle()
    [item] = kim.inbox()
    kim.request_open(item.message_id)
    await kim.settle()
    await han.settle()
    [share] = han.share_requests()
    han.approve_share(share.request_id)
    await han.settle()
    await kim.settle()
    assert kim.read(item.message_id).text == "to three"
    # Kim co-signs a New York message; Washington accepts it under roster version 1.
    await _cosigned_by(ri, kim, "from the new roster")
    await smith.settle()
    assert len(smith.inbox()) == 1
    assert not smith.status()["channels"][0]["alarms"]


async def test_removed_officer_forgets_and_can_no_longer_cosign(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    kim, _ = await _add_kim(tmp_path, relay, ny)
    change = roster_change.propose(ri, [], [han.officer.officer_id], 2)
    change = roster_change.sign(kim, change)
    assert roster_change.adopt(han, change) is None
    assert han.mission_or_none() is None and han.channels() == []
    roster_change.adopt(ri, change)
    roster_change.adopt(kim, change)
    card = ri.mission_card().encode()
    for c in dc:
        c.add_peer(card)
    # Han's old device signs a draft anyway: Washington refuses the message.
    from backchannel.protocol.sealing import sign

    draft = ri.compose(ri.channel_for("Washington").channel_id, note("signed by a leaver"))
    msg = sign(draft.outgoing.message, han.officer, ny[0].mission().signed_chain()[1].roster)
    from tests.helpers import force_queue

    ep = ri._endpoint(draft.channel_id)
    force_queue(ep, msg)
    ri._save_endpoint(draft.channel_id, ep)
    await ri.settle()
    # The channel's re-key goes first (six cells), then the forged message.
    report = await dc[0].sync(10)
    assert dc[0].inbox() == []
    assert any("not on the sender" in a for a in report.alarms), report.alarms


async def test_change_signed_by_fewer_than_k_is_refused(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, _ = await two_missions(tmp_path, relay)
    ri, han = ny
    newcomer = Client(Home.create(tmp_path / "x", "Crony", "pw", FAST_KDF), relay.factory())
    change = roster_change.propose(ri, [newcomer.officer_card()], [], 2)
    change = roster_change.sign(newcomer, change)  # the crony signs, Han does not
    with pytest.raises(RosterError, match="needs 2 officers"):
        roster_change.adopt(han, change)
    assert han.mission().roster.version == 0


async def test_the_officer_whose_device_runs_the_rounds_is_removed_and_another_takes_over(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Ri's device sends for New York (Ri, Han, Kim; 2 of 3). Han and Kim remove
    him; Han's device, the first of those who stay, takes over. Washington adds
    the card Han's device writes, which carries the takeover, and the channel
    goes on both ways; what Ri's device still does reaches nobody."""
    (ri, han, kim), dc = await _three_and_two(tmp_path, relay)
    smith, jones = dc
    await _cosigned_by(ri, han, "before")
    for c in (smith, jones, han, kim):  # every device runs its rounds, as in the field
        await c.settle()
    assert [i.channel_id for i in smith.inbox()] == [smith.channel_for("New York").channel_id]
    change = roster_change.propose(han, [], [ri.officer.officer_id], 2)
    change = roster_change.sign(kim, change)
    for c in (han, kim):
        roster_change.adopt(c, change)
    assert han.is_runner and not kim.is_runner
    assert kim.mission().runner_id == han.officer.officer_id
    channel_id = han.channel_for("Washington").channel_id
    with pytest.raises(ConfigError, match="taken over sending"):
        han.compose(channel_id, note("too early"))
    [shown] = han.status()["channels"]
    assert shown["takeover_pending"] is True and shown["sent"] == 0
    card = han.mission_card()
    assert [cid for cid, _ in card.takeovers] == [channel_id]
    for c in dc:
        c.add_peer(card.encode())
    for _ in range(6):
        for c in (han, kim, smith, jones, ri):
            await c.sync(1)
    assert not han._endpoint(channel_id).resuming
    [shown] = han.status()["channels"]
    assert shown["takeover_pending"] is False and shown["sent"] == 1
    # The same card added again (or replayed to a device) moves nothing a second time.
    before = smith._endpoint(channel_id).next_recv_round
    smith.add_peer(card.encode())
    assert smith._endpoint(channel_id).next_recv_round == before
    # Ri's device, no longer on the roster, cannot write a card the peer takes.
    with pytest.raises(CardError):
        smith.add_peer(ri.mission_card().encode())
    assert han.mission_card().takeovers == ()  # answered: later cards need not carry it
    await _cosigned_by(han, kim, "from the new desk")
    await smith.settle()
    await jones.settle()
    assert len(smith.inbox()) == 2 and len(jones.inbox()) == 2
    # Washington answers; Han's and Kim's devices receive it, Ri's does not.
    await _washington_writes(smith, jones, "answer")
    for c in (han, kim, ri):
        await c.settle()
    assert len(han.inbox()) == 1 and len(kim.inbox()) == 1
    assert ri.inbox() == []
    # Ri's device still drafts and runs its rounds: nothing of it reaches Washington.
    ri.compose(ri.channel_for("Washington").channel_id, note("from the defector"))
    for _ in range(4):
        await ri.sync(1)
        await smith.sync(1)
    assert len(smith.inbox()) == 2


async def test_a_card_that_rolls_the_roster_back_is_refused(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    old_card = ny[0].mission_card().encode()
    await _add_kim(tmp_path, relay, ny)
    dc[0].add_peer(ny[0].mission_card().encode())
    with pytest.raises(CardError, match="rolls the mission's roster back"):
        dc[0].add_peer(old_card)
    assert await cosigned(ny, "still fine")


async def test_a_co_signature_past_the_threshold_changes_nothing_and_raises_no_alarm(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """2 of 3: both colleagues approve; the later co-signature finds the draft queued."""
    ny, _ = await two_missions(tmp_path, relay)
    ri, han = ny
    kim, _ = await _add_kim(tmp_path, relay, ny)
    ri.compose(ri.channel_for("Washington").channel_id, note("two of three"))
    for c in (ri, han, kim):
        await c.settle()
    for c in (han, kim):
        [req] = c.cosign_requests()
        c.approve_cosign(req.request_id)
    alarms: list[str] = []
    for _ in range(3):
        for c in (han, kim, ri):
            alarms += (await c.sync(1)).alarms
    [draft] = ri.drafts()
    assert draft.outgoing.state.value in ("queued", "delivered")
    assert draft.outgoing.message is not None
    assert len(draft.outgoing.message.signatures) == 2  # the author's and the first co-signer's
    assert alarms == [], alarms


async def test_a_draft_waiting_for_its_cosignature_survives_a_roster_change(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Drafted under roster 0, co-signed after roster 1 was adopted: the draft is
    drafted again under roster 1 and the colleagues asked again, so the message
    arrives and the channel goes on (a message signed under the old roster would
    be refused by the peer, which would then wait for it for ever)."""
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    smith, jones = dc
    old = ri.compose(ri.channel_for("Washington").channel_id, note("before the change"))
    await ri.settle()
    await han.settle()
    [stale] = han.cosign_requests()
    kim, _ = await _add_kim(tmp_path, relay, ny)
    for c in dc:
        c.add_peer(ri.mission_card().encode())
    [new] = [d for d in ri.drafts() if d.draft_id != old.draft_id]
    assert {d.draft_id: d.outgoing.state.value for d in ri.drafts()} == {
        old.draft_id: "rejected",
        new.draft_id: "sealed",
    }
    assert new.outgoing.message is not None
    assert new.outgoing.message.header.sender_roster == 1
    # Han signs the old draft anyway: nothing is queued with it.
    han.approve_cosign(stale.request_id)
    await han.settle()
    await ri.settle()
    assert all(d.outgoing.state.value != "queued" for d in ri.drafts())
    # The old request is withdrawn from Han's desk; the new one waits there and
    # on Kim's; one approval completes k = 2, and Kim's request is withdrawn.
    await han.settle()
    await kim.settle()
    [req] = han.cosign_requests()
    assert req.draft_id == new.draft_id
    assert [r.draft_id for r in kim.cosign_requests()] == [new.draft_id]
    han.approve_cosign(req.request_id)
    await han.settle()
    await ri.settle()
    await kim.settle()
    assert kim.cosign_requests() == []
    for c in (smith, jones):
        await c.settle()
    [item] = smith.inbox()
    assert not smith.status()["channels"][0]["alarms"]
    # The channel goes on: the next message arrives too.
    ri.compose(ri.channel_for("Washington").channel_id, note("after the change"))
    await ri.settle()
    await kim.settle()
    [req2] = kim.cosign_requests()
    kim.approve_cosign(req2.request_id)
    await kim.settle()
    await ri.settle()
    await smith.settle()
    assert len(smith.inbox()) == 2
    assert not smith.status()["channels"][0]["alarms"]
    assert item.message_id in {i.message_id for i in smith.inbox()}


async def test_a_message_queued_before_a_change_arrives_after_the_peer_took_the_new_card(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Co-signed and deposited under roster 0; Washington takes New York's card of
    roster 1 before it fetches: the message is accepted under the roster it was
    signed under, and the channel goes on under the new one."""
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    smith, jones = dc
    await _cosigned_by(ri, han, "queued under roster 0")
    kim, _ = await _add_kim(tmp_path, relay, ny)
    for c in dc:
        c.add_peer(ri.mission_card().encode())
    await _cosigned_by(ri, kim, "under roster 1")
    for c in (smith, jones):
        await c.settle()
        assert [SealedMessage.decode(i.message).header.sender_roster for i in c.inbox()] == [0, 1]
        assert not c.status()["channels"][0]["alarms"]
    await ri.settle()
    assert [d.outgoing.state.value for d in ri.drafts()] == ["delivered", "delivered"]


async def test_a_message_under_a_roster_the_peer_lacks_waits_for_its_new_card(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """New York signs under roster 1 before Washington has its new card: the
    message waits on each of Washington's devices, with one alarm that says what
    to do, and arrives when the officer adds the card; the channel goes on."""
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    smith, jones = dc
    kim, _ = await _add_kim(tmp_path, relay, ny)
    await _cosigned_by(ri, kim, "first under roster 1")
    await _cosigned_by(ri, han, "second under roster 1")
    for c in (smith, jones):
        await c.settle()
        assert c.inbox() == []
        [alarm] = c.status()["channels"][0]["alarms"]
        assert "roster version 1 waits" in alarm and "backchannel peer add" in alarm
    await ri.settle()
    assert {d.outgoing.state.value for d in ri.drafts()} == {"queued"}
    card = ri.mission_card().encode()
    for c in (smith, jones):
        c.add_peer(card)
        assert len(c.inbox()) == 2
        assert len(c.status()["channels"][0]["alarms"]) == 1  # nothing new
    await smith.settle()
    await ri.settle()
    assert [d.outgoing.state.value for d in ri.drafts()] == ["delivered", "delivered"]
    await _cosigned_by(ri, kim, "third")
    await smith.settle()
    assert len(smith.inbox()) == 3
    assert len(smith.status()["channels"][0]["alarms"]) == 1


# -- a removal gives the mission a secret the removed officer's copy lacks --------------------


def _request(text: str) -> pi.IntakeRequest:
    return pi.IntakeRequest(pi.Kind.INTERVIEW, "Interview", text, "", secrets.token_bytes(16))


async def test_a_removal_leaves_the_removed_officers_copy_nothing_to_read_or_find(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    kim, _ = await _add_kim(tmp_path, relay, ny)
    defector = han.mission()  # what Han's device holds, and he keeps a copy of
    tenant = defector.tenant_id
    stored_before = dict(relay.store._cells[tenant])
    old_card = ri.intake_card()
    before = pi.seal_request(old_card, _request("sent to the card published before"))
    change = roster_change.propose(ri, [], [han.officer.officer_id], 2)
    change = roster_change.sign(kim, change)
    assert roster_change.RosterChange.decode(change.encode()) == change
    assert roster_change.adopt(han, change) is None
    roster_change.adopt(ri, change)
    roster_change.adopt(kim, change)
    new_card = ri.intake_card()
    assert new_card.intake_key != old_card.intake_key and kim.intake_card() == new_card
    after = pi.seal_request(new_card, _request("sent to the new card"))
    # Every secret the defector's copy holds: none opens what the public sends now.
    for secret in (defector.secret, *defector.intake_secrets):
        key = pi.intake_private_key(secret, defector.mission_id)
        with pytest.raises(AuthenticationError):
            pi.open_request(key, new_card, after)
    # The officers who stay read both: the request sent before, the one sent after.
    assert ri.take_intake([(1, before), (2, after)]) == 2
    assert kim.take_intake([(1, before), (2, after)]) == 2
    assert sorted(i.body for i in kim.intake_items()) == [
        "sent to the card published before", "sent to the new card"
    ]  # fmt: skip
    # And the mission goes on: a co-signed message still reaches Washington.
    await _cosigned_by(ri, kim, "after the removal")
    card = ri.mission_card().encode()
    for c in dc:
        c.add_peer(card)
    await dc[0].settle()
    assert len(dc[0].inbox()) == 1
    # The mailbox moved to the new secret too: of the cells deposited into the
    # mission's tenant since, his copy finds none where it would look, and
    # opens none where it lies.
    since = {
        slot: c.cell
        for slot, c in relay.store._cells[tenant].items()
        if slot not in stored_before and c.cell
    }
    assert since
    ids = [o.officer_id for o in defector.roster.officers]
    findable = {
        joint.mailbox_slot(defector.secret, a, b, n)
        for a in ids for b in ids if a != b for n in range(400)
    }  # fmt: skip
    assert not findable & set(since)
    for slot, cell in since.items():
        with pytest.raises(RemoteProtocolError):
            joint.open_cell(cell, slot, defector.secret, defector.cell_size)


async def credential_reads(relay: InProcessRelay, m: MissionState, credential: str) -> bool:
    """Whether ``credential`` fetches from the tenant of mission ``m`` at ``relay``."""
    async with relay.factory()(m.relay_url, m.tenant_id, credential) as r:
        try:
            await r.fetch([secrets.token_bytes(32)])
        except RelayRefusal as exc:
            assert exc.status == 401
            return False
    return True


async def test_after_a_removal_the_relay_refuses_the_removed_officers_credential(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    ri, han = ny
    kim, _ = await _add_kim(tmp_path, relay, ny)
    defector = han.mission()  # his copy: the relay credential of the mission included
    tenant = defector.tenant_id

    async def reads(credential: str) -> bool:
        return await credential_reads(relay, defector, credential)

    assert await reads(defector.credential)
    change = roster_change.propose(ri, [], [han.officer.officer_id], 2)
    change = roster_change.sign(kim, change)
    assert len(change.credential_signatures) == 2
    roster_change.adopt(ri, change)
    roster_change.adopt(kim, change)
    new = ri.mission().credential
    assert kim.mission().credential == new != defector.credential
    assert ri.mission().pending_rotation and kim.mission().pending_rotation
    # Adopting talked to nobody: the relay still takes the old credential.
    assert await reads(defector.credential)
    # Kim's next round hands the rotation over; Ri's, after, finds it in force.
    await kim.sync(1)
    assert not kim.mission().pending_rotation
    assert not await reads(defector.credential)
    assert await reads(new)
    report = await ri.sync(1)
    assert report.relay_error is None and not ri.mission().pending_rotation
    # The relay never saw the credential itself, only its hash.
    record = relay.store._tenants[tenant]
    assert record.credential_hash == tenant_credential.credential_hash(new)
    # The two who stay go on: a co-signed message still reaches Washington.
    await _cosigned_by(ri, kim, "after the relay moved to the new credential")
    card = ri.mission_card().encode()
    for c in dc:
        c.add_peer(card)
    await dc[0].settle()
    assert len(dc[0].inbox()) == 1


async def _removal_of_han(tmp: Path, relay: InProcessRelay):  # type: ignore[no-untyped-def]
    """Ri, Han and Kim of New York, and Ri's change removing Han, signed by Kim."""
    ny, _ = await two_missions(tmp, relay)
    ri, han = ny
    kim, _ = await _add_kim(tmp, relay, ny)
    change = roster_change.sign(kim, roster_change.propose(ri, [], [han.officer.officer_id], 2))
    return ri, han, kim, change


async def test_a_rotation_the_relay_refuses_is_one_alarm_not_a_request_each_round(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """The relay refuses the hand-over (403 here: a signature spoiled in the
    device's copy): one alarm, then the rounds are the usual exchange again,
    and the device asks once more only after ROTATION_RETRY_SECONDS."""
    ri, _, kim, change = await _removal_of_han(tmp_path, relay)
    roster_change.adopt(ri, change)
    m = ri.mission()
    spoiled = json.loads(m.pending_rotation)
    spoiled["signatures"] = spoiled["signatures"][:1]
    ri._put("mission", b"state", replace(m, pending_rotation=json.dumps(spoiled).encode()))
    now = [time.time()]
    ri._clock = lambda: now[0]
    first = await ri.sync(1)
    [alarm] = first.alarms
    assert "refused to move the mission's credential" in alarm and "403" in alarm
    usual = (await ri.sync(1)).requests
    assert first.requests == usual + 1
    later = await ri.sync(2)
    assert later.alarms == [] and later.requests == 2 * usual
    assert ri.mission().pending_rotation  # kept: asked again after a while
    now[0] += driver.ROTATION_RETRY_SECONDS
    again = await ri.sync(1)
    assert again.requests == usual + 1
    assert again.alarms == [first.alarms[0]]  # the same alarm, kept once on the desk
    # With the rotation as the officers signed it, the next try moves the tenant.
    ri._put("mission", b"state", replace(ri.mission(), pending_rotation=m.pending_rotation))
    now[0] += driver.ROTATION_RETRY_SECONDS
    done = await ri.sync(1)
    assert done.alarms == [] and done.relay_error is None
    assert not ri.mission().pending_rotation
    assert relay.store._tenants[m.tenant_id].credential_hash == tenant_credential.credential_hash(
        m.credential
    )
    assert kim.mission().roster.version == 1  # Kim has not adopted: nothing of his was used


async def test_a_removal_that_too_few_signed_for_the_relay_is_refused(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    _, han, kim, change = await _removal_of_han(tmp_path, relay)
    state = kim.mission()
    only_ri = replace(change, credential_signatures=change.credential_signatures[:1])
    with pytest.raises(RosterError, match="too few of the officers who stay signed"):
        roster_change.adopt(kim, only_ri)
    assert kim.mission() == state  # nothing adopted
    # Han's signature on the credential is worth nothing: he is not on the new roster.
    han_sig = tenant_credential.sign(han.officer, state.tenant_id, change.new, 0, bytes(32))
    with pytest.raises(RosterError, match="too few"):
        roster_change.adopt(kim, replace(only_ri, credential_signatures=(
            *only_ri.credential_signatures, han_sig)))  # fmt: skip
    assert kim.mission() == state


async def test_a_removal_without_one_new_mission_secret_for_all_who_stay_is_refused(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    _, _, kim, change = await _removal_of_han(tmp_path, relay)
    state = kim.mission()
    kim_id = kim.officer.officer_id
    other = secrets.token_bytes(32)
    cert = state.cert_of(kim_id)
    info = roster_change._rekey_info(state.mission_id, kim_id, change.new.version)
    cheating = tuple(
        (o, cert.public_key.seal(other, info) if o == kim_id else b) for o, b in change.rekey
    )
    for bad, why in (
        (replace(change, rekey=(), rekey_commitment=b""), "carries no new mission secret"),
        (replace(change, rekey=tuple(x for x in change.rekey if x[0] != kim_id)),
         "carries no new mission secret"),
        # Another officer's box under Kim's name: it does not open for him.
        (replace(change, rekey=tuple((kim_id if o == kim_id else o, change.rekey[0][1])
                                     for o, _ in change.rekey)), "does not open"),
        # The proposer gives Kim a secret the others do not get.
        (replace(change, rekey=cheating), "does not open, or is not the one"),
        (replace(change, rekey_commitment=bytes(32)), "is not the one it commits to"),
    ):  # fmt: skip
        with pytest.raises(RosterError, match=why.split(",")[0]):
            roster_change.adopt(kim, bad)
        assert kim.mission() == state  # nothing adopted
    assert roster_change.adopt(kim, change) is not None
    assert kim.mission().retired_secrets == (state.secret,) and kim.mission().generation == 1


# -- the mailbox's lanes move to the new secret without losing or doubling anything ------------


async def _three(tmp: Path, relay: InProcessRelay):  # type: ignore[no-untyped-def]
    ny, _ = await two_missions(tmp, relay)
    kim, _ = await _add_kim(tmp, relay, ny)
    ri, han = ny
    change = roster_change.sign(kim, roster_change.propose(ri, [], [han.officer.officer_id], 2))
    roster_change.adopt(han, change)
    return ri, kim, change


async def _rounds(*devices: Client, n: int = 1) -> list[str]:
    alarms: list[str] = []
    for _ in range(n):
        for d in devices:
            report = await d.sync(1)
            alarms += report.alarms
    return alarms


@pytest.mark.parametrize("order", ["sender first", "receiver first", "together"])
async def test_what_went_under_the_old_secret_arrives_once_whoever_adopts_first(
    tmp_path: Path, relay: InProcessRelay, order: str
) -> None:
    ri, kim, change = await _three(tmp_path, relay)
    # A co-sign request goes to Kim under the old secret, partly or wholly,
    # before anyone adopts; then the two adopt, in some order, rounds apart.
    ri.compose(ri.channel_for("Washington").channel_id, note("x" * 6000))
    alarms = await _rounds(ri, n=2)
    first, second = {"sender first": (ri, kim), "receiver first": (kim, ri),
                     "together": (ri, kim)}[order]  # fmt: skip
    roster_change.adopt(first, change)
    if order != "together":
        alarms += await _rounds(ri, kim, n=3)
    roster_change.adopt(second, change)
    # Ri's draft is sealed again under the new roster when he adopts: Kim is asked
    # again, and approves what he is asked until it goes out.
    approved: set[bytes] = set()
    for _ in range(30):
        alarms += await _rounds(ri, kim)
        for req in kim.cosign_requests():
            if req.request_id not in approved:
                approved.add(req.request_id)
                kim.approve_cosign(req.request_id)
        if any(d.outgoing.state.name == "QUEUED" for d in ri.drafts()):
            break
    else:
        raise AssertionError("the draft never got its co-signature")
    assert not [a for a in alarms if "mailbox" in a], alarms
    # Both read their old lanes to the end and dropped them.
    for device, other in ((ri, kim), (kim, ri)):
        assert device.mailbox._old_lanes(other.officer.officer_id) == ()


async def test_an_object_half_sent_when_the_sender_adopts_goes_again_whole(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, kim, change = await _three(tmp_path, relay)
    ri.compose(ri.channel_for("Washington").channel_id, note(secrets.token_urlsafe(7000)))
    kim_id = kim.officer.officer_id
    for _ in range(6):  # until the request is partly out, the rest waiting
        await _rounds(ri)
        if ri.vault.get("mb_cursor", b"mbout" + kim_id) is not None:
            break
    else:
        raise AssertionError("the request never went out in pieces")
    await _rounds(kim)  # Kim holds the first piece
    roster_change.adopt(ri, change)
    roster_change.adopt(kim, change)
    alarms: list[str] = []
    for _ in range(20):
        alarms += await _rounds(ri, kim)
        if kim.cosign_requests():
            break
    assert len(kim.cosign_requests()) == 1
    assert not [a for a in alarms if "mailbox" in a], alarms
    for _ in range(4):
        await _rounds(ri, kim)
    assert kim.mailbox._old_lanes(ri.officer.officer_id) == ()


async def test_a_key_rotated_while_a_change_waits_is_not_lost_when_it_is_adopted(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, kim, change = await _three(tmp_path, relay)
    cert = kim.rotate_epoch_key()
    kim_id = kim.officer.officer_id
    for _ in range(6):
        await _rounds(kim, ri)
        if ri.mission().cert_of(kim_id).epoch == cert.epoch:
            break
    assert ri.mission().cert_of(kim_id).epoch == cert.epoch > 1
    roster_change.adopt(ri, change)  # its file names Kim's earlier key
    assert ri.mission().cert_of(kim_id) == cert


async def test_a_takeover_the_new_runner_cannot_make_yet_waits_for_the_move_to_end(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Han's device holds the peer's re-key waiting for a card when Ri is removed:
    it cannot take that channel over now; it says so, its rounds go on, and it
    takes the channel over in the first round after the move has ended."""
    (ri, han, kim), _ = await _three_and_two(tmp_path, relay)
    cid = han.channel_for("Washington").channel_id
    ep = han._endpoint(cid)
    ep.rekey_held = b"a re-key waiting for the peer's card"
    han._save_endpoint(cid, ep)
    change = roster_change.propose(han, [], [ri.officer.officer_id], 2)
    change = roster_change.sign(kim, change)
    roster_change.adopt(han, change)
    assert han.is_runner and not han._endpoint(cid).sends
    [waits] = [e for e in han.audit_entries() if "takes the channel over once" in e.note]
    assert waits.kind == AuditKind.CHANNEL_REKEYED
    assert han.mission_card().takeovers == ()
    report = await han.sync(2)
    assert report.relay_error is None
    assert not han._endpoint(cid).sends and han.mission_card().takeovers == ()
    # The move ends (the peer's card came): the next round takes the channel over.
    ep = han._endpoint(cid)
    ep.rekey_held = b""
    han._save_endpoint(cid, ep)
    report = await han.sync(1)
    assert report.relay_error is None
    assert han._endpoint(cid).sends and han._endpoint(cid).resuming
    [(taken, _)] = han.mission_card().takeovers
    assert taken == cid
    assert [e for e in han.audit_entries() if "now sends on the channel" in e.note]
    assert not [e for e in han.audit_entries() if "cannot take it over" in e.note]


async def test_a_streams_objects_read_out_of_order_across_a_new_secret_all_open_once(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Ri's notices to Kim fill three cells of the old lane before Kim reads any;
    after both adopt, Ri's next notices go in the new lane, which Kim reads two
    places a round beside the old lane's one: later objects of Ri's pairwise
    stream come before earlier ones, and every notice still opens, once."""
    ri, kim, change = await _three(tmp_path, relay)
    kim_id = kim.officer.officer_id
    await _rounds(ri, kim, n=4)  # what the founding and the change queued, out of the way
    got: list[bytes] = []
    handler = kim.mailbox.handler

    def record(obj: joint.JointObject) -> str | None:
        if obj.kind is joint.JointKind.NOTICE and obj.body.startswith(b"test:"):
            got.append(obj.body)
            return None
        return handler(obj)

    kim.mailbox.handler = record
    early = [b"test: early %d " % i + b"e" * 1500 for i in range(6)]
    for body in early:
        ri.mailbox.send(joint.JointKind.NOTICE, kim_id, body)
    alarms = await _rounds(ri, n=3)  # three cells in the old lane, Kim not reading
    roster_change.adopt(ri, change)
    roster_change.adopt(kim, change)
    late = [b"test: late %d" % i for i in range(6)]
    for body in late:
        ri.mailbox.send(joint.JointKind.NOTICE, kim_id, body)
    for _ in range(8):
        alarms += await _rounds(ri, kim)
    assert not [a for a in alarms if "mailbox" in a], alarms
    assert sorted(got) == sorted(early + late) and len(got) == len(set(got))
    assert got != early + late  # read out of order: the case this is about
