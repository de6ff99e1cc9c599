"""The channel transcript: per-direction sequence numbers and hash chains.

For each direction ``T[0] = H(start label || channel_id || direction)`` and
``T[s] = H(step label || T[s-1] || digest of message s)``. Every message names
its ``seq`` and ``T[seq-1]`` of its own direction, and the last message of the
other direction its author had seen (``peer_seq``, ``T_peer[peer_seq]``).
Receipts carry ``(seq, T[seq])`` back. So the receiver detects:

* a replay: a ``seq`` already accepted, with the same digest;
* a gap (a dropped message, or a reorder seen as one): ``seq`` beyond the next;
* a fork: a different message at a ``seq`` already accepted, a ``prev_hash``
  that is not ours, or a peer whose view of *our* history differs from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backchannel.crypto import labels
from backchannel.crypto.primitives import equal, sha256
from backchannel.errors import ForkDetected, GapDetected, LocalProtocolError, ReplayDetected
from backchannel.protocol.message import Header


def start_hash(channel_id: bytes, direction: int) -> bytes:
    return sha256(labels.TRANSCRIPT_START, channel_id, bytes([direction]))


def step(prev: bytes, digest: bytes) -> bytes:
    return sha256(labels.TRANSCRIPT_STEP, prev, digest)


@dataclass(frozen=True, slots=True)
class Transcript:
    """One device's view of both directions of a channel.

    ``sent[s - sent_from]`` / ``received[s]`` hold ``T[s]`` (index 0 is the start
    hash). A device that took over sending from another (``protocol-v1.md``
    §7.8) holds our history only from what the peer said it has (``sent_from``),
    and none of it (``sent`` empty) until the peer says so.
    """

    channel_id: bytes
    out_direction: int
    sent: tuple[bytes, ...]
    received: tuple[bytes, ...]
    sent_from: int = 0

    @classmethod
    def start(cls, channel_id: bytes, out_direction: int) -> Transcript:
        return cls(
            channel_id,
            out_direction,
            (start_hash(channel_id, out_direction),),
            (start_hash(channel_id, 1 - out_direction),),
        )

    @property
    def next_seq(self) -> int:
        return self.sent_from + len(self.sent)

    @property
    def received_seq(self) -> int:
        return len(self.received) - 1

    def header_fields(self) -> dict[str, int | bytes]:
        """The transcript fields of the next outgoing header."""
        return {
            "seq": self.next_seq,
            "prev_hash": self.sent[-1],
            "peer_seq": self.received_seq,
            "peer_hash": self.received[-1],
        }

    def record_sent(self, header: Header, digest: bytes) -> Transcript:
        if not self.sent:
            raise LocalProtocolError("our history on this channel is not known here yet")
        if header.seq != self.next_seq or not equal(header.prev_hash, self.sent[-1]):
            raise ForkDetected("a message was sealed on a stale view of our own history")
        return replace(self, sent=(*self.sent, step(self.sent[-1], digest)))

    def unknown_sent(self) -> Transcript:
        """This device takes over sending: our history is another device's until
        the peer says what it holds (:meth:`resume`)."""
        return replace(self, sent=(), sent_from=0)

    def resume(self, seq: int, head: bytes) -> Transcript:
        """Our history as the peer holds it: ``seq`` messages, the last with ``T[seq]``."""
        return replace(self, sent=(head,), sent_from=seq)

    def accept(self, header: Header, digest: bytes, *, check_peer: bool = True) -> Transcript:
        """Accept the peer's next message or raise a :class:`TranscriptError`.

        ``check_peer=False`` is for a device that only receives: it does not
        hold our sent history, so the peer's view of it is checked by the
        device that sends.
        """
        if header.direction == self.out_direction or not equal(header.channel_id, self.channel_id):
            raise ForkDetected("message is not from the peer on this channel")
        expected = len(self.received)
        if header.seq < expected:
            if equal(self.received[header.seq], step(self.received[header.seq - 1], digest)):
                raise ReplayDetected(f"message {header.seq} was already received")
            raise ForkDetected(f"a different message {header.seq} was received before")
        if header.seq > expected:
            raise GapDetected(
                f"messages {expected} to {header.seq - 1} are missing: the relay dropped "
                "or reordered traffic"
            )
        if not equal(header.prev_hash, self.received[-1]):
            raise ForkDetected("the peer's history before this message differs from ours")
        if check_peer:
            self.check_peer_view(header.peer_seq, header.peer_hash)
        return replace(self, received=(*self.received, step(self.received[-1], digest)))

    def check_peer_view(self, seq: int, head: bytes) -> None:
        """The peer says it has our messages up to ``seq`` with hash ``head``.

        Of our history before ``sent_from`` this device holds nothing to compare
        (another device sent it); with none of it held, nothing is checked."""
        if not self.sent or seq < self.sent_from:
            return
        if seq >= self.next_seq:
            raise ForkDetected("the peer claims messages from us that we never sent")
        if not equal(self.sent[seq - self.sent_from], head):
            raise ForkDetected(
                "the peer was shown a history of our messages that differs from ours"
            )
