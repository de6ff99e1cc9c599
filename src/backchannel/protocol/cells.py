"""Fixed-size cells: the only thing the relay and the network ever see.

Every round each side deposits exactly one cell of ``cell_size`` bytes (4,096
by default) into that round's slot, real or cover::

    cell  = nonce [12] || ChaCha20-Poly1305(cell_key[r][d], nonce, inner, aad)
    aad   = label || channel_id || round u64 || direction u8
    inner = version u8 | flags u8 | [receipt] | [gossip] | [fragment] | [more]
            | zero padding
    receipt  = seq u64 | transcript hash [32] | officer_id [16] | ed25519 sig [64]
    gossip   = the sender's view of the relay's log (misbehaviour.Gossip, 166 bytes)
    fragment = message_id [16] | index u16 | count u16 | length u16 | data
    more     = n u8 (1 or more) | n fragments: the fragments that follow the first
               in the sender's queue, as many whole ones as the cell holds
    flags    = 0x01 receipt | 0x02 fragment | 0x04 gossip | 0x08 the fragment is
               a control object's (a channel re-key, ``protocol/rekey.py``)
               | 0x10 more fragments follow (never with 0x08: a control
               object's fragment travels alone)

The key, address and AAD are unique to (channel, round, direction), so a cell
moved to another slot or round fails to open. Cover cells are encrypted
padding: the ciphertext of a cover cell and of a real one are both uniformly
random bytes of the same length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backchannel.crypto import labels
from backchannel.crypto.primitives import HASH_LEN, NONCE_LEN, TAG_LEN, aead_open, aead_seal
from backchannel.crypto.signing import ED25519_SIG_LEN
from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol.channel import RoundKeys
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.identity import OFFICER_ID_LEN, Officer
from backchannel.protocol.message import MESSAGE_ID_LEN
from backchannel.protocol.misbehaviour import GOSSIP_LEN, Gossip
from backchannel.protocol.roster import Roster

_VERSION = 1
FLAG_RECEIPT = 0x01
FLAG_FRAGMENT = 0x02
FLAG_GOSSIP = 0x04
#: The fragment belongs to a control object of the channel (``protocol/rekey.py``),
#: not to a message.
FLAG_CONTROL = 0x08
#: More fragments of messages follow the first (short messages share a cell).
FLAG_MORE = 0x10
RECEIPT_LEN = 8 + HASH_LEN + OFFICER_ID_LEN + ED25519_SIG_LEN
FRAGMENT_HEADER_LEN = MESSAGE_ID_LEN + 6
MAX_FRAGMENTS = 256


def inner_size(cell_size: int) -> int:
    return cell_size - NONCE_LEN - TAG_LEN


def fragment_capacity(cell_size: int) -> int:
    """Largest fragment data a cell can hold next to a receipt and gossip."""
    return inner_size(cell_size) - 2 - RECEIPT_LEN - GOSSIP_LEN - FRAGMENT_HEADER_LEN


@dataclass(frozen=True, slots=True)
class Receipt:
    """One recipient officer's signed statement: "we hold your messages up to
    ``seq``, and their transcript hash is ``head``"."""

    seq: int
    head: bytes
    officer_id: bytes
    signature: bytes

    @staticmethod
    def _signed(channel_id: bytes, direction: int, seq: int, head: bytes) -> bytes:
        return channel_id + bytes([direction]) + seq.to_bytes(8, "big") + head

    @classmethod
    def make(
        cls, channel_id: bytes, acked_direction: int, seq: int, head: bytes, officer: Officer
    ) -> Receipt:
        data = cls._signed(channel_id, acked_direction, seq, head)
        sig = officer.signing_key.sign_ed25519(labels.SIG_RECEIPT, data)
        return cls(seq, head, officer.officer_id, sig)

    def verify(self, channel_id: bytes, acked_direction: int, roster: Roster) -> None:
        if not roster.contains(self.officer_id):
            raise SignatureError("receipt signed by an officer not on the peer's roster")
        data = self._signed(channel_id, acked_direction, self.seq, self.head)
        roster.officer(self.officer_id).verify_key.verify_ed25519(
            self.signature, labels.SIG_RECEIPT, data
        )

    def encode(self) -> bytes:
        return (
            Writer()
            .u64(self.seq)
            .fixed(self.head, HASH_LEN)
            .fixed(self.officer_id, OFFICER_ID_LEN)
            .fixed(self.signature, ED25519_SIG_LEN)
            .bytes()
        )

    @classmethod
    def read(cls, r: Reader) -> Receipt:
        return cls(r.u64(), r.fixed(HASH_LEN), r.fixed(OFFICER_ID_LEN), r.fixed(ED25519_SIG_LEN))


@dataclass(frozen=True, slots=True)
class Fragment:
    message_id: bytes
    index: int
    count: int
    data: bytes
    #: A piece of a control object (a channel re-key or its acknowledgement).
    control: bool = False

    def __repr__(self) -> str:
        return f"Fragment({self.index + 1}/{self.count}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class CellContent:
    """What one cell carries: nothing (cover), or any of a receipt, gossip and a fragment."""

    receipt: Receipt | None = None
    fragment: Fragment | None = None
    gossip: Gossip | None = None
    #: Fragments that follow :attr:`fragment` in the same cell (messages only).
    more: tuple[Fragment, ...] = ()

    @property
    def is_cover(self) -> bool:
        return self.fragment is None

    @property
    def fragments(self) -> tuple[Fragment, ...]:
        """Every fragment the cell carries, in the sender's order."""
        return (self.fragment, *self.more) if self.fragment is not None else ()

    def spare(self, cell_size: int) -> int:
        """The bytes of padding this content leaves in a cell of ``cell_size``."""
        return inner_size(cell_size) - len(self._body())

    def with_more(self, queue: Sequence[Fragment], cell_size: int) -> CellContent:
        """This content and, after its fragment, as many whole fragments from the
        front of ``queue`` as the cell still holds (none after a control
        fragment, and none that is one)."""
        if self.fragment is None or self.fragment.control:
            return self
        spare = self.spare(cell_size) - (0 if self.more else 1)
        more = list(self.more)
        for f in queue:
            need = FRAGMENT_HEADER_LEN + len(f.data)
            if f.control or need > spare or len(more) == 0xFF:
                break
            more.append(f)
            spare -= need
        return CellContent(self.receipt, self.fragment, self.gossip, tuple(more))

    def _body(self) -> bytes:
        if self.more and (self.fragment is None or any(f.control for f in self.fragments)):
            raise ValueError("only fragments of messages share a cell")
        flags = (
            (FLAG_RECEIPT if self.receipt else 0)
            | (FLAG_FRAGMENT if self.fragment else 0)
            | (FLAG_GOSSIP if self.gossip else 0)
            | (FLAG_CONTROL if self.fragment and self.fragment.control else 0)
            | (FLAG_MORE if self.more else 0)
        )
        w = Writer().u8(_VERSION).u8(flags)
        if self.receipt:
            w.fixed(self.receipt.encode(), RECEIPT_LEN)
        if self.gossip:
            w.fixed(self.gossip.encode(), GOSSIP_LEN)
        if self.fragment:
            _write_fragment(w, self.fragment)
        if self.more:
            w.u8(len(self.more))
            for f in self.more:
                _write_fragment(w, f)
        return w.bytes()

    def encode(self, cell_size: int) -> bytes:
        body = self._body()
        size = inner_size(cell_size)
        if len(body) > size:
            raise ValueError("cell content larger than the cell")
        return body + bytes(size - len(body))

    @classmethod
    def decode(cls, raw: bytes) -> CellContent:
        r = Reader(raw)
        expect_version(r, _VERSION, "cell")
        flags = r.u8()
        if flags & ~(FLAG_RECEIPT | FLAG_FRAGMENT | FLAG_GOSSIP | FLAG_CONTROL | FLAG_MORE):
            raise DecodeError("unknown cell flags")
        if flags & FLAG_CONTROL and not flags & FLAG_FRAGMENT:
            raise DecodeError("a cell flags a control fragment it does not carry")
        if flags & FLAG_MORE and not flags & FLAG_FRAGMENT:
            raise DecodeError("a cell flags more fragments and carries no first one")
        if flags & FLAG_CONTROL and flags & FLAG_MORE:
            raise DecodeError("a control object's fragment travels alone")
        receipt = Receipt.read(r) if flags & FLAG_RECEIPT else None
        gossip = Gossip.read(r) if flags & FLAG_GOSSIP else None
        fragment = None
        more: tuple[Fragment, ...] = ()
        if flags & FLAG_FRAGMENT:
            fragment = _read_fragment(r, bool(flags & FLAG_CONTROL))
        if flags & FLAG_MORE:
            n = r.u8()
            if n == 0:
                raise DecodeError("a cell flags more fragments and carries none")
            more = tuple(_read_fragment(r, False) for _ in range(n))
        if any(r.rest()):
            raise DecodeError("cell padding is not zero")
        return cls(receipt, fragment, gossip, more)


def _write_fragment(w: Writer, f: Fragment) -> None:
    w.fixed(f.message_id, MESSAGE_ID_LEN).u16(f.index).u16(f.count).u16(len(f.data))
    w.fixed(f.data, len(f.data))


def _read_fragment(r: Reader, control: bool) -> Fragment:
    mid, index, count, length = r.fixed(MESSAGE_ID_LEN), r.u16(), r.u16(), r.u16()
    if not (0 <= index < count <= MAX_FRAGMENTS) or length == 0:
        raise DecodeError("fragment numbering out of range")
    return Fragment(mid, index, count, r.fixed(length), control)


def _aad(channel_id: bytes, round_no: int, direction: int) -> bytes:
    return labels.CELL_AAD + channel_id + round_no.to_bytes(8, "big") + bytes([direction])


def seal_cell(
    content: CellContent,
    keys: RoundKeys,
    channel_id: bytes,
    direction: int,
    cell_size: int,
    nonce: bytes,
) -> bytes:
    inner = content.encode(cell_size)
    aad = _aad(channel_id, keys.round, direction)
    return nonce + aead_seal(keys.cell_keys[direction], nonce, inner, aad)


def open_cell(
    cell: bytes, keys: RoundKeys, channel_id: bytes, direction: int, cell_size: int
) -> CellContent:
    """Decrypt a cell fetched from the slot of ``keys.round``; raise on any tampering."""
    if len(cell) != cell_size:
        raise DecodeError(f"a cell must be exactly {cell_size} bytes")
    aad = _aad(channel_id, keys.round, direction)
    inner = aead_open(keys.cell_keys[direction], cell[:NONCE_LEN], cell[NONCE_LEN:], aad)
    return CellContent.decode(inner)


def fragment(
    message: bytes, message_id: bytes, capacity: int, control: bool = False
) -> list[Fragment]:
    if not message:
        raise ValueError("empty message")
    chunks = [message[i : i + capacity] for i in range(0, len(message), capacity)]
    if len(chunks) > MAX_FRAGMENTS:
        raise ValueError("message too long for one channel message")
    return [Fragment(message_id, i, len(chunks), c, control) for i, c in enumerate(chunks)]


def reassemble(fragments: Sequence[Fragment]) -> bytes:
    """Join the fragments of one message, in order; raise if any is missing or inconsistent."""
    if not fragments:
        raise DecodeError("no fragments")
    first = fragments[0]
    ordered = sorted(fragments, key=lambda f: f.index)
    if (
        len(ordered) != first.count
        or any(f.index != i for i, f in enumerate(ordered))
        or any(
            f.count != first.count or f.message_id != first.message_id or f.control != first.control
            for f in ordered
        )
    ):
        raise DecodeError("fragments of a message are missing or inconsistent")
    return b"".join(f.data for f in ordered)
