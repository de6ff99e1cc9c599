"""Epoch key rotation and erasure: forward secrecy against a device seized later."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backchannel.client import roster_change
from backchannel.client.home import Home
from backchannel.client.records import DraftRecord
from backchannel.client.sending import SEND_EPOCH_SECONDS
from backchannel.client.service import Client
from backchannel.crypto.primitives import aead_open
from backchannel.errors import BackchannelError
from backchannel.protocol import sealing
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.channel import Policy
from backchannel.protocol.identity import EpochKey
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import note
from backchannel.protocol.sealing import SendEpoch
from tests.client.conftest import FAST_KDF, InProcessRelay, adopt_policy, rounds
from tests.client.test_client_flow import cosigned, two_missions


async def _deliver(ny, dc) -> bytes:  # type: ignore[no-untyped-def]
    await ny[0].settle()
    for c in dc:
        await c.settle()
    return dc[0].inbox()[-1].message_id


async def _opened_together(asker: Client, colleague: Client, mid: bytes) -> str:
    """``asker`` asks to open ``mid``, ``colleague`` releases his share: the text."""
    asker.request_open(mid)
    await asker.settle()
    await colleague.settle()
    [req] = colleague.share_requests()
    colleague.approve_share(req.request_id)
    await colleague.settle()
    await asker.settle()
    return asker.read(mid).text


async def test_rotated_key_is_used_and_the_old_one_can_be_erased(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    smith, jones = dc
    cert = smith.rotate_epoch_key()
    assert cert.epoch == 2
    await smith.settle()
    await jones.settle()
    assert jones.mission().cert_of(smith.officer.officer_id).epoch == 2
    for c in ny:
        c.add_peer(smith.mission_card().encode())
    await cosigned(ny, "under the new key")
    mid = await _deliver(ny, dc)
    assert smith.erase_epoch_keys(keep=1) == 1
    assert await _opened_together(smith, jones, mid) == "under the new key"
    # The erasure is durable: a reopened home has only the new key.
    smith.home.close()
    reopened = Home.unlock(smith.home.path, "pw")
    assert [k.epoch for k in reopened.epoch_keys] == [2]
    reopened.close()


async def test_message_sealed_to_an_erased_key_cannot_be_opened(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    smith = dc[0]
    await cosigned(ny, "recorded today, stolen tomorrow")
    mid = await _deliver(ny, dc)
    smith.rotate_epoch_key()
    smith.erase_epoch_keys(keep=1)
    # The thief holds Smith's unlocked device: the old epoch's box no longer opens.
    with pytest.raises(BackchannelError):
        smith.request_open(mid)
    assert smith.inbox_item(mid.hex()[:8]).own_share == b""


def test_keep_must_leave_the_current_key(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "h", "Officer", "pw", FAST_KDF)
    with pytest.raises(BackchannelError):
        home.erase_epoch_keys(keep=0)
    home.close()


def _opens_a_share(stolen: SendEpoch, msg: SealedMessage) -> bool:
    """Whether the share chains of ``stolen`` (a copy of the sending device's epoch)
    open any share of ``msg``, at any of the next eight positions."""
    for i, chain in enumerate(stolen.chains, start=1):
        for index in range(stolen.next_index, stolen.next_index + 8):
            key, _ = chain.key_at(index)
            for ct in msg.shares:
                try:
                    aead_open(key, bytes(12), ct, sealing._share_aad(msg.header, i))
                except BackchannelError:
                    continue
                return True
    return False


async def test_the_send_epoch_moves_on_each_day_and_a_stolen_one_opens_nothing_after(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """A copy of the sender's device state (its send epoch) opens the shares of
    what is sealed the same day, and none of what is sealed the day after."""
    ny, dc = await two_missions(tmp_path, relay)
    ri = ny[0]
    now = [time.time()]
    ri._clock = lambda: now[0]
    cid = ri.channel_for("Washington").channel_id

    async def sealed(text: str) -> SealedMessage:
        draft_id = await cosigned(ny, text)
        await ri.settle()  # the co-signature comes back: queued
        msg = ri._get("drafts", draft_id, DraftRecord).outgoing.message
        assert msg is not None
        return msg

    first = await sealed("today")
    stolen = ri.channel(cid).send_epoch
    assert stolen is not None and stolen.epoch_id == first.header.epoch_id
    now[0] += SEND_EPOCH_SECONDS - 60
    same_day = await sealed("later today")
    assert same_day.header.epoch_id == stolen.epoch_id
    assert _opens_a_share(stolen, same_day)  # the attack works while the epoch lasts
    now[0] += 60
    next_day = await sealed("tomorrow")
    assert next_day.header.epoch_id != stolen.epoch_id and next_day.announcement
    assert not _opens_a_share(stolen, next_day)
    # Washington opens all three.
    for c in dc:
        await c.settle()
    assert len(dc[0].inbox()) == 3
    assert not dc[0].status()["channels"][0]["alarms"]


async def test_the_mission_policy_sets_how_long_a_send_epoch_lasts(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """New York's officers agree on send keys that renew every hour: a copy of
    the sender's epoch opens what is sealed within the hour and nothing after."""
    ny, dc = await two_missions(tmp_path, relay)
    ri = ny[0]
    await adopt_policy(list(ny), {Policy.RECORD}, 0, 3600)
    assert ri.mission_policy().epoch_seconds == 3600
    now = [time.time()]
    ri._clock = lambda: now[0]
    cid = ri.channel_for("Washington").channel_id

    async def sealed(text: str) -> SealedMessage:
        draft_id = await cosigned(ny, text)
        await ri.settle()
        msg = ri._get("drafts", draft_id, DraftRecord).outgoing.message
        assert msg is not None
        return msg

    await sealed("now")
    stolen = ri.channel(cid).send_epoch
    assert stolen is not None
    now[0] += 3600 - 60
    within = await sealed("within the hour")
    assert within.header.epoch_id == stolen.epoch_id and _opens_a_share(stolen, within)
    now[0] += 60
    after = await sealed("an hour on")
    assert after.header.epoch_id != stolen.epoch_id and not _opens_a_share(stolen, after)
    for c in dc:
        await c.settle()
    assert len(dc[0].inbox()) == 3


async def test_the_send_epoch_moves_on_at_a_change_of_our_roster(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, _ = await two_missions(tmp_path, relay)
    ri, han = ny
    cid = ri.channel_for("Washington").channel_id
    await cosigned(ny, "before")
    await ri.settle()
    before = ri.channel(cid).send_epoch
    kim = Client(Home.create(tmp_path / "kim", "Officer Kim", "pw", FAST_KDF), relay.factory())
    change = roster_change.propose(ri, [kim.officer_card()], [], 2)
    change = roster_change.sign(kim, roster_change.sign(han, change))
    for c in (ri, han, kim):
        roster_change.adopt(c, change)
    ri.compose(cid, note("after"))
    after = ri.channel(cid).send_epoch
    assert before is not None and after is not None
    assert after.epoch_id != before.epoch_id
    assert ri.channel(cid).epoch_own_roster == 1


def _box_opens(msg: SealedMessage, keys: list[EpochKey], officer: Client, peer: Client) -> bool:
    """Whether ``keys`` open ``officer``'s box of the epoch ``msg`` announces."""
    assert msg.announcement
    cid = msg.header.channel_id
    ep = peer._endpoint(cid)
    try:
        sealing.accept_announcement(
            msg.announcement, cid, ep.in_direction, peer.mission().roster, officer.officer, keys
        )
    except BackchannelError:
        return False
    return True


async def test_an_officers_key_renews_by_itself_and_a_copy_taken_before_opens_nothing_after(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Jones's device state is copied, his epoch key with it. A day on, his
    device draws a new key by itself, Smith's device (which sends on the
    channel) announces it, and New York seals to it from its next epoch: the
    copy opens nothing New York sends after. Washington reads it as before."""
    ny, dc = await two_missions(tmp_path, relay)
    ri = ny[0]
    smith, jones = dc
    now = [time.time()]
    for c in (*ny, *dc):
        c._clock = lambda: now[0]
    devices = [*ny, *dc]
    assert await rounds(devices, 2) == []
    stolen = list(jones.home.epoch_keys)

    async def sealed(text: str) -> SealedMessage:
        draft_id = await cosigned(ny, text)
        await ri.settle()
        msg = ri._get("drafts", draft_id, DraftRecord).outgoing.message
        assert msg is not None
        return msg

    before = await sealed("before")
    assert _box_opens(before, stolen, jones, smith)  # the copy works until the key renews
    now[0] += 24 * 3600 + 60
    assert await rounds(devices, 8) == []
    assert [k.epoch for k in jones.home.epoch_keys] == [1, 2]
    dc_id = smith.mission().mission_id
    jones_id = jones.officer.officer_id
    assert [c.epoch for c in ri._peer_card(dc_id).certs if c.officer_id == jones_id] == [2]
    learned = [e for e in ri.audit_entries() if e.kind == AuditKind.PEER_KEY_LEARNED]
    assert any(e.subject == jones_id for e in learned)
    mine = [e for e in jones.audit_entries() if e.kind == AuditKind.EPOCH_KEY_ROTATED]
    assert mine and "schedule" in mine[-1].note
    after = await sealed("after")
    assert after.header.epoch_id != before.header.epoch_id
    assert not _box_opens(after, stolen, jones, smith)
    assert _box_opens(after, list(jones.home.epoch_keys), jones, smith)
    # Washington opens it together, as before.
    mid = await _deliver(ny, dc)
    assert await _opened_together(smith, jones, mid) == "after"
    for c in devices:
        assert not c.status()["channels"][0]["alarms"], c.officer.name
