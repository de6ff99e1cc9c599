"""The log queries of a batch fetch and the payloads that answer them.

A batch fetch (:mod:`backchannel.protocol.batch`) carries a fixed number of
queries, each exactly :data:`QUERY_LEN` bytes: ``kind u8 | 32 bytes of
parameters``, the unused bytes zero. The relay answers each one, in order,
with ``kind u8 | ok u8 | len u32 | payload``. Payloads (all integers
big-endian; a *proof* is ``count u8 | count x hash [32]``):

* ``NONE``: empty (padding queries, so that every fetch has the same shape);
* ``CONSISTENCY`` (``first u64 | second u64``): the proof's hashes, concatenated;
* ``HEAD_AT`` (``size u64``): the 113-byte compact signed head of that size;
* ``ENTRY`` (``leaf_index u64 | batch_position u32 | tree_size u64``):
  ``leaf_len u16 | leaf | batch proof | inclusion proof`` (:func:`decode_entry`);
* ``ABSENCE`` (``slot [32]``): a fresh read of that slot (:class:`SlotRead`);
* ``LEAF`` (``index u64``): the leaf's bytes.
* ``CHECKPOINT`` (``size u64``): the log's latest cosigned checkpoint, with
  what verifies it and the consistency proof between its size and ``size``
  (:class:`~.witnessing.CheckpointAnswer`).

A query the relay cannot answer has ``ok = 0`` and a short ASCII reason as
its payload. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from backchannel.crypto.primitives import HASH_LEN
from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.batch_log import (
    MAX_CELL_LEN,
    MAX_LEAF_LEN,
    BatchPlace,
    read_absence,
    read_cell,
    read_hashes,
    read_leaf,
    write_hashes,
    write_leaf,
)
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.constants import SLOT_LEN
from backchannel.protocol.merkle import MAX_PROOF_LEN, TREE_HEAD_LEN, TreeHead
from backchannel.protocol.misbehaviour import COMPACT_HEAD_LEN
from backchannel.protocol.witnessing import CheckpointAnswer

#: One query on the wire: kind, then 32 bytes of parameters.
QUERY_LEN = 33
_PARAMS_LEN = 32
#: Longest reason a refused query carries.
MAX_REASON_LEN = 200


class QueryKind(IntEnum):
    NONE = 0
    CONSISTENCY = 1
    HEAD_AT = 2
    ENTRY = 3
    ABSENCE = 4
    LEAF = 5
    CHECKPOINT = 6


#: The integer parameters of each kind, by width in bytes (ABSENCE holds a slot).
_SHAPES: dict[QueryKind, tuple[int, ...]] = {
    QueryKind.NONE: (),
    QueryKind.CONSISTENCY: (8, 8),
    QueryKind.HEAD_AT: (8,),
    QueryKind.ENTRY: (8, 4, 8),
    QueryKind.ABSENCE: (),
    QueryKind.LEAF: (8,),
    QueryKind.CHECKPOINT: (8,),
}


@dataclass(frozen=True, slots=True)
class Query:
    """One log query of a batch fetch; build it with the class methods."""

    kind: QueryKind
    params: bytes = field(default=bytes(_PARAMS_LEN), repr=False)  # may hold a slot

    def __post_init__(self) -> None:
        if len(self.params) != _PARAMS_LEN:
            raise LocalProtocolError("query parameters are 32 bytes")

    @classmethod
    def _of(cls, kind: QueryKind, *numbers: int) -> Query:
        w = Writer()
        for width, value in zip(_SHAPES[kind], numbers, strict=True):
            if not 0 <= value < 1 << (8 * width):
                raise LocalProtocolError("a query parameter is out of range")
            w.fixed(value.to_bytes(width, "big"), width)
        raw = w.bytes()
        return cls(kind, raw + bytes(_PARAMS_LEN - len(raw)))

    @classmethod
    def none(cls) -> Query:
        return cls(QueryKind.NONE)

    @classmethod
    def consistency(cls, first: int, second: int) -> Query:
        return cls._of(QueryKind.CONSISTENCY, first, second)

    @classmethod
    def head_at(cls, size: int) -> Query:
        return cls._of(QueryKind.HEAD_AT, size)

    @classmethod
    def entry(cls, leaf_index: int, batch_position: int, tree_size: int) -> Query:
        return cls._of(QueryKind.ENTRY, leaf_index, batch_position, tree_size)

    @classmethod
    def absence(cls, slot: bytes) -> Query:
        if len(slot) != SLOT_LEN:
            raise LocalProtocolError("a slot address is 32 bytes")
        return cls(QueryKind.ABSENCE, slot)

    @classmethod
    def leaf(cls, index: int) -> Query:
        return cls._of(QueryKind.LEAF, index)

    @classmethod
    def checkpoint(cls, known_size: int) -> Query:
        return cls._of(QueryKind.CHECKPOINT, known_size)

    @property
    def numbers(self) -> tuple[int, ...]:
        """The integer parameters, e.g. ``(first, second)`` of a CONSISTENCY query."""
        out, pos = [], 0
        for width in _SHAPES[self.kind]:
            out.append(int.from_bytes(self.params[pos : pos + width], "big"))
            pos += width
        return tuple(out)

    @property
    def slot(self) -> bytes:
        """The slot of an ABSENCE query."""
        if self.kind is not QueryKind.ABSENCE:
            raise LocalProtocolError("only an ABSENCE query names a slot")
        return self.params

    def encode(self) -> bytes:
        return bytes([self.kind]) + self.params

    @classmethod
    def read(cls, r: Reader) -> Query:
        code = r.u8()
        try:
            kind = QueryKind(code)
        except ValueError:
            raise DecodeError(f"unknown log query kind {code}") from None
        params = r.fixed(_PARAMS_LEN)
        used = _PARAMS_LEN if kind is QueryKind.ABSENCE else sum(_SHAPES[kind])
        if any(params[used:]):
            raise DecodeError("a log query's unused bytes must be zero")
        return cls(kind, params)


# -- payloads -------------------------------------------------------------------------


def encode_consistency(proof: Sequence[bytes]) -> bytes:
    if len(proof) > MAX_PROOF_LEN or any(len(h) != HASH_LEN for h in proof):
        raise LocalProtocolError("a consistency proof is at most 64 hashes")
    return b"".join(proof)


def decode_consistency(payload: bytes) -> tuple[bytes, ...]:
    if len(payload) % HASH_LEN or len(payload) > MAX_PROOF_LEN * HASH_LEN:
        raise DecodeError("a consistency proof is whole hashes, at most 64")
    return tuple(payload[i : i + HASH_LEN] for i in range(0, len(payload), HASH_LEN))


def encode_entry(leaf: bytes, batch_proof: Sequence[bytes], inclusion: Sequence[bytes]) -> bytes:
    w = Writer()
    write_leaf(w, leaf)
    write_hashes(w, batch_proof)
    write_hashes(w, inclusion)
    return w.bytes()


def decode_entry(payload: bytes) -> tuple[bytes, tuple[bytes, ...], tuple[bytes, ...]]:
    """(leaf, batch proof, inclusion proof) of an ENTRY answer."""
    r = Reader(payload)
    out = read_leaf(r), read_hashes(r), read_hashes(r)
    r.end()
    return out


_CELL, _ABSENT, _SPENT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class SlotRead:
    """What one slot held in the answer's read (the answer to an ABSENCE query).

    Exactly one of: ``cell`` (with its ``place``, ``leaf`` and the leaf's
    ``inclusion_proof`` against the answer's head; no place for a cell stored
    without a log), ``absence`` (the encoded signed statement for this slot
    alone), ``spent``. Layout ``what u8`` (0 cell, 1 absent, 2 spent), then
    for a cell ``place | leaf_len u16 | leaf | inclusion proof | cell_len u32
    | cell`` (``place`` as in a fetched cell: zeros and batch size 0 when there
    is none), for an absence ``len u32 | statement``, for spent nothing.
    """

    cell: bytes | None = field(default=None, repr=False)
    place: BatchPlace | None = None
    leaf: bytes = b""
    inclusion_proof: tuple[bytes, ...] = ()
    absence: bytes = field(default=b"", repr=False)  # names the slot
    spent: bool = False

    def encode(self) -> bytes:
        w = Writer()
        if self.cell is not None:
            if self.absence or self.spent:
                raise LocalProtocolError("a slot read is a cell, an absence or spent")
            if self.place is None and (self.leaf or self.inclusion_proof):
                raise LocalProtocolError("a cell without a place has no leaf")
            w.u8(_CELL)
            BatchPlace.write_optional(w, self.place)
            write_leaf(w, self.leaf)
            write_hashes(w, self.inclusion_proof)
            if len(self.cell) > MAX_CELL_LEN:
                raise LocalProtocolError("a cell is too long")
            w.u32(len(self.cell)).fixed(self.cell, len(self.cell))
        elif self.absence:
            if self.spent or self.place or self.leaf or self.inclusion_proof:
                raise LocalProtocolError("a slot read is a cell, an absence or spent")
            w.u8(_ABSENT).u32(len(self.absence)).fixed(self.absence, len(self.absence))
        elif self.spent and not (self.place or self.leaf or self.inclusion_proof):
            w.u8(_SPENT)
        else:
            raise LocalProtocolError("a slot read is a cell, an absence or spent")
        return w.bytes()


def decode_slot_read(payload: bytes) -> SlotRead:
    r = Reader(payload)
    what = r.u8()
    if what == _CELL:
        place = BatchPlace.read_optional(r)
        leaf = read_leaf(r, empty=True)
        inclusion = read_hashes(r)
        if place is None and (leaf or inclusion):
            raise DecodeError("a cell without a place has no leaf")
        out = SlotRead(read_cell(r), place, leaf, inclusion)
    elif what == _ABSENT:
        out = SlotRead(absence=read_absence(r, empty=False))
    elif what == _SPENT:
        out = SlotRead(spent=True)
    else:
        raise DecodeError("a slot read is a cell, an absence or spent")
    r.end()
    return out


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """The relay's answer to one query: ``ok`` and a payload, or a refusal and its reason."""

    kind: QueryKind
    ok: bool
    payload: bytes = field(default=b"", repr=False)

    @classmethod
    def refused(cls, kind: QueryKind, reason: str) -> QueryAnswer:
        raw = bytes(b for b in reason.encode("ascii", "replace") if 0x20 <= b < 0x7F)
        raw = raw[:MAX_REASON_LEN] or b"refused"
        return cls(kind, False, raw)

    @property
    def reason(self) -> str:
        return "" if self.ok else self.payload.decode("ascii")

    def encode(self, w: Writer) -> None:
        if len(self.payload) > MAX_CELL_LEN + 4096:
            raise LocalProtocolError("a query answer is too long")
        w.u8(self.kind).u8(1 if self.ok else 0).u32(len(self.payload))
        w.fixed(self.payload, len(self.payload))

    @classmethod
    def read(cls, r: Reader) -> QueryAnswer:
        code, ok = r.u8(), r.u8()
        try:
            kind = QueryKind(code)
        except ValueError:
            raise DecodeError(f"unknown log query kind {code}") from None
        n = r.u32()
        if ok not in (0, 1) or n > MAX_CELL_LEN + 4096:
            raise DecodeError("malformed log query answer")
        payload = r.fixed(n)
        if ok:
            _check_payload(kind, payload)
        elif kind is QueryKind.NONE or not 0 < n <= MAX_REASON_LEN or not _printable(payload):
            raise DecodeError("a refused query carries a short ASCII reason")
        return cls(kind, bool(ok), payload)


def _printable(raw: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in raw)


def _check_payload(kind: QueryKind, payload: bytes) -> None:
    if kind is QueryKind.NONE:
        if payload:
            raise DecodeError("a NONE query's answer is empty")
    elif kind is QueryKind.CONSISTENCY:
        decode_consistency(payload)
    elif kind is QueryKind.HEAD_AT:
        if len(payload) != COMPACT_HEAD_LEN:
            raise DecodeError("a past head is a 113-byte compact signed head")
        TreeHead.decode(payload[:TREE_HEAD_LEN])
    elif kind is QueryKind.ENTRY:
        decode_entry(payload)
    elif kind is QueryKind.ABSENCE:
        decode_slot_read(payload)
    elif kind is QueryKind.CHECKPOINT:
        CheckpointAnswer.decode(payload)
    elif not 0 < len(payload) <= MAX_LEAF_LEN:  # LEAF
        raise DecodeError("a log leaf has an impossible length")
