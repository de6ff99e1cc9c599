"""Proofs from a few prefetched nodes: which nodes a proof reads, known before
any read (:func:`plan_nodes`), so a store backend fetches them in one query,
then the proofs computed over what it fetched. No I/O here; shared by every
backend (``_log.py``, ``_sqlite_log.py``, ``_pg_log.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from backchannel.crypto.primitives import HASH_LEN
from backchannel.errors import LocalProtocolError, StoreUnavailable
from backchannel.protocol import merkle
from backchannel.protocol.merkle import NodeReader
from backchannel.store.relay_store import BatchTree, CellProof


class _Recorder:
    """A NodeReader that remembers what it was asked for and answers zeros."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.asked: set[tuple[int, int]] = set()

    def node(self, level: int, index: int) -> bytes:
        self.asked.add((level, index))
        return bytes(HASH_LEN)


class DictReader:
    """A NodeReader over a dict of prefetched nodes."""

    def __init__(self, size: int, nodes: dict[tuple[int, int], bytes]) -> None:
        self.size = size
        self._nodes = nodes

    @property
    def nodes(self) -> dict[tuple[int, int], bytes]:
        return self._nodes

    def node(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise StoreUnavailable(
                "the relay log is missing a node; restore from a backup"
            ) from None


def plan_nodes(size: int, work: Iterable[Callable[[NodeReader], object]]) -> set[tuple[int, int]]:
    """The node coordinates the proof computations in ``work`` will read."""
    recorder = _Recorder(size)
    for fn in work:
        fn(recorder)
    return recorder.asked


def check_sizes(old: int, new: int, current: int) -> None:
    if not 0 < old <= new <= current:
        raise LocalProtocolError("need 0 < first <= second <= the log's current size")


def check_leaf(index: int, tree_size: int, current: int) -> None:
    if not 0 <= index < tree_size <= current:
        raise LocalProtocolError("need 0 <= leaf_index < tree_size <= the log's current size")


def cell_proofs(
    positions: Sequence[tuple[int, int]],
    tree_size: int,
    nodes: DictReader,
    members: Callable[[int], Sequence[bytes]],
) -> list[CellProof]:
    """Assemble :class:`CellProof` values; ``members(leaf)`` gives a batch's hashes."""
    trees: dict[int, BatchTree] = {}
    paths: dict[int, list[bytes]] = {}
    out: list[CellProof] = []
    for leaf_index, position in positions:
        tree = trees.get(leaf_index)
        if tree is None:
            tree = trees[leaf_index] = BatchTree(members(leaf_index))
        if not 0 <= position < len(tree.members):
            raise LookupError("that batch's members have expired")
        path = paths.get(leaf_index)
        if path is None:
            path = paths[leaf_index] = merkle.inclusion_proof(nodes, leaf_index, tree_size)
        out.append(
            CellProof(leaf_index, position, len(tree.members), tree.proof(position), list(path))
        )
    return out


def plan_cell_proofs(
    positions: Sequence[tuple[int, int]], tree_size: int, current: int
) -> set[tuple[int, int]]:
    """Check each position's leaf against ``tree_size`` and the log's ``current``
    size; the nodes their inclusion proofs read (one plan per leaf)."""
    for leaf_index, _ in positions:
        check_leaf(leaf_index, tree_size, current)
    leaves = {leaf for leaf, _ in positions}
    return plan_nodes(tree_size, [inclusion_work(leaf, tree_size) for leaf in leaves])


def inclusion_work(leaf_index: int, tree_size: int) -> Callable[[NodeReader], object]:
    return lambda reader: merkle.inclusion_proof(reader, leaf_index, tree_size)


def consistency_work(old: int, new: int) -> Callable[[NodeReader], object]:
    return lambda reader: merkle.consistency_proof(reader, old, new)


def split_hashes(blob: bytes) -> list[bytes]:
    return [bytes(blob[i : i + HASH_LEN]) for i in range(0, len(blob), HASH_LEN)]
