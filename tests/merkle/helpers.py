"""Node readers for tests: counting reads, and trees too large to store."""

from __future__ import annotations

from functools import cache

from backchannel.crypto.primitives import sha256
from backchannel.protocol import merkle
from backchannel.protocol.merkle import NodeReader


class CountingReader:
    """Wraps a reader; records every read and refuses incomplete subtrees.

    ``limit`` is the tree size the proof is about: a node that reaches past it
    is not part of that tree and must never be read.
    """

    def __init__(self, inner: NodeReader, limit: int | None = None) -> None:
        self.inner = inner
        self.limit = inner.size if limit is None else limit
        self.reads: list[tuple[int, int]] = []

    @property
    def size(self) -> int:
        return self.inner.size

    def node(self, level: int, index: int) -> bytes:
        assert level >= 0 and index >= 0
        assert (index + 1) << level <= self.limit, (level, index, self.limit)
        self.reads.append((level, index))
        return self.inner.node(level, index)


class SyntheticReader:
    """A log of any size whose node hashes are made up from their position.

    Not a consistent tree: good only for counting what generation reads.
    """

    def __init__(self, size: int) -> None:
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def node(self, level: int, index: int) -> bytes:
        return sha256(b"synthetic", level.to_bytes(1, "big"), index.to_bytes(8, "big"))


@cache
def _perfect(level: int) -> bytes:
    if level == 0:
        return merkle.leaf_hash(b"same")
    below = _perfect(level - 1)
    return merkle.node_hash(below, below)


class UniformReader:
    """A real Merkle tree of ``size`` identical leaves, computed without storing it.

    Every complete subtree of a level has the same hash, so any node costs
    one cached lookup and proofs of a million-leaf tree verify in earnest.
    """

    LEAF = merkle.leaf_hash(b"same")

    def __init__(self, size: int) -> None:
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def node(self, level: int, index: int) -> bytes:
        assert (index + 1) << level <= self._size
        return _perfect(level)
