"""The device's pairwise lanes to and from its colleagues (protocol/joint_lane.py).

Each queue of the mailbox (joint objects, audit entries) has its own sending
lane to each colleague, so a lane's objects go out in the order they were
sealed; a reader mostly sees them in order, and keeps the keys of positions
it passed over for the few that come late (a mailbox changing its secret
reads its old and new lane side by side). Both ends live in the vault, and
each moves in the transaction that queues or acts on its object: a chain key
is used once, then overwritten.

A reader keeps the :data:`KEEP_IN` newest lanes of each colleague open (a
sender has one per queue, and begins a new one every 64 objects); the ids of
the lanes it closed are kept (the newest :data:`KEEP_CLOSED`), and an object
of a closed lane is refused as a replay.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from backchannel.client.device import Device
from backchannel.errors import RemoteProtocolError, ReplayDetected, SignatureError
from backchannel.protocol import joint, joint_lane
from backchannel.protocol.identity import EpochKeyCert

#: Sending ends, by queue name and recipient.
LANES_OUT = "lanes_out"
#: Reading ends, by sender and lane id.
LANES_IN = "lanes_in"
#: A sender's open lanes, oldest first.
LANE_LIST = "lanes_list"
#: A sender's closed lanes, oldest first.
LANES_CLOSED = "lanes_closed"
#: Open lanes kept per colleague (a sender has one per queue).
KEEP_IN = 32
#: Closed lane ids kept per colleague.
KEEP_CLOSED = 4096


@dataclass(frozen=True)
class LaneIds:
    ids: tuple[bytes, ...] = ()


class Lanes:
    def __init__(self, dev: Device) -> None:
        self.dev = dev

    def seal(self, obj: joint.JointObject, recipient: EpochKeyCert, queue: str) -> bytes:
        """Seal ``obj`` at the next position of this queue's lane to its recipient
        and keep the lane's new end (in the caller's transaction)."""
        dev = self.dev
        key = queue.encode() + b"/" + obj.recipient_id
        kept: joint_lane.LaneOut | None = dev._get(LANES_OUT, key, joint_lane.LaneOut)
        lane = joint_lane.lane_for(kept, recipient, secrets.token_bytes)
        m = dev.mission()
        sealed, after = joint_lane.seal(
            obj, dev.officer, recipient, m.mission_id, lane, secrets.token_bytes
        )
        dev._put(LANES_OUT, key, after)
        return sealed

    def open(self, slot_sender: bytes, sealed: bytes) -> joint.JointObject:
        """Open an object from a colleague's lane and move its lane's reading end
        past it (in the caller's transaction). Raises :class:`RemoteProtocolError`,
        with nothing kept, for an object that does not open and verify, or names
        another sender than ``slot_sender``, whose mailbox lane it came in."""
        dev = self.dev
        m = dev.mission()
        keys = dev.home.epoch_keys
        found = joint_lane.lane_of(sealed)
        if found is None:
            return joint.open_object(sealed, dev.officer, keys, m.roster, m.mission_id)
        sender, lane_id, _ = found
        if sender != slot_sender:
            raise SignatureError("a mailbox object names another sender than its slot")
        key = sender + lane_id
        kept: joint_lane.LaneIn | None = dev._get(LANES_IN, key, joint_lane.LaneIn)
        if kept is None and lane_id in self._ids(LANES_CLOSED, sender):
            raise ReplayDetected("an object of a closed lane arrived")
        try:
            obj, after = joint_lane.open_lane(
                sealed, dev.officer, keys, m.roster, m.mission_id, kept
            )
        except RemoteProtocolError:
            # An object sealed with HPKE alone (queued before lanes) whose first
            # encapsulation byte happens to read as the lane form.
            try:
                return joint.open_object(sealed, dev.officer, keys, m.roster, m.mission_id)
            except RemoteProtocolError:
                pass
            raise
        dev._put(LANES_IN, key, after)
        if kept is None:
            self._opened(sender, lane_id)
        return obj

    def _ids(self, table: str, sender: bytes) -> tuple[bytes, ...]:
        listed: LaneIds | None = self.dev._get(table, sender, LaneIds)
        return listed.ids if listed is not None else ()

    def _opened(self, sender: bytes, lane_id: bytes) -> None:
        """A lane of ``sender`` read for the first time: close the oldest open ones
        past :data:`KEEP_IN`."""
        dev = self.dev
        live = (*self._ids(LANE_LIST, sender), lane_id)
        closing = live[:-KEEP_IN]
        for old in closing:
            dev.vault.delete(LANES_IN, sender + old)
        dev._put(LANE_LIST, sender, LaneIds(live[-KEEP_IN:]))
        if closing:
            closed = (*self._ids(LANES_CLOSED, sender), *closing)
            dev._put(LANES_CLOSED, sender, LaneIds(closed[-KEEP_CLOSED:]))
