"""The log data of the batch answers: cells' places and the bundle proving them.

A *proof* is ``count u8 | count x hash [32]`` (an RFC 9162 path, leaf
upwards). A cell's place in its batch (:class:`BatchPlace`) is
``leaf_index u64 | batch_position u32 | batch_size u32 | batch proof``; the
leaf's inclusion in the answer's head comes once per leaf, in the answer's
:class:`LogBundle`. Pure: no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from backchannel.crypto.primitives import HASH_LEN
from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.constants import SLOT_LEN
from backchannel.protocol.merkle import MAX_PROOF_LEN, TREE_HEAD_LEN, TreeHead
from backchannel.protocol.misbehaviour import COMPACT_HEAD_LEN, RELAY_KEY_LEN, Absence, LogLeaf

#: Longest log leaf accepted (version 1 leaves are 53 bytes).
MAX_LEAF_LEN = 1024
#: Longest statement of absence (1,024 slots, empty or spent, of a 255-byte tenant id).
MAX_ABSENCE_LEN = 49 + 8 + 4 + 1 + 255 + 2 + 1024 * SLOT_LEN + 2 + 64
#: Longest cell accepted by the decoders (cells are 4 KiB by default).
MAX_CELL_LEN = 1 << 20

_U32 = 1 << 32
_U64 = 1 << 64


def write_hashes(w: Writer, hashes: Sequence[bytes]) -> None:
    if len(hashes) > MAX_PROOF_LEN:
        raise LocalProtocolError("a proof is longer than any tree allows")
    w.u8(len(hashes))
    for h in hashes:
        w.fixed(h, HASH_LEN)


def read_hashes(r: Reader) -> tuple[bytes, ...]:
    n = r.u8()
    if n > MAX_PROOF_LEN:
        raise DecodeError("a proof is longer than any tree allows")
    return tuple(r.fixed(HASH_LEN) for _ in range(n))


def read_leaf(r: Reader, *, empty: bool = False) -> bytes:
    """``leaf_len u16 | leaf``; an empty leaf only where ``empty`` allows it."""
    n = r.u16()
    if n > MAX_LEAF_LEN or (n == 0 and not empty):
        raise DecodeError("a log leaf has an impossible length")
    return r.fixed(n)


def write_leaf(w: Writer, leaf: bytes) -> None:
    if len(leaf) > MAX_LEAF_LEN:
        raise LocalProtocolError("a log leaf is too long")
    w.u16(len(leaf)).fixed(leaf, len(leaf))


def read_cell(r: Reader) -> bytes:
    n = r.u32()
    if n > MAX_CELL_LEN:
        raise DecodeError("a cell is too long")
    return r.fixed(n)


def write_cell(w: Writer, cell: bytes) -> None:
    if len(cell) > MAX_CELL_LEN:
        raise LocalProtocolError("a cell is too long")
    w.u32(len(cell)).fixed(cell, len(cell))


def check_slot(slot: bytes) -> None:
    if len(slot) != SLOT_LEN:
        raise LocalProtocolError("a slot address is 32 bytes")


def read_absence(r: Reader, *, empty: bool) -> bytes:
    """``len u32 | statement``; the statement must decode (it is not verified here)."""
    n = r.u32()
    if n > MAX_ABSENCE_LEN or (n == 0 and not empty):
        raise DecodeError("a statement of absence has an impossible length")
    raw = r.fixed(n)
    if raw:
        Absence.decode(raw)
    return raw


@dataclass(frozen=True, slots=True)
class BatchPlace:
    """A cell's place in its batch: the batch's leaf, its position, the batch proof."""

    leaf_index: int
    batch_position: int
    batch_size: int
    batch_proof: tuple[bytes, ...]

    def with_inclusion(self, inclusion_proof: Sequence[bytes]) -> CellPlace:
        return CellPlace(
            self.leaf_index,
            self.batch_position,
            self.batch_size,
            self.batch_proof,
            tuple(inclusion_proof),
        )

    def write(self, w: Writer) -> None:
        if not (0 <= self.leaf_index < _U64 and 0 <= self.batch_position < self.batch_size < _U32):
            raise LocalProtocolError("a cell's place in the log is out of range")
        w.u64(self.leaf_index).u32(self.batch_position).u32(self.batch_size)
        write_hashes(w, self.batch_proof)

    @classmethod
    def read(cls, r: Reader) -> BatchPlace:
        leaf_index, position, size = r.u64(), r.u32(), r.u32()
        if not position < size:
            raise DecodeError("a batch position must be below the batch size")
        return cls(leaf_index, position, size, read_hashes(r))

    @staticmethod
    def write_optional(w: Writer, place: BatchPlace | None) -> None:
        """A place, or (no place) zeros with batch size 0."""
        if place is None:
            w.u64(0).u32(0).u32(0).u8(0)
        else:
            place.write(w)

    @classmethod
    def read_optional(cls, r: Reader) -> BatchPlace | None:
        leaf_index, position, size = r.u64(), r.u32(), r.u32()
        proof = read_hashes(r)
        if size == 0:
            if leaf_index or position or proof:
                raise DecodeError("a cell without a place must have zeros there")
            return None
        if not position < size:
            raise DecodeError("a batch position must be below the batch size")
        return cls(leaf_index, position, size, proof)


@dataclass(frozen=True, slots=True)
class CellPlace:
    """A cell's whole place in the log against one head (the client's ``CellLog``)."""

    leaf_index: int
    batch_position: int
    batch_size: int
    batch_proof: tuple[bytes, ...]
    inclusion_proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class LeafProof:
    """A log leaf and its inclusion proof against the bundle's head."""

    leaf: bytes
    inclusion_proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class LogBundle:
    """What an answer gives the client's log checks: all of it, against one head.

    ``signed_head`` is empty when the relay keeps no log; ``consistency``
    proves the head from the client's ``known_size``; ``key`` (the relay's
    Ed25519 then ML-DSA-65 public key) comes only when ``known_size`` was 0.
    """

    signed_head: bytes = b""
    leaves: dict[int, LeafProof] = field(default_factory=dict)
    consistency: tuple[bytes, ...] = ()
    key: bytes = b""

    def head(self) -> TreeHead | None:
        """The (unverified) head; None without a log."""
        return TreeHead.decode(self.signed_head[:TREE_HEAD_LEN]) if self.signed_head else None

    def leaf(self, index: int) -> bytes | None:
        proved = self.leaves.get(index)
        return proved.leaf if proved is not None else None

    def place(self, place: BatchPlace) -> CellPlace | None:
        """The cell's whole place against the head; None if its leaf is not in the bundle."""
        proved = self.leaves.get(place.leaf_index)
        return place.with_inclusion(proved.inclusion_proof) if proved is not None else None

    def write(
        self, w: Writer, *, dedup: bool = False, rebuilt: Collection[int] = frozenset()
    ) -> None:
        """The bundle; ``dedup`` (compact answers): each of its proofs' hashes once.

        Deduplicated, the hashes come first, each once, in the order first used
        (the leaves' inclusion proofs, ascending, then the consistency proof):
        ``nhashes u16 | nhashes x hash [32]``, and each proof is ``count u8 |
        count x index`` into them (an index is a u8, a u16 past 256 hashes).

        A leaf whose index is in ``rebuilt`` (shared answers: a batch whose
        cells the answer names, :mod:`.batch_proofs`) comes as its
        ``coarse_time u64`` alone: the reader rebuilds the rest from the
        answer's places (:meth:`read`).
        """
        if len(self.signed_head) not in (0, COMPACT_HEAD_LEN) or len(self.key) not in (
            0,
            RELAY_KEY_LEN,
        ):
            raise LocalProtocolError("a bundle carries a compact head and a whole key")
        if len(self.leaves) >= 1 << 16 or any(not 0 <= i < _U64 for i in self.leaves):
            raise LocalProtocolError("a bundle's leaves are out of range")
        w.u16(len(self.signed_head)).fixed(self.signed_head, len(self.signed_head))
        order = sorted(self.leaves)
        proofs = (*(self.leaves[i].inclusion_proof for i in order), self.consistency)
        put: Callable[[Writer, Sequence[bytes]], None] = write_hashes
        if dedup:
            table = _first_use_table(proofs)
            w.u16(len(table))
            for h in table:
                w.fixed(h, HASH_LEN)
            put = functools.partial(_write_indexes, table=table)
        w.u16(len(self.leaves))
        for index in order:
            proved = self.leaves[index]
            w.u64(index)
            if index in rebuilt:
                w.u64(_time_of(proved.leaf, index))
            else:
                write_leaf(w, proved.leaf)
            put(w, proved.inclusion_proof)
        put(w, self.consistency)
        w.u16(len(self.key)).fixed(self.key, len(self.key))

    @classmethod
    def read(
        cls,
        r: Reader,
        *,
        dedup: bool = False,
        rebuilt: Mapping[int, tuple[int, bytes]] | None = None,
    ) -> LogBundle:
        """A bundle from :meth:`write`; ``rebuilt`` maps the index of each leaf
        written as its time alone to its batch's size and root."""
        rebuilt = rebuilt or {}
        signed = r.fixed(r.u16())
        if len(signed) not in (0, COMPACT_HEAD_LEN):
            raise DecodeError("a bundle's head is a 113-byte compact signed head")
        if signed:
            TreeHead.decode(signed[:TREE_HEAD_LEN])
        indexes = _IndexReader(r) if dedup else None
        read: Callable[[Reader], tuple[bytes, ...]] = indexes or read_hashes
        leaves: dict[int, LeafProof] = {}
        last = -1
        for _ in range(r.u16()):
            leaf_index = r.u64()
            if leaf_index <= last:
                raise DecodeError("a bundle lists its leaves once each, ascending")
            last = leaf_index
            if leaf_index in rebuilt:
                size, batch_root = rebuilt[leaf_index]
                leaf = LogLeaf(leaf_index, size, batch_root, r.u64()).encode()
            else:
                leaf = read_leaf(r)
            leaves[leaf_index] = LeafProof(leaf, read(r))
        consistency = read(r)
        if indexes is not None:
            indexes.end()
        key = r.fixed(r.u16())
        if len(key) not in (0, RELAY_KEY_LEN):
            raise DecodeError("a relay key is 1,984 bytes")
        if not signed and (leaves or consistency):
            raise DecodeError("proofs need a head")
        return cls(signed, leaves, consistency, key)


def _time_of(leaf: bytes, index: int) -> int:
    """The time of a leaf the reader rebuilds; it must be a leaf of this version, at ``index``."""
    try:
        decoded = LogLeaf.decode(leaf)
    except DecodeError:
        raise LocalProtocolError("only a version 1 leaf is rebuilt by its reader") from None
    if decoded.batch_index != index:
        raise LocalProtocolError("a leaf names its own index")
    return decoded.coarse_time


# -- a compact bundle's table of hashes -----------------------------------------------


def _first_use_table(proofs: Sequence[Sequence[bytes]]) -> dict[bytes, int]:
    """Each hash of ``proofs`` once, numbered in the order first used."""
    table: dict[bytes, int] = {}
    for proof in proofs:
        for h in proof:
            table.setdefault(h, len(table))
    if len(table) >= 1 << 16:
        raise LocalProtocolError("a bundle holds at most 65,535 hashes")
    return table


def _write_indexes(w: Writer, hashes: Sequence[bytes], *, table: dict[bytes, int]) -> None:
    """A proof as ``count u8 | count x index`` (u8, or u16 past 256 hashes)."""
    if len(hashes) > MAX_PROOF_LEN:
        raise LocalProtocolError("a proof is longer than any tree allows")
    index = w.u16 if len(table) > 256 else w.u8
    w.u8(len(hashes))
    for h in hashes:
        index(table[h])


class _IndexReader:
    """Reads a compact bundle's table, then its proofs as indexes into it.

    Canonical: every hash once, each first used in the table's order, every one
    used (:meth:`end`), so a bundle has one encoding."""

    def __init__(self, r: Reader) -> None:
        self.table = [r.fixed(HASH_LEN) for _ in range(r.u16())]
        if len(set(self.table)) != len(self.table):
            raise DecodeError("a bundle lists each of its hashes once")
        self._index = r.u16 if len(self.table) > 256 else r.u8
        self._used = 0

    def __call__(self, r: Reader) -> tuple[bytes, ...]:
        n = r.u8()
        if n > MAX_PROOF_LEN:
            raise DecodeError("a proof is longer than any tree allows")
        out = []
        for _ in range(n):
            i = self._index()
            if i > self._used or i >= len(self.table):
                raise DecodeError("a bundle's hashes come in the order first used")
            if i == self._used:
                self._used += 1
            out.append(self.table[i])
        return tuple(out)

    def end(self) -> None:
        if self._used != len(self.table):
            raise DecodeError("a bundle lists only hashes its proofs use")
