"""The relay log's Merkle tree: hashing, proofs and tree heads (RFC 9162 §2.1).

Hashing, with ``H`` = SHA-256::

    leaf_hash(d)     = H(0x00 || d)
    node_hash(l, r)  = H(0x01 || l || r)
    MTH({})          = H("")                      the empty tree
    MTH({d0})        = leaf_hash(d0)
    MTH(D[n])        = node_hash(MTH(D[0:k]), MTH(D[k:n]))
                       k = the largest power of two smaller than n

The 0x00 / 0x01 prefixes keep a leaf from ever being read as an inner node
(second preimages). These are the RFC's rules without change, so any RFC 9162
verifier can check our proofs and the RFC's test vectors check ours.

Generation reads the tree through a :class:`NodeReader`: the hash of one
*complete* subtree at a time, ``node(level, index)`` covering leaves
``[index * 2**level, (index + 1) * 2**level)``. Complete subtrees never change
once written, so a store can keep them as immutable rows. The RFC's PATH and
SUBPROOF also need subtrees that end at a tree size that is not a power of two;
those are folded here from the complete subtrees that tile them, so one proof
costs O(log n) reads whatever the tree size and whatever the store.

Verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency)
step by step. It raises and never returns a bool: :class:`DecodeError` when an
input cannot be a hash or a size at all, :class:`ProofError` when the proof
does not prove what it claims.

Shape at scale. A leaf is not one cell. Each round, the relay builds a batch
tree over the hashes of the cells deposited in that round and appends *one*
leaf to the log: the root of that batch tree. The log therefore grows by one
leaf per round (about half a million a year at 60-second rounds), not by one
leaf per cell, and a cell's proof is its path in the batch tree followed by the
batch root's path in the log. What a leaf's bytes are is the relay's business;
this module hashes whatever it is given.

Tree heads are :class:`TreeHead` values with a versioned encoding. Signing one
is the caller's job: the relay signs :meth:`TreeHead.encode` under its own key
and a label from :mod:`backchannel.crypto.labels`; nothing here holds a key,
reads a clock or draws randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from backchannel.crypto.primitives import HASH_LEN, equal, sha256
from backchannel.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from backchannel.protocol.codec import Reader, Writer, expect_version

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

#: MTH of the empty tree: SHA-256 of the empty string.
EMPTY_ROOT = sha256(b"")

#: Sizes and indexes travel as u64; no proof in such a tree has more entries.
MAX_SIZE = (1 << 64) - 1
MAX_PROOF_LEN = 64

_TREE_HEAD_VERSION = 1
TREE_HEAD_LEN = 1 + 8 + HASH_LEN + 8


class ProofError(RemoteProtocolError):
    """An inclusion or consistency proof does not verify against the tree heads given.

    The relay's log is not what it claims to be, or the proof belongs to other
    sizes. Keep both tree heads: two signed heads that no proof connects are
    evidence that the relay shows different histories to different parties.
    """


# -- Hashing -----------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """``H(0x00 || data)``: the hash of one log entry."""
    return sha256(_LEAF_PREFIX, data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """``H(0x01 || left || right)``: the hash of an inner node."""
    return sha256(_NODE_PREFIX, left, right)


def root(leaves: Iterable[bytes]) -> bytes:
    """MTH of the given leaf data, in order (``EMPTY_ROOT`` for none)."""
    f = Frontier()
    for d in leaves:
        f = f.append(leaf_hash(d))
    return f.root()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _tiles(start: int, n: int) -> Iterator[tuple[int, int]]:
    """The complete subtrees ``(level, index)`` that tile leaves ``[start, start + n)``.

    Largest first. ``start`` must be a multiple of the largest tile, which holds
    for every range that PATH and SUBPROOF ask for (each starts where a split at
    a power of two put it), so each tile is a node of the tree.
    """
    pos = start
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            yield level, pos >> level
            pos += 1 << level


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its tiles, largest first.

    Each tile is at least twice the size of everything to its right, so the
    RFC's split puts it alone on the left: fold from the right.
    """
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


# -- Reading the tree --------------------------------------------------------


class NodeReader(Protocol):
    """Read access to a log's complete subtrees.

    ``node(level, index)`` returns the hash of the perfect subtree of
    ``2**level`` leaves starting at leaf ``index * 2**level``; level 0 holds the
    leaf hashes. It is called only for subtrees that lie wholly within
    ``size``. Proof generation never reads anything else, so a store needs
    nothing but these rows, written once and never updated.
    """

    @property
    def size(self) -> int:
        """The number of leaves the reader can serve."""
        ...

    def node(self, level: int, index: int) -> bytes:
        """Hash of the complete subtree ``(level, index)``."""
        ...


def _range_hash(reader: NodeReader, start: int, n: int) -> bytes:
    """MTH(D[start:start + n]), from ``popcount(n)`` reads."""
    return _fold([reader.node(level, index) for level, index in _tiles(start, n)])


def _check_size(reader: NodeReader, size: int) -> None:
    if not 0 <= size <= reader.size:
        raise LocalProtocolError("tree size is beyond the log's current size")


def tree_root(reader: NodeReader, size: int) -> bytes:
    """MTH of the first ``size`` leaves of the log."""
    _check_size(reader, size)
    return EMPTY_ROOT if size == 0 else _range_hash(reader, 0, size)


def inclusion_proof(reader: NodeReader, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 §2.1.1 / RFC 9162 §2.1.3.1, leaf upwards.

    Walks down from the root: at each split the sibling of the half holding
    the leaf joins the proof. A left sibling is always complete (one read); a
    right sibling that runs to the end of a tree whose size is not a power of
    two is folded from its tiles. After that fold the walk continues in a left
    half, which is complete, so the fold happens at most once and the proof
    costs at most ``2 * ceil(log2(size))`` reads.
    """
    _check_size(reader, size)
    if not 0 <= index < size:
        raise LocalProtocolError("leaf index is not below the tree size")
    down: list[bytes] = []
    start, n, m = 0, size, index
    while n > 1:
        k = split_point(n)
        if m < k:
            down.append(_range_hash(reader, start + k, n - k))
            n = k
        else:
            down.append(reader.node(k.bit_length() - 1, start // k))
            start, n, m = start + k, n - k, m - k
    down.reverse()
    return down


def consistency_proof(reader: NodeReader, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 6962 §2.1.2 / RFC 9162 §2.1.4.1.

    Empty when the sizes are equal. ``old_size`` must be at least 1: the RFC
    defines no proof from the empty tree, which is consistent with every tree.
    """
    _check_size(reader, new_size)
    if not 0 < old_size <= new_size:
        raise LocalProtocolError("a consistency proof needs 0 < old size <= new size")
    down: list[bytes] = []
    start, n, m, whole = 0, new_size, old_size, True
    while m != n:
        k = split_point(n)
        if m <= k:
            # The old tree lies in the left half; the right half is new.
            down.append(_range_hash(reader, start + k, n - k))
            n = k
        else:
            # The left half is common to both trees and complete.
            down.append(reader.node(k.bit_length() - 1, start // k))
            start, n, m, whole = start + k, n - k, m - k, False
    if not whole:
        # SUBPROOF(m, D[m], false): the verifier does not hold this subtree's
        # hash, so it is sent. When the walk never left the left edge, the
        # subtree is the old tree itself, whose root the verifier has.
        down.append(_range_hash(reader, start, n))
    down.reverse()
    return down


def frontier_of(reader: NodeReader, size: int) -> Frontier:
    """The :class:`Frontier` of the first ``size`` leaves, from ``popcount(size)`` reads."""
    _check_size(reader, size)
    return Frontier(size, tuple(reader.node(lv, ix) for lv, ix in _tiles(0, size)))


# -- Compact and in-memory trees ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Frontier:
    """The right edge of a tree: enough to compute its root and to append.

    ``hashes`` are the complete subtrees that tile ``[0, size)``, largest
    first, one per set bit of ``size``: at most 64 hashes for any u64 size.
    A relay can keep this to sign tree heads without reading its store.
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.size <= MAX_SIZE or len(self.hashes) != self.size.bit_count():
            raise LocalProtocolError("frontier does not match its size")
        if any(len(h) != HASH_LEN for h in self.hashes):
            raise LocalProtocolError("frontier hashes must be 32 bytes")

    def append(self, leaf: bytes) -> Frontier:
        """The frontier after appending one leaf, given its *leaf hash*."""
        if len(leaf) != HASH_LEN:
            raise LocalProtocolError("append takes a 32-byte leaf hash")
        hashes = list(self.hashes)
        h, n = leaf, self.size
        # Each trailing 1 bit of the old size is a subtree the new leaf completes.
        while n & 1:
            h = node_hash(hashes.pop(), h)
            n >>= 1
        hashes.append(h)
        return Frontier(self.size + 1, tuple(hashes))

    def root(self) -> bytes:
        return _fold(self.hashes) if self.hashes else EMPTY_ROOT


class MemoryLog:
    """An append-only log in memory that stores every complete-subtree node.

    A :class:`NodeReader`. Appending writes the leaf hash and each parent the
    leaf completes: amortized two node writes per leaf, O(log n) at worst.
    The node table is what a durable store would hold, keyed the same way.
    """

    __slots__ = ("_nodes", "_size")

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def node(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise LocalProtocolError("no such complete subtree in the log") from None

    def append(self, data: bytes) -> int:
        """Append one entry; returns its leaf index."""
        return self.append_hash(leaf_hash(data))

    def append_hash(self, leaf: bytes) -> int:
        """Append one entry given its leaf hash; returns its leaf index."""
        if len(leaf) != HASH_LEN:
            raise LocalProtocolError("append_hash takes a 32-byte leaf hash")
        index = self._size
        level, i, h = 0, index, leaf
        self._nodes[(0, index)] = h
        while i & 1:
            h = node_hash(self._nodes[(level, i - 1)], h)
            level, i = level + 1, i >> 1
            self._nodes[(level, i)] = h
        self._size = index + 1
        return index

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self, self._size if size is None else size)

    def frontier(self, size: int | None = None) -> Frontier:
        return frontier_of(self, self._size if size is None else size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(self, index, self._size if size is None else size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(self, old_size, self._size if new_size is None else new_size)


# -- Verification (RFC 9162 §2.1.3.2 and §2.1.4.2) --------------------------


def _check_hash(h: object, what: str) -> bytes:
    if not isinstance(h, bytes) or len(h) != HASH_LEN:
        raise DecodeError(f"{what} is not a 32-byte hash")
    return h


def _check_u64(v: object, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_SIZE:
        raise DecodeError(f"{what} is not an unsigned 64-bit integer")
    return v


def _check_path(proof: Sequence[bytes], what: str) -> list[bytes]:
    if len(proof) > MAX_PROOF_LEN:
        raise DecodeError(f"{what} is longer than any tree allows")
    return [_check_hash(p, f"{what} entry") for p in proof]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is entry ``index`` of the tree ``(size, root_hash)``.

    Raises :class:`ProofError` if it is not, :class:`DecodeError` if an input
    is malformed; returns nothing on success.
    """
    root_hash = _check_hash(root_hash, "root hash")
    if not equal(root_from_inclusion(leaf, index, size, proof), root_hash):
        raise ProofError("inclusion proof does not lead to the tree head's root")


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads ``leaf`` (entry ``index`` of a tree of ``size``) to.

    RFC 9162 §2.1.3.2 steps 1 to 5 without the final comparison. With the last
    leaf (``index = size - 1``) this is how a tree's root is recomputed from
    the leaf and its path. Raises :class:`ProofError` for a path of the wrong
    shape, :class:`DecodeError` for a malformed input.
    """
    leaf = _check_hash(leaf, "leaf hash")
    index = _check_u64(index, "leaf index")
    size = _check_u64(size, "tree size")
    path = _check_path(proof, "inclusion proof")
    # 1. An index at or beyond the tree size proves nothing.
    if index >= size:
        raise ProofError("leaf index is not below the tree size")
    # 2-3. fn walks the leaf's position up the tree, sn the last leaf's.
    fn, sn, r = index, size - 1, leaf
    for p in path:
        # 4a. More proof than there are levels.
        if sn == 0:
            raise ProofError("inclusion proof is too long for the tree size")
        if fn & 1 or fn == sn:
            # 4b. p is a left sibling. When fn == sn with fn even, the node is
            # the last of its level and has no right sibling: it moves up
            # unchanged until it is a right child (or the walk reaches 0).
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        # 4c.
        fn >>= 1
        sn >>= 1
    # 5. The proof must use every level; the caller compares r with the root.
    if sn != 0:
        raise ProofError("inclusion proof is too short for the tree size")
    return r


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    Equal sizes need an empty proof and equal roots. ``old_size`` 0 is refused,
    as the RFC defines no proof from the empty tree: a client holding only the
    empty tree has nothing to check and pins the first non-empty head it sees.
    """
    old_size = _check_u64(old_size, "old tree size")
    new_size = _check_u64(new_size, "new tree size")
    old_root = _check_hash(old_root, "old root hash")
    new_root = _check_hash(new_root, "new root hash")
    path = _check_path(proof, "consistency proof")
    if old_size == 0:
        raise ProofError("no consistency proof exists from the empty tree")
    if old_size > new_size:
        raise ProofError("the new tree head is smaller than the old one")
    if old_size == new_size:
        if path:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if not equal(old_root, new_root):
            raise ProofError("two tree heads of the same size have different roots")
        return
    # 1.
    if not path:
        raise ProofError("consistency proof is empty")
    # 2. When the old tree is a complete subtree, its root is the first node.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3-4. Skip the levels where the old tree's last node is a right child:
    # those nodes are inside the first proof entry.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr rebuilds the old root, sr the new one.
    fr = sr = path[0]
    for c in path[1:]:
        # 6a.
        if sn == 0:
            raise ProofError("consistency proof is too long for the tree sizes")
        if fn & 1 or fn == sn:
            # 6b. c is a left sibling, in both trees.
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            # c lies right of the old tree: only the new tree has it.
            sr = node_hash(sr, c)
        # 6c.
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise ProofError("consistency proof is too short for the tree sizes")
    if not equal(fr, old_root):
        raise ProofError("consistency proof does not lead to the old root")
    if not equal(sr, new_root):
        raise ProofError("consistency proof does not lead to the new root")


# -- Tree heads --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A log size, its root, and when the relay computed it.

    Layout: ``version u8 | size u64 | root [32] | timestamp u64``.
    ``timestamp`` is whole seconds since the Unix epoch, supplied by the
    caller. The signature over :meth:`encode` travels beside the head, not in
    it, so that the same head can carry more than one signature.
    """

    size: int
    root: bytes
    timestamp: int

    def __post_init__(self) -> None:
        if not 0 <= self.size <= MAX_SIZE or not 0 <= self.timestamp <= MAX_SIZE:
            raise LocalProtocolError("tree head size and timestamp must fit in 64 bits")
        if len(self.root) != HASH_LEN:
            raise LocalProtocolError("tree head root must be 32 bytes")
        if self.size == 0 and self.root != EMPTY_ROOT:
            raise LocalProtocolError("the empty tree has exactly one root")

    def __repr__(self) -> str:
        return f"TreeHead(size={self.size}, root={self.root.hex()[:16]}…, t={self.timestamp})"

    def encode(self) -> bytes:
        return (
            Writer()
            .u8(_TREE_HEAD_VERSION)
            .u64(self.size)
            .fixed(self.root, HASH_LEN)
            .u64(self.timestamp)
            .bytes()
        )

    @classmethod
    def decode(cls, raw: bytes) -> TreeHead:
        r = Reader(raw)
        expect_version(r, _TREE_HEAD_VERSION, "tree head")
        size, root_hash, timestamp = r.u64(), r.fixed(HASH_LEN), r.u64()
        r.end()
        if size == 0 and root_hash != EMPTY_ROOT:
            raise DecodeError("an empty tree head must carry the empty root")
        return cls(size, root_hash, timestamp)

    def check_consistent(self, newer: TreeHead, proof: Sequence[bytes]) -> None:
        """Verify that ``newer`` extends this head; see :func:`verify_consistency`.

        From an empty head there is nothing to prove, so any ``newer`` passes
        with an empty proof.
        """
        if self.size == 0 and not proof:
            return
        verify_consistency(self.size, newer.size, self.root, newer.root, proof)
