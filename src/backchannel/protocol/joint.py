"""Joint sessions inside a mission: objects one officer's device sends another's.

Co-sign requests, co-signatures, share requests and key shares travel between
officers of one mission as *joint objects*: signed by the sending officer
(Ed25519), sealed with HPKE to the receiving officer's epoch key, and cut into
fixed-size cells for the relay's mission-internal mailbox (or written to a
file for air-gapped use). The relay sees cells of the usual size in slots only
the mission's officers can compute.

::

    object  = 0x01 | kind u8 | object_id[16] | sender_id[16] | recipient_id[16] | var(body)
    sealed  = HPKE(kem_pk_recipient, object || ed25519_sig("…/sig/joint", object), info)
    info    = "…/hpke/joint" || mission_id || sender_id || recipient_id
    slot(s, r, c) = HMAC(mission_secret, "…/joint/slot" || s || r || u64 c)[0:32]
    cell    = nonce[12] || AEAD(HMAC(mission_secret, "…/joint/cell" || slot), nonce,
              chunk, slot)
    chunk   = 0x01 | piece | { piece } | zero padding
    piece   = object_id[16] | u16 index | u16 count | u16 len | data

Every round each device deposits one mailbox cell per colleague, at slot
``slot(s, r, round)``: the next piece of an object waiting for that colleague,
or a cover cell (object id all zeros, one empty piece) when nothing waits.
Behind the last piece of an object a cell carries as many whole objects
waiting after it, in order, as it still holds (each a piece 0 of 1), and
then perhaps the first piece of the next one, cut to the room left (its
other pieces follow in the next cells); the first all-zero object id after a
piece, or the end of the cell, ends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from backchannel.crypto import labels
from backchannel.crypto.primitives import (
    NONCE_LEN,
    TAG_LEN,
    aead_open,
    aead_seal,
    equal,
    hmac_sha256,
)
from backchannel.crypto.signing import ED25519_SIG_LEN
from backchannel.errors import AuthenticationError, DecodeError, SignatureError
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.constants import SLOT_LEN
from backchannel.protocol.identity import OFFICER_ID_LEN, EpochKey, EpochKeyCert, Officer, Rng
from backchannel.protocol.roster import Roster

_VERSION = 1
OBJECT_ID_LEN = 16
MAX_BODY = 512 * 1024
_PIECE_HEADER = OBJECT_ID_LEN + 6
_CHUNK_HEADER = 1 + _PIECE_HEADER
#: The object id of a cover cell (real objects have random ids).
COVER_ID = bytes(OBJECT_ID_LEN)


class JointKind(IntEnum):
    COSIGN_REQUEST = 1
    COSIGNATURE = 2
    SHARE_REQUEST = 3
    SHARE = 4
    NOTICE = 5
    EPOCH_CERT = 6
    AUDIT = 7
    #: The opening of an anchor of the audit log (``protocol/audit_anchor.py``).
    ANCHOR = 8


@dataclass(frozen=True, slots=True)
class JointObject:
    kind: JointKind
    object_id: bytes
    sender_id: bytes
    recipient_id: bytes
    body: bytes

    def __repr__(self) -> str:
        return f"JointObject({self.kind.name}, {len(self.body)} bytes)"

    def encode(self) -> bytes:
        w = Writer().u8(_VERSION).u8(self.kind).fixed(self.object_id, OBJECT_ID_LEN)
        w.fixed(self.sender_id, OFFICER_ID_LEN).fixed(self.recipient_id, OFFICER_ID_LEN)
        return w.var(self.body).bytes()

    @classmethod
    def decode(cls, raw: bytes) -> JointObject:
        r = Reader(raw)
        expect_version(r, _VERSION, "joint object")
        try:
            kind = JointKind(r.u8())
        except ValueError:
            raise DecodeError("unknown joint object kind") from None
        obj = cls(
            kind,
            r.fixed(OBJECT_ID_LEN),
            r.fixed(OFFICER_ID_LEN),
            r.fixed(OFFICER_ID_LEN),
            r.var(MAX_BODY),
        )
        r.end()
        return obj


def _info(mission_id: bytes, sender: bytes, recipient: bytes) -> bytes:
    return labels.HPKE_JOINT + mission_id + sender + recipient


def signed(obj: JointObject, sender: Officer, recipient: EpochKeyCert) -> bytes:
    """``object || ed25519_sig("…/sig/joint", object)``, the plaintext a seal hides;
    ``obj`` must name ``sender`` and ``recipient``."""
    if not equal(obj.sender_id, sender.officer_id) or not equal(
        obj.recipient_id, recipient.officer_id
    ):
        raise DecodeError("joint object names other officers")
    raw = obj.encode()
    return raw + sender.signing_key.sign_ed25519(labels.SIG_JOINT, raw)


def verified(plain: bytes, sender_id: bytes, me: Officer, roster: Roster) -> JointObject:
    """The object in ``plain`` (:func:`signed`), once ``sender_id``'s signature on
    it verifies and it names him as its sender and ``me`` as its recipient."""
    if len(plain) < ED25519_SIG_LEN:
        raise DecodeError("joint object too short")
    raw, sig = plain[:-ED25519_SIG_LEN], plain[-ED25519_SIG_LEN:]
    roster.officer(sender_id).verify_key.verify_ed25519(sig, labels.SIG_JOINT, raw)
    obj = JointObject.decode(raw)
    if not equal(obj.sender_id, sender_id) or not equal(obj.recipient_id, me.officer_id):
        raise SignatureError("joint object was addressed to someone else")
    return obj


def seal_object(
    obj: JointObject, sender: Officer, recipient: EpochKeyCert, mission_id: bytes
) -> bytes:
    """Sign with the sender's key and seal to the recipient's epoch key."""
    plain = signed(obj, sender, recipient)
    info = _info(mission_id, obj.sender_id, obj.recipient_id)
    return obj.sender_id + recipient.public_key.seal(plain, info)


def open_object(
    sealed: bytes, me: Officer, keys: Sequence[EpochKey], roster: Roster, mission_id: bytes
) -> JointObject:
    """Open a joint object sent to ``me``; the sender must be on ``roster``."""
    if len(sealed) < OFFICER_ID_LEN:
        raise DecodeError("joint object too short")
    sender_id, box = sealed[:OFFICER_ID_LEN], sealed[OFFICER_ID_LEN:]
    if not roster.contains(sender_id):
        raise SignatureError("joint object from an officer not on our roster")
    info = _info(mission_id, sender_id, me.officer_id)
    plain: bytes | None = None
    for key in reversed(list(keys)):
        try:
            plain = key.private_key.open(box, info)
            break
        except AuthenticationError:
            continue
    if plain is None or len(plain) < ED25519_SIG_LEN:
        raise AuthenticationError("decryption failed")
    return verified(plain, sender_id, me, roster)


def mailbox_slot(mission_secret: bytes, sender: bytes, recipient: bytes, counter: int) -> bytes:
    data = sender + recipient + counter.to_bytes(8, "big")
    return hmac_sha256(mission_secret, labels.JOINT_SLOT, data)[:SLOT_LEN]


def _cell_key(mission_secret: bytes, slot: bytes) -> bytes:
    return hmac_sha256(mission_secret, labels.JOINT_CELL, slot)


def to_cells(
    sealed: bytes,
    object_id: bytes,
    slots: Sequence[bytes],
    mission_secret: bytes,
    cell_size: int,
    rng: Rng,
) -> list[bytes]:
    """Cut ``sealed`` into cells for ``slots`` (use :func:`cells_needed` first)."""
    chunks = split_object(sealed, cell_size)
    if len(chunks) != len(slots):
        raise DecodeError("slot count does not match the object size")
    return [
        chunk_cell(slot, object_id, i, len(chunks), chunk, mission_secret, cell_size, rng)
        for i, (chunk, slot) in enumerate(zip(chunks, slots, strict=True))
    ]


def split_object(sealed: bytes, cell_size: int, head: int = 0) -> list[bytes]:
    """The pieces of a sealed object, one per cell, in order.

    ``head``: the first piece holds that many bytes (the room left behind other
    pieces in the cell that carries it), the others as many as a cell holds.
    """
    cap = chunk_capacity(cell_size)
    if not 0 <= head < len(sealed) or head > cap:
        head = 0
    rest = sealed[head:]
    chunks = ([sealed[:head]] if head else []) + [
        rest[i : i + cap] for i in range(0, len(rest), cap)
    ] or [b""]
    if len(chunks) > 0xFFFF:
        raise DecodeError("joint object too large")
    return chunks


def chunk_cell(
    slot: bytes,
    object_id: bytes,
    index: int,
    count: int,
    data: bytes,
    mission_secret: bytes,
    cell_size: int,
    rng: Rng,
) -> bytes:
    """One mailbox cell carrying piece ``index`` of ``count`` of an object."""
    return pack_cell(slot, [Chunk(object_id, index, count, data)], mission_secret, cell_size, rng)


def pack_cell(
    slot: bytes, chunks: Sequence[Chunk], mission_secret: bytes, cell_size: int, rng: Rng
) -> bytes:
    """One mailbox cell carrying ``chunks`` in order (see :func:`room_after`)."""
    if not chunks or any(c.is_cover for c in chunks[1:]):
        raise ValueError("a cell carries one or more pieces, a cover piece only alone")
    w = Writer().u8(_VERSION)
    for c in chunks:
        w.fixed(c.object_id, OBJECT_ID_LEN).u16(c.index).u16(c.count).u16(len(c.data))
        w.fixed(c.data, len(c.data))
    body = w.bytes()
    size = cell_size - NONCE_LEN - TAG_LEN
    if len(body) > size:
        raise ValueError("pieces larger than the cell")
    body += bytes(size - len(body))
    nonce = rng(NONCE_LEN)
    return nonce + aead_seal(_cell_key(mission_secret, slot), nonce, body, slot)


def room_after(chunks: Sequence[Chunk], cell_size: int) -> int:
    """The largest sealed object that still fits whole behind ``chunks``."""
    used = 1 + sum(_PIECE_HEADER + len(c.data) for c in chunks)
    return cell_size - NONCE_LEN - TAG_LEN - used - _PIECE_HEADER


def cover_cell(slot: bytes, mission_secret: bytes, cell_size: int, rng: Rng) -> bytes:
    """A mailbox cell that carries nothing: the all-zero object id, one empty piece.

    Sealed like every other cell, so only the mission's officers can tell it
    from a piece of a real object.
    """
    return chunk_cell(slot, COVER_ID, 0, 1, b"", mission_secret, cell_size, rng)


def chunk_capacity(cell_size: int) -> int:
    return cell_size - NONCE_LEN - TAG_LEN - _CHUNK_HEADER


def cells_needed(sealed_len: int, cell_size: int) -> int:
    cap = chunk_capacity(cell_size)
    return max(1, -(-sealed_len // cap))


@dataclass(frozen=True, slots=True)
class Chunk:
    object_id: bytes
    index: int
    count: int
    data: bytes

    @property
    def is_cover(self) -> bool:
        return self.object_id == COVER_ID


def open_cell(cell: bytes, slot: bytes, mission_secret: bytes, cell_size: int) -> Chunk:
    """The one piece a cell carries (a cell with more is refused: see :func:`open_chunks`)."""
    chunks = open_chunks(cell, slot, mission_secret, cell_size)
    if len(chunks) != 1:
        raise DecodeError("joint cell padding is not zero")
    return chunks[0]


def open_chunks(cell: bytes, slot: bytes, mission_secret: bytes, cell_size: int) -> list[Chunk]:
    """The pieces a cell carries, in order: one, or (behind a last piece) more whole objects."""
    if len(cell) != cell_size:
        raise DecodeError(f"a cell must be exactly {cell_size} bytes")
    body = aead_open(_cell_key(mission_secret, slot), cell[:NONCE_LEN], cell[NONCE_LEN:], slot)
    r = Reader(body)
    expect_version(r, _VERSION, "joint cell")
    chunks = [_read_piece(r)]
    while not chunks[0].is_cover and r.remaining() >= _PIECE_HEADER:
        if chunks[-1].index + 1 != chunks[-1].count:
            break  # only behind an object's last piece may another begin
        if not any(r.peek(OBJECT_ID_LEN)):
            break
        piece = _read_piece(r)
        if piece.index != 0:
            raise DecodeError("a piece behind another must begin its object")
        chunks.append(piece)
    if any(r.rest()):
        raise DecodeError("joint cell padding is not zero")
    return chunks


def _read_piece(r: Reader) -> Chunk:
    oid, index, count, length = r.fixed(OBJECT_ID_LEN), r.u16(), r.u16(), r.u16()
    if not index < count:
        raise DecodeError("joint cell numbering out of range")
    return Chunk(oid, index, count, r.fixed(length))


def join_chunks(chunks: Sequence[Chunk]) -> bytes:
    if not chunks or len(chunks) != chunks[0].count:
        raise DecodeError("joint object is incomplete")
    if any(c.index != i or c.object_id != chunks[0].object_id for i, c in enumerate(chunks)):
        raise DecodeError("joint object chunks are inconsistent")
    return b"".join(c.data for c in chunks)
