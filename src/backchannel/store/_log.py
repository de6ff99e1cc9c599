"""The relay log's bookkeeping, shared by every store backend.

The log is RFC 9162 (:mod:`backchannel.protocol.merkle`) with one leaf per
committed batch (:class:`~backchannel.protocol.misbehaviour.LogLeaf`). What a
backend keeps, in the same transaction as the cells it logs:

* ``log_head``: one row, the size, the frontier (the tiles of ``[0, size)``,
  largest first, concatenated) and the timestamp of the current head; the row
  every appender locks, so appends are serialised across processes;
* every complete subtree (node), written once;
* the leaf bytes, kept forever;
* each batch's cell-entry hashes (its members), dropped when the whole batch
  is past retention (an acknowledged cell's hash stays: the other cells of its
  batch still need it for their proofs);
* with each cell, its ``leaf_index`` and ``batch_position``.

PostgreSQL keeps these in ``log_nodes(level, idx, hash)``, ``log_leaves`` and
``log_members``. SQLite keeps all three in one ``log_leaves`` row per leaf
(``nodes``: the subtrees the leaf completes, level 0 first; ``members``), so
an append writes one row beside the head (migration 0003).

An append is O(log n): the new leaf node plus the parents it completes, all
computed from the frontier. A proof reads O(log n) nodes; the coordinates are
known in advance (:func:`plan_nodes`), so a backend fetches them in one query.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from backchannel.crypto import labels
from backchannel.crypto.notesig import Ed25519NoteKey
from backchannel.crypto.primitives import HASH_LEN, hkdf
from backchannel.crypto.signing import SigningKey
from backchannel.protocol import merkle
from backchannel.protocol.constants import MIN_RETENTION_SECONDS
from backchannel.protocol.merkle import EMPTY_ROOT, Frontier, TreeHead
from backchannel.protocol.misbehaviour import Absence, LogLeaf, sign_head, sign_head_compact
from backchannel.store._log_key import (
    KEY_FILE_LEN,
    KEY_FILE_VERSION,
    key_from_seeds,
    load_or_create_key_file,
    new_key_seeds,
)
from backchannel.store._log_proofs import DictReader, cell_proofs, inclusion_work, plan_nodes
from backchannel.store.relay_store import BatchTree, CellProof, leaf_hash, node_hash

__all__ = [
    "KEY_FILE_LEN",
    "KEY_FILE_VERSION",
    "key_from_seeds",
    "load_or_create_key_file",
    "new_key_seeds",
]

Node = tuple[int, int, bytes]


# -- the head row ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeadState:
    """The committed head: its frontier and its timestamp."""

    frontier: Frontier
    timestamp: int

    @property
    def size(self) -> int:
        return self.frontier.size

    def head(self) -> TreeHead:
        return TreeHead(self.frontier.size, self.frontier.root(), self.timestamp)

    def frontier_bytes(self) -> bytes:
        return b"".join(self.frontier.hashes)

    @classmethod
    def from_row(cls, size: int, frontier: bytes, timestamp: int) -> HeadState:
        hashes = tuple(bytes(frontier[i : i + HASH_LEN]) for i in range(0, len(frontier), HASH_LEN))
        return cls(Frontier(int(size), hashes), int(timestamp))


EMPTY_STATE = HeadState(Frontier(), 0)
assert EMPTY_STATE.head().root == EMPTY_ROOT


@dataclass(frozen=True, slots=True)
class Append:
    """What one batch writes to the log, computed from the head before it."""

    leaf_index: int
    leaf: bytes
    time: int
    nodes: tuple[Node, ...]
    state: HeadState
    #: Inclusion proof of the new leaf in the new head: the old frontier, reversed.
    inclusion_proof: tuple[bytes, ...]
    #: The head right after this batch.
    head: TreeHead


def append_batch(before: HeadState, batch_root: bytes, batch_size: int, now: int) -> Append:
    """Append the leaf of one batch to the head ``before``.

    The batch time never goes backwards, so head timestamps never decrease as
    the log grows (a signed head with a larger size and an earlier time than
    another is then proof of a rewind).
    """
    index = before.size
    when = max(before.timestamp, now)
    leaf = LogLeaf(index, batch_size, batch_root, when).encode()
    h = leaf_hash(leaf)
    old = before.frontier.hashes
    hashes = list(old)
    nodes: list[Node] = [(0, index, h)]
    level, i = 0, index
    while i & 1:
        h = node_hash(hashes.pop(), h)
        level, i = level + 1, i >> 1
        nodes.append((level, i, h))
    hashes.append(h)
    after = HeadState(Frontier(index + 1, tuple(hashes)), when)
    # The new root, folded from the right as Frontier.root() does.
    root = h
    for tile in reversed(hashes[:-1]):
        root = node_hash(tile, root)
    return Append(
        index, leaf, when, tuple(nodes), after, old[::-1], TreeHead(index + 1, root, when)
    )


# -- proofs from the cache, else from a few prefetched nodes (_log_proofs.py) ----------


def from_memory(
    cache: LogCache, positions: Sequence[tuple[int, int]], tree_size: int
) -> list[CellProof] | None:
    """Every position's proofs from the cache, or None if any needs a read.

    Only for a size this process knows committed; otherwise the store reads
    (and checks the size against) the head.
    """
    if not 0 < tree_size <= cache.known.size:
        return None
    out = []
    for leaf_index, position in positions:
        if not 0 <= leaf_index < tree_size:
            return None
        proof = cache.try_proof(leaf_index, position, tree_size)
        if proof is None:
            return None
        out.append(proof)
    return out


# -- signing and the in-process memory of recent batches ----------------------------------

#: Inclusion proofs kept in memory (one per leaf and head size asked about).
CACHE_INCLUSIONS = 4096
#: Complete-subtree nodes kept in memory (about 100 bytes each).
CACHE_NODES = 1 << 16
#: Recent batches whose members are kept in memory for deposit answers...
CACHE_BATCHES = 4096
#: ...as long as they hold no more cells than this in all (~150 bytes each
#: with the batch trees' inner nodes): about 10 MB.
CACHE_MEMBERS = 1 << 16


class LogCache:
    """The relay key, signed heads, and what this process knows of the log.

    Everything cached is immutable once committed (nodes, batch members), so
    the cache is correct even when other processes append to the same log; it
    only ever misses. ``known`` is the newest head this process has committed
    or read. Safe to use from the event loop and from the SQLite writer's
    thread (which runs a group that had to wait for a lock).
    """

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.latest: bytes | None = None
        self.latest_size = -1
        self.known = EMPTY_STATE
        self._lock = threading.Lock()
        self._nodes: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._batches: OrderedDict[int, tuple[BatchTree, TreeHead, tuple[bytes, ...]]] = (
            OrderedDict()
        )
        self._compacts: OrderedDict[int, bytes] = OrderedDict()
        #: Inclusion proofs by (leaf index, tree size): immutable, and every
        #: cell of a batch read against one head shares its leaf's.
        self._inclusions: OrderedDict[tuple[int, int], tuple[bytes, ...]] = OrderedDict()
        self._members_cached = 0
        self._inflight: asyncio.Future[None] | None = None
        self.compact: bytes | None = None
        self.compact_size = -1
        self._checkpoint_key: Ed25519NoteKey | None = None

    def public_key(self) -> bytes:
        vk = self.key.verify_key
        return vk.ed25519 + vk.mldsa65

    def checkpoint_key(self) -> Ed25519NoteKey:
        """The key that signs checkpoints: its own Ed25519 key, derived from the log key.

        Checkpoints sign bare text (c2sp.org/signed-note); a key of its own keeps
        those signatures apart from the log key's labelled ones.
        """
        if self._checkpoint_key is None:
            seed = hkdf(self.key.seeds()[0], salt=None, info=labels.CHECKPOINT_KEY)
            self._checkpoint_key = Ed25519NoteKey(seed)
        return self._checkpoint_key

    def bind_checkpoint_key(self, origin: str) -> bytes:
        """The log key's Ed25519 signature over the checkpoint public key and ``origin``.

        Ed25519 (deterministic, so every relay process on one database serves the
        same bytes) and not hybrid: the key it binds is Ed25519 anyway.
        """
        data = self.checkpoint_key().public + origin.encode()
        return self.key.sign_ed25519(labels.SIG_CHECKPOINT_KEY, data)

    def sign(self, head: TreeHead) -> bytes:
        return sign_head(self.key, head)

    def compact_for(self, state: HeadState) -> bytes:
        """A compact (Ed25519) signed head of at least ``state``'s size.

        About 50 µs, so it is signed right here, for the newest head known.
        """
        self.note_state(state)
        with self._lock:
            if self.compact is not None and self.compact_size >= state.size:
                return self.compact
            target = self.known
        signed = sign_head_compact(self.key, target.head())
        with self._lock:
            if target.size > self.compact_size:
                self.compact, self.compact_size = signed, target.size
            return signed

    def sign_absence(
        self,
        head: TreeHead,
        served_at: int,
        tenant_id: str,
        slots: Sequence[bytes],
        retention: int,
        spent: Sequence[bytes] = (),
    ) -> bytes:
        """A signed statement that ``slots`` were empty, and ``spent`` acknowledged,
        in the read that saw ``head``."""
        return Absence.make(self.key, head, served_at, tenant_id, slots, retention, spent).encode()

    def remember(self, signed: bytes, size: int) -> None:
        with self._lock:
            if size > self.latest_size:
                self.latest, self.latest_size = signed, size

    # -- what the process has seen ------------------------------------------

    def note_state(self, state: HeadState) -> None:
        """Record a committed head (and its frontier tiles, which are nodes)."""
        with self._lock:
            if state.size > self.known.size:
                self.known = state
            self._put_nodes(zip(_tiles(state.size), state.frontier.hashes, strict=True))

    def committed(self, tree: BatchTree, step: Append) -> None:
        """This process committed ``step``: keep its members and nodes."""
        with self._lock:
            self._batches[step.leaf_index] = (tree, step.head, step.inclusion_proof)
            self._members_cached += len(tree.members)
            while len(self._batches) > 1 and (
                len(self._batches) > CACHE_BATCHES or self._members_cached > CACHE_MEMBERS
            ):
                _, (old, _, _) = self._batches.popitem(last=False)
                self._members_cached -= len(old.members)
            self._put_nodes(((lv, ix), h) for lv, ix, h in step.nodes)
            if step.state.size > self.known.size:
                self.known = step.state

    def add_nodes(self, nodes: dict[tuple[int, int], bytes]) -> None:
        with self._lock:
            self._put_nodes(nodes.items())

    def _put_nodes(self, items: Iterable[tuple[tuple[int, int], bytes]]) -> None:
        for coord, h in items:
            self._nodes[coord] = h
            self._nodes.move_to_end(coord)
        while len(self._nodes) > CACHE_NODES:
            self._nodes.popitem(last=False)

    def try_proof(self, leaf_index: int, position: int, size: int) -> CellProof | None:
        """The cell's proofs from memory alone, or None on any miss."""
        with self._lock:
            batch = self._batches.get(leaf_index)
            if batch is None or not 0 <= position < len(batch[0].members):
                return None
            tree = batch[0]
            inclusion = self._inclusions.get((leaf_index, size))
            if inclusion is None:
                wanted = plan_nodes(size, [inclusion_work(leaf_index, size)])
                if any(c not in self._nodes for c in wanted):
                    return None
                nodes = {c: self._nodes[c] for c in wanted}
        if inclusion is None:
            path = merkle.inclusion_proof(DictReader(size, nodes), leaf_index, size)
            inclusion = self.remember_inclusion(leaf_index, size, path)
        return CellProof(
            leaf_index, position, len(tree.members), tree.proof(position), list(inclusion)
        )

    def inclusion(self, leaf_index: int, size: int) -> tuple[bytes, ...] | None:
        """A remembered inclusion proof of the leaf in the tree of ``size``, if any."""
        with self._lock:
            return self._inclusions.get((leaf_index, size))

    def remember_inclusion(
        self, leaf_index: int, size: int, path: Sequence[bytes]
    ) -> tuple[bytes, ...]:
        proof = tuple(path)
        with self._lock:
            self._inclusions[(leaf_index, size)] = proof
            while len(self._inclusions) > CACHE_INCLUSIONS:
                self._inclusions.popitem(last=False)
        return proof

    # -- signed heads ---------------------------------------------------------

    def compact_exact(self, head: TreeHead) -> bytes:
        """The compact signed head of a committed ``head`` (one signature per size)."""
        with self._lock:
            signed = self._compacts.get(head.size)
        if signed is None:
            signed = sign_head_compact(self.key, head)
            with self._lock:
                self._compacts[head.size] = signed
                while len(self._compacts) > CACHE_BATCHES:
                    self._compacts.popitem(last=False)
        return signed

    async def signed_for(self, state: HeadState) -> bytes:
        """A signed head of at least ``state``'s size.

        One signature at a time, of the newest head known when it starts;
        callers arriving meanwhile wait for it and, if it does not cover them,
        for the next. Each committed size has exactly one head (fixed at
        commit), so a head signed later is the same statement as one signed at
        once: lazily signing changes when heads are signed, never what.
        """
        self.note_state(state)
        while True:
            latest = self.latest
            if latest is not None and self.latest_size >= state.size:
                return latest
            inflight = self._inflight
            if inflight is None:
                target = self.known
                inflight = self._inflight = asyncio.ensure_future(self._sign_into(target))
            try:
                await asyncio.shield(inflight)
            finally:
                if self._inflight is inflight and inflight.done():
                    self._inflight = None

    async def _sign_into(self, state: HeadState) -> None:
        signed = await asyncio.to_thread(self.sign, state.head())
        self.remember(signed, state.size)

    async def receipt(
        self,
        leaf_index: int,
        position: int,
        read_state: Callable[[], Awaitable[HeadState]],
        proofs: Callable[[list[tuple[int, int]], int], Awaitable[list[CellProof]]],
    ) -> tuple[bytes, CellProof]:
        """A compact signed head covering the leaf, and the cell's proofs against it.

        For a batch this process committed recently, the head right after that
        batch: its proof is the frontier before it, so nothing is read or
        walked, and one Ed25519 signature serves every cell of the batch.
        """
        with self._lock:
            batch = self._batches.get(leaf_index)
        if batch is not None and 0 <= position < len(batch[0].members):
            tree, head, inclusion = batch
            signed = self.compact_exact(head)
            return signed, CellProof(
                leaf_index, position, len(tree.members), tree.proof(position), list(inclusion)
            )
        state = self.known
        if state.size <= leaf_index:
            state = await read_state()
        signed = self.compact_for(state)
        size = TreeHead.decode(signed[: merkle.TREE_HEAD_LEN]).size
        proof = self.try_proof(leaf_index, position, size)
        if proof is None:
            (proof,) = await proofs([(leaf_index, position)], size)
        return signed, proof


class LogSigning:
    """The relay's signed statements, for a store whose :meth:`_log_cache` is its
    :class:`LogCache` (every store answers them the same way)."""

    def _log_cache(self) -> LogCache:
        raise NotImplementedError

    def compact_signed(self, head: TreeHead) -> bytes:
        return self._log_cache().compact_exact(head)

    def sign_absence(
        self,
        head: TreeHead,
        served_at: int,
        tenant_id: str,
        slots: Sequence[bytes],
        retention: int = MIN_RETENTION_SECONDS,
        spent: Sequence[bytes] = (),
    ) -> bytes:
        return self._log_cache().sign_absence(head, served_at, tenant_id, slots, retention, spent)

    async def _current_state(self) -> HeadState:
        """The committed head (the store's own read)."""
        raise NotImplementedError

    async def cell_proofs(
        self, positions: Sequence[tuple[int, int]], tree_size: int
    ) -> list[CellProof]:
        raise NotImplementedError

    async def signed_head(self) -> bytes:
        cache = self._log_cache()
        return await cache.signed_for(await self._current_state())

    async def compact_head(self) -> bytes:
        cache = self._log_cache()
        return cache.compact_for(await self._current_state())

    async def log_receipt(self, leaf_index: int, position: int) -> tuple[bytes, CellProof]:
        cache = self._log_cache()
        return await cache.receipt(leaf_index, position, self._current_state, self.cell_proofs)

    def log_public_key(self) -> bytes:
        return self._log_cache().public_key()

    def checkpoint_key(self) -> Ed25519NoteKey:
        return self._log_cache().checkpoint_key()

    def bind_checkpoint_key(self, origin: str) -> bytes:
        return self._log_cache().bind_checkpoint_key(origin)


def _tiles(size: int) -> list[tuple[int, int]]:
    """Coordinates of the frontier tiles of ``size``, largest first."""
    out = []
    pos = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, pos >> level))
            pos += 1 << level
    return out


def prove_cells(
    cache: LogCache,
    size: int,
    cells: dict[bytes, tuple[bytes, int | None, int | None]],
    read_nodes: Callable[[set[tuple[int, int]]], DictReader],
    read_members: Callable[[int], Sequence[bytes]],
) -> tuple[dict[bytes, bytes], dict[bytes, CellProof]]:
    """Proofs, against the tree of ``size``, of fetched cells (memory first, then reads)."""
    found = {slot: c for slot, (c, _, _) in cells.items()}
    proofs: dict[bytes, CellProof] = {}
    missing: list[tuple[bytes, int, int]] = []
    for slot, (_, leaf, pos) in cells.items():
        if leaf is None or pos is None or leaf >= size:
            continue  # stored before the log, or after this snapshot's head
        proof = cache.try_proof(leaf, pos, size)
        if proof is None:
            missing.append((slot, leaf, pos))
        else:
            proofs[slot] = proof
    if missing:
        members = {leaf: read_members(leaf) for leaf in {leaf for _, leaf, _ in missing}}
        # A batch whose members expired can only hold cells that expired with
        # it; should one be read in that instant, it goes without a proof.
        missing = [m for m in missing if m[2] < len(members[m[1]])]
        leaves = {leaf for _, leaf, _ in missing}
        wanted = plan_nodes(size, [inclusion_work(leaf, size) for leaf in leaves])
        reader = read_nodes(wanted)
        cache.add_nodes(reader.nodes)
        got = cell_proofs(
            [(leaf, pos) for _, leaf, pos in missing], size, reader, lambda i: members[i]
        )
        for (slot, _, _), proof in zip(missing, got, strict=True):
            proofs[slot] = proof
    return found, proofs
