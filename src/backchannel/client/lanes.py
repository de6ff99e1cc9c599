"""The device's pairwise lanes to and from its colleagues (protocol/joint_lane.py).

Each queue of the mailbox (joint objects, audit entries) has its own sending
lane to each colleague: objects of one queue go out in the order they were
sealed, so a reader sees each lane's positions in order and skips forward only
over objects set aside on the way. Both ends live in the vault, and each moves
in the transaction that queues or acts on its object: a chain key is used
once, then overwritten.

A reader keeps the reading ends of a colleague's :data:`KEEP_IN` most recent
lanes; an older lane's objects would be ones his device sealed long ago and
never sent, and are set aside.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from backchannel.client.device import Device
from backchannel.errors import RemoteProtocolError, SignatureError
from backchannel.protocol import joint, joint_lane
from backchannel.protocol.identity import EpochKeyCert

#: Sending ends, by queue name and recipient.
LANES_OUT = "lanes_out"
#: Reading ends, by sender and lane id.
LANES_IN = "lanes_in"
#: A sender's lanes read so far, oldest first.
LANE_LIST = "lanes_list"
#: Reading ends kept per colleague.
KEEP_IN = 8


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
            self._remember(sender, lane_id)
        return obj

    def _remember(self, sender: bytes, lane_id: bytes) -> None:
        dev = self.dev
        listed: LaneIds | None = dev._get(LANE_LIST, sender, LaneIds)
        ids = (*(listed.ids if listed is not None else ()), lane_id)
        for old in ids[:-KEEP_IN]:
            dev.vault.delete(LANES_IN, sender + old)
        dev._put(LANE_LIST, sender, LaneIds(ids[-KEEP_IN:]))
