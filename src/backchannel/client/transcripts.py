"""A channel's transcript in the vault, in parts, so that a message writes only the last.

A transcript holds a hash for every message either way (``T[s]``, a hash
chain: ``protocol/transcript.py``). Kept as one record, every message sent or
taken in wrote the whole history again. Here it is a head (``transcripts``,
key: channel id) and the hashes raw, :data:`PART` to a record
(``transcript_parts``, key: channel id, ``s`` or ``r``, the part's number).
A move writes the head and the parts from the first one that changed: as
the transcript is a hash chain, two with the same hash at the same place
agree on everything before it, so a message appended rewrites one part.

A head record begins with :data:`~backchannel.client.statecodec.BESIDE`; a
record that begins with ``{`` is a transcript kept whole (a home written
before), read as it is and kept in parts at its next move.
"""

from __future__ import annotations

from dataclasses import dataclass

from backchannel.client import statecodec
from backchannel.client.vault import Vault
from backchannel.errors import CorruptKeystore
from backchannel.protocol.transcript import Transcript

#: The head of each channel's transcript (key: channel id).
TRANSCRIPTS = "transcripts"
#: The hashes of each channel's transcript, :data:`PART` to a record.
TRANSCRIPT_PARTS = "transcript_parts"
#: Hashes in one part (8 KiB).
PART = 256
_HASH = 32
_SENT, _RECEIVED = b"s", b"r"
_MISSING = "a channel's transcript is missing from this home; restore it from backup"


@dataclass(frozen=True)
class TranscriptHead:
    """What a transcript is besides its hashes, and how many of them each way.

    The last hash of each direction is kept too: with the counts, equal heads
    name equal transcripts (a hash chain), so a head read again that has not
    changed needs none of its parts read.
    """

    channel_id: bytes
    out_direction: int
    sent_from: int
    sent: int
    received: int
    sent_last: bytes
    received_last: bytes


def head_of(t: Transcript) -> TranscriptHead:
    return TranscriptHead(
        t.channel_id,
        t.out_direction,
        t.sent_from,
        len(t.sent),
        len(t.received),
        t.sent[-1] if t.sent else b"",
        t.received[-1] if t.received else b"",
    )


def read_head(vault: Vault, channel_id: bytes) -> tuple[bytes, TranscriptHead | None]:
    """The head record's bytes, and its head (None: a transcript kept whole)."""
    raw = vault.get(TRANSCRIPTS, channel_id)
    if raw is None:
        raise CorruptKeystore(_MISSING)
    if raw[:1] != bytes([statecodec.BESIDE]):
        return raw, None
    head, _ = statecodec.loads_beside(TranscriptHead, raw)
    return raw, head


def read(vault: Vault, channel_id: bytes, raw: bytes, head: TranscriptHead | None) -> Transcript:
    """The transcript whose head :func:`read_head` gave."""
    if head is None:
        return statecodec.loads(Transcript, raw)
    sent = _hashes(vault, channel_id, _SENT, head.sent)
    received = _hashes(vault, channel_id, _RECEIVED, head.received)
    if (sent[-1] if sent else b"") != head.sent_last or (
        received[-1] if received else b""
    ) != head.received_last:
        raise CorruptKeystore(_MISSING)
    return Transcript(head.channel_id, head.out_direction, sent, received, head.sent_from)


def keep(vault: Vault, channel_id: bytes, t: Transcript, held: Transcript | None) -> None:
    """Store ``t``, which was ``held`` (None: kept whole, or not at all), inside
    the caller's transaction: its head, and the parts from the first that changed."""
    same_origin = held is not None and held.sent_from == t.sent_from
    sent, received = (None, None) if held is None else (held.sent, held.received)
    _keep_direction(vault, channel_id, _SENT, t.sent, sent, same_origin)
    _keep_direction(vault, channel_id, _RECEIVED, t.received, received, True)
    vault.put(TRANSCRIPTS, channel_id, statecodec.dumps_beside(head_of(t), b""))


def _keep_direction(
    vault: Vault,
    channel_id: bytes,
    direction: bytes,
    new: tuple[bytes, ...],
    old: tuple[bytes, ...] | None,
    comparable: bool,
) -> None:
    """Write the parts of ``new`` from the first that differs from ``old`` (the
    hashes kept in parts, None: none; not ``comparable``: counted from another
    place, so every part is written), and delete those past its end."""
    old = old or ()
    same = 0
    if comparable and old and len(new) >= len(old) and new[len(old) - 1] == old[-1]:
        same = len(old)  # a hash chain: the same hash there, the same before it
    parts = -(-len(new) // PART)
    for number in range(same // PART if same < len(new) else parts, parts):
        vault.put(
            TRANSCRIPT_PARTS,
            _key(channel_id, direction, number),
            b"".join(new[number * PART : (number + 1) * PART]),
        )
    for number in range(parts, -(-len(old) // PART)):
        vault.delete(TRANSCRIPT_PARTS, _key(channel_id, direction, number))


def _hashes(vault: Vault, channel_id: bytes, direction: bytes, count: int) -> tuple[bytes, ...]:
    out: list[bytes] = []
    for number in range(-(-count // PART)):
        raw = vault.get(TRANSCRIPT_PARTS, _key(channel_id, direction, number))
        want = min(PART, count - number * PART)
        if raw is None or len(raw) != want * _HASH:
            raise CorruptKeystore(_MISSING)
        out += vault.decoded(TRANSCRIPT_PARTS, _key(channel_id, direction, number), raw, bytes,
                             _split)  # fmt: skip
    return tuple(out)


def _split(kind: object, raw: bytes) -> tuple[bytes, ...]:
    return tuple(raw[i : i + _HASH] for i in range(0, len(raw), _HASH))


def _key(channel_id: bytes, direction: bytes, number: int) -> bytes:
    return channel_id + direction + number.to_bytes(4, "big")
