"""The mailbox on pairwise streams (client/streams.py): objects between colleagues
cost a chain step each instead of an encapsulation, a replayed object is set
aside, both ends outlive a restart, and objects sealed the older way still open."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from backchannel.client import statecodec
from backchannel.client.home import Home
from backchannel.client.mailbox import JOINT_OUT, JointOut
from backchannel.client.service import Client
from backchannel.client.streams import KEEP_IN, STREAM_LIST, STREAMS_CLOSED
from backchannel.protocol import joint, joint_stream
from tests.client.conftest import InProcessRelay
from tests.client.test_mailbox_packing import _carry, _quiet_lane


def _queued(c: Client) -> list[JointOut]:
    return [out for _, out in c.vault.pending_decoded(JOINT_OUT, JointOut, statecodec.loads)]


def _cell_at_next(sender: Client, recipient: Client, sealed: bytes) -> bytes:
    """A cell at ``recipient``'s next position of ``sender``'s mailbox lane carrying ``sealed``
    (what a colleague holding the mission secret could deposit there)."""
    m = recipient.mission()
    secret = m.secret_of(m.generation)
    n = recipient.mailbox.next_slot(sender.officer.officer_id)
    slot = joint.mailbox_slot(secret, sender.officer.officer_id, recipient.officer.officer_id, n)
    chunk = joint.Chunk(bytes([9]) * 16, 0, 1, sealed)  # a piece 0 of 1
    return joint.pack_cell(slot, [chunk], secret, m.cell_size, secrets.token_bytes)


def _send(sender: Client, recipient: Client, *bodies: bytes) -> None:
    for body in bodies:
        sender.mailbox.send(joint.JointKind.NOTICE, recipient.officer.officer_id, body)


def _slip_in(lane_of: Client, recipient: Client, sealed: bytes) -> tuple[list[bytes], list[str]]:
    """What ``recipient`` makes of a cell carrying ``sealed`` at his next position
    of ``lane_of``'s mailbox lane: the bodies handed on, and the alarms."""
    taken: list[bytes] = []
    recipient.mailbox.handler = lambda obj: taken.append(obj.body)  # type: ignore[func-returns-value]
    alarms: list[str] = []
    cell = _cell_at_next(lane_of, recipient, sealed)
    recipient.mailbox.take(lane_of.officer.officer_id, [cell], alarms)
    return taken, alarms


async def test_only_every_sixteenth_object_of_a_stream_carries_an_encapsulation(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han = await _quiet_lane(tmp_path, relay)
    _send(ri, han, b"test: one", b"test: two")
    queued = [out.sealed for out in _queued(ri)]
    # Only an object at a multiple of 16 along the stream carries its key.
    for sealed in queued:
        n = joint_stream.stream_of(sealed)[2]  # type: ignore[index]
        assert (len(sealed) > 1_000) == (n % joint_stream.REOPEN == 0), n
    assert min(len(s) for s in queued) < 200
    assert _carry(ri, han, 1) == [b"test: one", b"test: two"]


async def test_a_replayed_object_is_set_aside_and_not_acted_on(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han = await _quiet_lane(tmp_path, relay)
    _send(ri, han, b"test: approve once")
    [out] = _queued(ri)
    assert _carry(ri, han, 1) == [b"test: approve once"]
    taken, alarms = _slip_in(ri, han, out.sealed)
    assert taken == []
    assert alarms == ["a mailbox object from a colleague arrived again and was set aside"]
    # The stream goes on (Ri's cell for the position the replay took is lost to
    # it at the relay): Ri's next object opens.
    ri.mailbox.produce(han.officer.officer_id)
    _send(ri, han, b"test: next")
    assert _carry(ri, han, 1) == [b"test: next"]


async def test_an_object_in_another_colleagues_mailbox_lane_is_refused(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Ri's object for Han placed in another sender's mailbox lane (as a colleague
    holding the mission secret could): refused before it moves Ri's stream."""
    ri, han = await _quiet_lane(tmp_path, relay)
    _send(ri, han, b"test: for Han")
    [out] = _queued(ri)
    # Han reads it as if it came in his own mailbox lane to himself.
    taken, alarms = _slip_in(han, han, out.sealed)
    assert taken == []
    assert alarms == ["a mailbox object from a colleague failed to verify and was set aside"]
    assert _carry(ri, han, 1) == [b"test: for Han"]  # and Ri's stream was not moved


async def test_both_ends_of_a_stream_outlive_a_restart(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ri, han = await _quiet_lane(tmp_path, relay)
    _send(ri, han, b"test: before")
    assert _carry(ri, han, 1) == [b"test: before"]
    for c in (ri, han):
        c.home.close()
    ri = Client(Home.unlock(ri.home.path, "pw"), relay.factory())
    han = Client(Home.unlock(han.home.path, "pw"), relay.factory())
    _send(ri, han, b"test: after")
    [out] = _queued(ri)
    assert joint_stream.stream_of(out.sealed)[2] > 1  # type: ignore[index]  # further on
    assert _carry(ri, han, 1) == [b"test: after"]


async def test_an_object_sealed_with_hpke_alone_still_opens(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """An object queued by an earlier version (sealed with HPKE per object)."""
    ri, han = await _quiet_lane(tmp_path, relay)
    m = ri.mission()
    to_han = han.officer.officer_id
    obj = joint.JointObject(
        joint.JointKind.NOTICE, bytes([9]) * 16, ri.officer.officer_id, to_han, b"test: older"
    )
    sealed = joint.seal_object(obj, ri.officer, m.cert_of(to_han), m.mission_id)
    assert _slip_in(ri, han, sealed) == ([b"test: older"], [])


async def test_a_reader_closes_old_streams_and_refuses_their_objects_after(
    tmp_path: Path, relay: InProcessRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream per object (so that many streams come quickly): Han keeps the newest
    KEEP_IN open; an object of a stream he closed is refused as a replay."""
    ri, han = await _quiet_lane(tmp_path, relay)
    monkeypatch.setattr(joint_stream, "STREAM_OBJECTS", 1)
    first: list[JointOut] = []
    for i in range(KEEP_IN + 2):
        _send(ri, han, b"test: %d" % i)
        if i == 0:
            first = _queued(ri)
        assert _carry(ri, han, 1) == [b"test: %d" % i]
    ri_id = ri.officer.officer_id
    assert len(han.mailbox.streams._ids(STREAM_LIST, ri_id)) == KEEP_IN
    [out] = first
    stream_id = joint_stream.stream_of(out.sealed)[1]  # type: ignore[index]
    assert stream_id in han.mailbox.streams._ids(STREAMS_CLOSED, ri_id)
    ri.mailbox.produce(han.officer.officer_id)  # the position the replay takes
    taken, alarms = _slip_in(ri, han, out.sealed)
    assert taken == []
    assert alarms == ["a mailbox object from a colleague arrived again and was set aside"]
