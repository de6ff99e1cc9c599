"""The device's pairwise streams to and from its colleagues (protocol/joint_stream.py).

Each queue of the mailbox (joint objects, audit entries) has its own sending
stream to each colleague, so a stream's objects go out in the order they were
sealed; a reader mostly sees them in order, and keeps the keys of positions
it passed over for the few that come late (a mailbox changing its secret
reads its old and new mailbox lane side by side). Both ends live in the vault, and
each moves in the transaction that queues or acts on its object: a chain key
is used once, then overwritten.

A reader keeps the :data:`KEEP_IN` newest streams of each colleague open (a
sender has one per queue, and begins a new one every 64 objects); the ids of
the streams it closed are kept (the newest :data:`KEEP_CLOSED`), and an object
of a closed stream is refused as a replay.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

from backchannel.client.device import Device
from backchannel.errors import RemoteProtocolError, ReplayDetected, SignatureError
from backchannel.protocol import joint, joint_stream
from backchannel.protocol.identity import EpochKeyCert

#: Sending ends, by queue name and recipient.
STREAMS_OUT = "streams_out"
#: Reading ends, by sender and stream id.
STREAMS_IN = "streams_in"
#: A sender's open streams, oldest first.
STREAM_LIST = "streams_list"
#: A sender's closed streams, oldest first.
STREAMS_CLOSED = "streams_closed"
#: Open streams kept per colleague (a sender has one per queue).
KEEP_IN = 32
#: Closed stream ids kept per colleague.
KEEP_CLOSED = 4096


@dataclass(frozen=True)
class StreamIds:
    ids: tuple[bytes, ...] = ()


class Streams:
    def __init__(self, dev: Device) -> None:
        self.dev = dev

    def seal(self, obj: joint.JointObject, recipient: EpochKeyCert, queue: str) -> bytes:
        """Seal ``obj`` at the next position of this queue's stream to its recipient
        and keep the stream's new end (in the caller's transaction)."""
        dev = self.dev
        key = queue.encode() + b"/" + obj.recipient_id
        kept: joint_stream.StreamOut | None = dev._get(STREAMS_OUT, key, joint_stream.StreamOut)
        stream = joint_stream.stream_for(kept, recipient, secrets.token_bytes)
        m = dev.mission()
        sealed, after = joint_stream.seal(
            obj, dev.officer, recipient, m.mission_id, stream, secrets.token_bytes
        )
        dev._put(STREAMS_OUT, key, after)
        return sealed

    def open(self, slot_sender: bytes, sealed: bytes) -> joint.JointObject:
        """Open an object from a colleague's stream and move its stream's reading end
        past it (in the caller's transaction). Raises :class:`RemoteProtocolError`,
        with nothing kept, for an object that does not open and verify, or names
        another sender than ``slot_sender``, whose mailbox lane it came in."""
        dev = self.dev
        m = dev.mission()
        keys = dev.home.epoch_keys
        found = joint_stream.stream_of(sealed)
        if found is None:
            return joint.open_object(sealed, dev.officer, keys, m.roster, m.mission_id)
        sender, stream_id, _ = found
        if sender != slot_sender:
            raise SignatureError("a mailbox object names another sender than its slot")
        key = sender + stream_id
        kept: joint_stream.StreamIn | None = dev._get(STREAMS_IN, key, joint_stream.StreamIn)
        if kept is None and stream_id in self._ids(STREAMS_CLOSED, sender):
            raise ReplayDetected("an object of a closed stream arrived")
        try:
            obj, after = joint_stream.open_stream(
                sealed, dev.officer, keys, m.roster, m.mission_id, kept
            )
        except RemoteProtocolError:
            # An object sealed with HPKE alone (queued before streams) whose first
            # encapsulation byte happens to read as the stream form.
            with contextlib.suppress(RemoteProtocolError):
                return joint.open_object(sealed, dev.officer, keys, m.roster, m.mission_id)
            raise
        dev._put(STREAMS_IN, key, after)
        if kept is None:
            self._opened(sender, stream_id)
        return obj

    def _ids(self, table: str, sender: bytes) -> tuple[bytes, ...]:
        listed: StreamIds | None = self.dev._get(table, sender, StreamIds)
        return listed.ids if listed is not None else ()

    def _opened(self, sender: bytes, stream_id: bytes) -> None:
        """A stream of ``sender`` read for the first time: close the oldest open ones
        past :data:`KEEP_IN`."""
        dev = self.dev
        live = (*self._ids(STREAM_LIST, sender), stream_id)
        closing = live[:-KEEP_IN]
        for old in closing:
            dev.vault.delete(STREAMS_IN, sender + old)
        dev._put(STREAM_LIST, sender, StreamIds(live[-KEEP_IN:]))
        if closing:
            closed = (*self._ids(STREAMS_CLOSED, sender), *closing)
            dev._put(STREAMS_CLOSED, sender, StreamIds(closed[-KEEP_CLOSED:]))
