"""Shared batch proofs: what an answer's cells need of their batch trees, once each.

A batch answer often names several cells of one batch: a device's own
deposit (its cells sit side by side in the batch the relay committed), or the
cells a fetch finds (a peer's deposit, committed together). Their RFC 9162
audit paths in the batch tree share most of their nodes, and the reader knows
every named cell's entry (``cell_entry``: the tenant, the slot and the cell's
hash; its own deposit, or the cell it just fetched), so it can compute every
node over those cells itself.

The *shared proof* of one batch is only the rest: the largest subtrees that
hold none of the named cells and hang off their paths, left to right (a
Merkle multiproof). Which subtrees these are follows from the batch size and
the named positions alone (:func:`missing`), so both sides agree on them and
their number is not sent. The reader rebuilds each cell's standard audit path
from the entries and these nodes (:func:`unpack`) and verifies it exactly as
a path that came whole: a wrong node makes a wrong path, and the path then
fails against the batch root in the log leaf, as before.

On the wire (``docs/spec/relay-api.md``, "Shared batch proofs"): a place is
``leaf_index u64 | batch_position u32 | batch_size u32`` with no proof (all
zeros, batch size 0, for a cell stored without a log), and after the places,
for each batch they name (leaf index ascending), its missing nodes, ``hash
[32]`` each. The answer's bundle then sends such a batch's leaf as its time
alone (:meth:`~backchannel.protocol.batch_log.LogBundle.write`): the reader
has everything else (the index, the size, the root its paths lead to).
Pure: no I/O.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping, Sequence

from backchannel.crypto.primitives import HASH_LEN
from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.batch_log import BatchPlace
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.merkle import leaf_hash, node_hash, split_point
from backchannel.protocol.misbehaviour import cell_entry

#: Leaves ``[start, end)`` of a batch tree: one subtree of the RFC's recursion.
Range = tuple[int, int]

_U32 = 1 << 32
_U64 = 1 << 64


def path_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose hashes make leaf ``index``'s RFC 9162 audit path, leaf upward."""
    out: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def missing(size: int, known: Sequence[int]) -> list[Range]:
    """What a reader who knows the leaves at ``known`` (ascending, distinct, below
    ``size``) needs to compute their audit paths: every largest subtree holding none
    of them whose parent holds one, left to right."""
    out: list[Range] = []
    stack = [(0, size)]
    while stack:
        lo, hi = stack.pop()
        i = bisect.bisect_left(known, lo)
        if i == len(known) or known[i] >= hi:
            out.append((lo, hi))
        elif hi - lo > 1:
            k = split_point(hi - lo)
            stack.append((lo + k, hi))
            stack.append((lo, lo + k))
    return out


def pack(size: int, paths: Mapping[int, Sequence[bytes]]) -> list[bytes]:
    """The shared proof of one batch of ``size`` from its named cells' whole audit
    paths (position -> path): the hashes of :func:`missing`, in its order."""
    if not paths or not 0 < size < _U32 or not all(0 <= i < size for i in paths):
        raise LocalProtocolError("a shared batch proof names cells inside its batch")
    have: dict[Range, bytes] = {}
    for index, proof in paths.items():
        ranges = path_ranges(index, size)
        if len(proof) != len(ranges):
            raise LocalProtocolError("a batch proof has the wrong length for its place")
        for r, h in zip(ranges, proof, strict=True):
            if have.setdefault(r, h) != h:
                raise LocalProtocolError("two batch proofs disagree on one node")
    return [have[r] for r in missing(size, sorted(paths))]


def unpack(
    size: int, leaves: Mapping[int, bytes], nodes: Sequence[bytes]
) -> tuple[dict[int, list[bytes]], bytes]:
    """Each known leaf's audit path (position -> path) in a batch of ``size``, and
    the batch root they lead to, from the leaves' hashes (position -> leaf hash) and
    the shared proof's ``nodes``."""
    known = sorted(leaves)
    need = missing(size, known)
    if len(nodes) != len(need):
        raise DecodeError("a shared batch proof has the wrong number of nodes")
    memo: dict[Range, bytes] = dict(zip(need, nodes, strict=True))
    memo.update(((i, i + 1), h) for i, h in leaves.items())

    def hash_of(lo: int, hi: int) -> bytes:
        h = memo.get((lo, hi))
        if h is None:
            # A subtree holding a known leaf: its two halves are known or sent.
            k = split_point(hi - lo)
            h = memo[(lo, hi)] = node_hash(hash_of(lo, lo + k), hash_of(lo + k, hi))
        return h

    return {i: [hash_of(*r) for r in path_ranges(i, size)] for i in known}, hash_of(0, size)


# -- on the wire --------------------------------------------------------------------


def write_place(w: Writer, place: BatchPlace | None) -> None:
    """A place without its proof; zeros (batch size 0) for none."""
    if place is None:
        w.u64(0).u32(0).u32(0)
        return
    if not (0 <= place.leaf_index < _U64 and 0 <= place.batch_position < place.batch_size < _U32):
        raise LocalProtocolError("a cell's place in the log is out of range")
    w.u64(place.leaf_index).u32(place.batch_position).u32(place.batch_size)


def read_place(r: Reader) -> BatchPlace | None:
    """A place from :func:`write_place`, its proof still empty (:func:`read_shared` fills it)."""
    leaf_index, position, size = r.u64(), r.u32(), r.u32()
    if size == 0:
        if leaf_index or position:
            raise DecodeError("a cell without a place must have zeros there")
        return None
    if not position < size:
        raise DecodeError("a batch position must be below the batch size")
    return BatchPlace(leaf_index, position, size, ())


def _batches(places: Sequence[BatchPlace | None]) -> dict[int, dict[int, BatchPlace]]:
    """Leaf index -> {index into ``places``: place} of that batch's cells, leaves
    ascending; ``ValueError`` unless each batch has one size. Two places may name
    one position: the same cell deposited twice in one batch is stored once."""
    by: dict[int, dict[int, BatchPlace]] = {}
    for n, p in enumerate(places):
        if p is not None:
            by.setdefault(p.leaf_index, {})[n] = p
    for named in by.values():
        if len({p.batch_size for p in named.values()}) != 1:
            raise ValueError("the cells of one batch need one size")
    return dict(sorted(by.items()))


def write_shared(w: Writer, places: Sequence[BatchPlace | None]) -> None:
    """The shared proof of each batch ``places`` name, leaf index ascending."""
    try:
        batches = _batches(places)
    except ValueError as exc:
        raise LocalProtocolError(str(exc)) from None
    for named in batches.values():
        size = next(iter(named.values())).batch_size
        paths: dict[int, tuple[bytes, ...]] = {}
        for p in named.values():
            if paths.setdefault(p.batch_position, p.batch_proof) != p.batch_proof:
                raise LocalProtocolError("two cells in one place need one proof")
        for h in pack(size, paths):
            w.fixed(h, HASH_LEN)


def read_shared(
    r: Reader, places: Sequence[BatchPlace | None], cells: Sequence[tuple[str, bytes, bytes]]
) -> tuple[list[BatchPlace | None], dict[int, tuple[int, bytes]]]:
    """``places`` (from :func:`read_place`) with their audit paths, rebuilt from the
    shared proofs that follow in ``r`` and the cells the reader holds (``(tenant id,
    slot, cell)``, one per place, in order); and, by leaf index, each batch's size
    and the root its paths lead to (from which the answer's bundle rebuilds the
    leaf: :meth:`LogBundle.read`)."""
    entries = _entries(places, cells)
    try:
        batches = _batches(places)
    except ValueError as exc:
        raise DecodeError(str(exc)) from None
    out = list(places)
    roots: dict[int, tuple[int, bytes]] = {}
    for leaf_index, named in batches.items():
        size = next(iter(named.values())).batch_size
        leaves: dict[int, bytes] = {}
        for n, p in named.items():
            if leaves.setdefault(p.batch_position, leaf_hash(entries[n])) != leaf_hash(entries[n]):
                raise DecodeError("two different cells in one place of a batch")
        nodes = [r.fixed(HASH_LEN) for _ in missing(size, sorted(leaves))]
        paths, batch_root = unpack(size, leaves, nodes)
        roots[leaf_index] = (size, batch_root)
        for n, p in named.items():
            out[n] = BatchPlace(
                p.leaf_index, p.batch_position, size, tuple(paths[p.batch_position])
            )
    return out, roots


def _entries(
    places: Sequence[BatchPlace | None], cells: Sequence[tuple[str, bytes, bytes]]
) -> list[bytes]:
    """The batch-tree entry of each placed cell (``b""`` for a cell without a place)."""
    try:
        return [
            cell_entry(tenant_id, slot, hashlib.sha256(cell).digest()) if place is not None else b""
            for place, (tenant_id, slot, cell) in zip(places, cells, strict=True)
        ]
    except LocalProtocolError as exc:
        raise DecodeError(f"a shared answer places a cell that cannot be placed: {exc}") from None
