"""The relay's storage interface.

The relay keeps opaque fixed-size cells addressed by (tenant, slot). A tenant is
a mission registered on the relay; the slot address is the capability the
depositor holds. The store never sees who deposited a cell.

Every mutating call takes ``now`` (seconds since the epoch, already coarsened by
the caller) instead of reading a clock, so tests pin time.

Backends: :mod:`.memory` (tests), :mod:`.sqlite` (embedded default),
:mod:`.postgres` (several relay processes on one database). All pass one shared
test suite (``tests/store/``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from backchannel.crypto.notesig import Ed25519NoteKey
from backchannel.protocol.merkle import EMPTY_ROOT, TreeHead
from backchannel.store._intake import IntakeStore

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 ``H(0x00 || data)``: :func:`backchannel.protocol.merkle.leaf_hash`.

    The same hash through :mod:`hashlib` directly, for the commit path, where
    it costs a third of the general helper's time.
    """
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 ``H(0x01 || left || right)``: :func:`backchannel.protocol.merkle.node_hash`."""
    return _sha256(b"\x01" + left + right).digest()


@dataclass(frozen=True, slots=True)
class TenantRecord:
    tenant_id: str
    #: SHA-256 of the tenant's fetch credential; compare in constant time.
    credential_hash: bytes
    #: Most cells the tenant may hold at once.
    quota_cells: int
    created_at: int


class BatchTree:
    """The cell-entry hashes of one committed batch, in commit order.

    Built once per batch and shared by the receipts of its cells. The RFC 9162
    tree is kept level by level: each level pairs neighbours and carries an
    odd last node up unchanged, which gives exactly the RFC's tree (its splits
    at the largest power of two below n) and makes each proof a few lookups.
    """

    __slots__ = ("_levels", "members")

    def __init__(self, members: Sequence[bytes]) -> None:
        self.members = tuple(members)
        self._levels: list[list[bytes]] | None = None

    def _tree(self) -> list[list[bytes]]:
        if self._levels is None:
            level = list(self.members)
            levels = [level]
            while len(level) > 1:
                pairs = [node_hash(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
                if len(level) & 1:
                    pairs.append(level[-1])
                level = pairs
                levels.append(level)
            self._levels = levels
        return self._levels

    @classmethod
    def of_entries(cls, entries: Sequence[bytes]) -> BatchTree:
        return cls([leaf_hash(e) for e in entries])

    def root(self) -> bytes:
        return self._tree()[-1][0] if self.members else EMPTY_ROOT

    def proof(self, position: int) -> list[bytes]:
        """PATH(position, batch), leaf upwards."""
        if not 0 <= position < len(self.members):
            raise IndexError("no such position in the batch")
        out: list[bytes] = []
        for level in self._tree()[:-1]:
            sibling = position ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            position >>= 1
        return out


@dataclass(frozen=True, slots=True)
class LogReceipt:
    """A new cell's place in the log, exactly as its batch's commit left it.

    ``head`` is the (unsigned) head right after the batch, ``inclusion_proof``
    proves the batch's leaf in it. Signed heads come from
    :meth:`RelayStore.log_receipt`, off the deposit's commit path.
    """

    batch: BatchTree = field(repr=False)
    position: int
    head: TreeHead
    inclusion_proof: tuple[bytes, ...]

    def batch_proof(self) -> list[bytes]:
        return self.batch.proof(self.position)


@dataclass(frozen=True, slots=True)
class CellProof:
    """Where one stored cell sits in the log, with its proofs against one head."""

    leaf_index: int
    batch_position: int
    batch_size: int
    batch_proof: list[bytes]
    inclusion_proof: list[bytes]


@dataclass(frozen=True, slots=True)
class DepositResult:
    #: SHA-256 of the cell bytes.
    cell_id: bytes
    #: False when the identical cell was already stored (an idempotent retry).
    created: bool
    # Where the cell sits in the relay log (None when the store keeps no log).
    # An idempotent retry reports the cell's original position. These fields
    # do not take part in equality: two results are equal when they report the
    # same cell and outcome.
    leaf_index: int | None = field(default=None, compare=False)
    batch_position: int | None = field(default=None, compare=False)
    batch_size: int | None = field(default=None, compare=False)
    #: The batch's head and proofs, for a cell this very call stored (else None).
    receipt: LogReceipt | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class LoggedCell:
    """A fetched cell and its place in the log (None for cells stored without a log)."""

    cell: bytes
    leaf_index: int | None
    batch_position: int | None


class RelayStore(IntakeStore, Protocol):
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None:
        """Finish in-flight writes and release resources."""

    async def create_tenant(
        self, tenant_id: str, credential_hash: bytes, quota_cells: int, now: int
    ) -> TenantRecord:
        """Register a tenant. Raises ``TenantExists``."""

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...

    async def rotate_credential(
        self, tenant_id: str, credential_hash: bytes, version: int, seq: int, roster_hash: bytes
    ) -> str:
        """Move the tenant to ``credential_hash`` if the rotation (made under
        roster ``version`` with hash ``roster_hash``, number ``seq`` within it)
        comes after the one in force, atomically with that check.

        Returns ``"rotated"``, ``"same"`` (this rotation is in force),
        ``"stale"`` (a later one is) or ``"fork"`` (one under another roster
        of the same version is); raises ``UnknownTenant``. The caller has
        verified the rotation's signatures (:mod:`backchannel.protocol.tenant_credential`).
        """

    async def deposit(self, tenant_id: str, slot: bytes, cell: bytes, now: int) -> DepositResult:
        """Store ``cell`` at ``slot``; return only once it is durable.

        The same cell again at the same slot is not duplicated
        (``created=False``). A different cell at an occupied slot raises
        ``SlotConflict``; a full tenant raises ``QuotaExceeded``; an unknown
        tenant raises ``UnknownTenant``.
        """

    async def deposit_many(
        self, cells: Sequence[tuple[str, bytes, bytes]], now: int
    ) -> list[DepositResult | BaseException]:
        """Each (tenant, slot, cell) as :meth:`deposit` stores it, in the order
        given: its result, or the error that refused it (the others go on)."""

    async def fetch(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, bytes]:
        """Cells present at those slots of this tenant (absent slots are left out)."""

    async def ack(self, tenant_id: str, slots: Sequence[bytes], now: int) -> int:
        """Delete acknowledged cells of this tenant; return how many were removed.

        The slot stays spent until its retention is over: a fetch reports it
        spent (not absent) and a different cell there is a ``SlotConflict``,
        so an acknowledgement never looks like a drop or frees a slot for a
        replay (``docs/spec/relay-log-v1.md`` §3.2). It no longer counts
        towards the quota.
        """

    async def expire(self, now: int, retention_seconds: int) -> int:
        """Delete cells (and spent slots) older than ``now - retention_seconds``; return how
        many cells were removed.

        A cell's age counts from its batch's time (its log leaf's
        ``coarse_time``, which never goes backwards), so no cell expires
        sooner after its leaf than the retention.
        """

    async def count_cells(self, tenant_id: str | None = None) -> int: ...

    # -- the transparency log (docs/spec/relay-log-v1.md) ------------------------
    # One leaf per committed batch, appended in the batch's own transaction.

    async def fetch_logged(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, LoggedCell]:
        """As :meth:`fetch`, with each cell's leaf index and batch position."""

    async def fetch_proved(
        self, tenant_id: str, slots: Sequence[bytes]
    ) -> tuple[bytes, dict[bytes, bytes], dict[bytes, CellProof]]:
        """As :meth:`fetch`, in one snapshot with the compact signed head of that
        snapshot and each logged cell's proofs against it.

        A slot whose cell the tenant acknowledged maps to ``b""`` (spent): it
        holds no cell, yet is not empty, and takes no other cell until its
        retention is over.
        """

    async def log_head(self) -> TreeHead:
        """The head of the log as committed now (unsigned)."""

    async def signed_head(self) -> bytes:
        """The full signed head of the current log: ``TreeHead.encode() || hybrid signature``."""

    async def log_leaf(self, index: int) -> bytes:
        """The bytes of leaf ``index``. Raises ``LookupError`` beyond the log."""

    async def batch_proof(self, leaf_index: int, position: int) -> list[bytes]:
        """Inclusion of the cell entry at ``position`` in batch ``leaf_index``'s tree.

        Raises ``LookupError`` when that batch's members have expired or do not exist.
        """

    async def inclusion_proof(self, leaf_index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``leaf_index`` in the tree of ``tree_size``."""

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof from ``old_size`` to ``new_size``."""

    async def cell_proofs(
        self, positions: Sequence[tuple[int, int]], tree_size: int
    ) -> list[CellProof]:
        """Batch and inclusion proofs of several ``(leaf_index, position)`` at once."""

    async def log_receipt(self, leaf_index: int, position: int) -> tuple[bytes, CellProof]:
        """A compact signed head that covers the cell, and the cell's proofs against it.

        The compact head (``TreeHead.encode() || Ed25519``) is signed for the
        newest head this process knows and shared by every receipt until the
        log grows. Recent batches are answered from memory.
        """

    async def compact_head(self) -> bytes:
        """The compact signed head (``TreeHead.encode() || Ed25519``) of the current log."""

    def log_public_key(self) -> bytes:
        """The relay's public signing key (Ed25519 then ML-DSA-65); after ``open``."""

    def checkpoint_key(self) -> Ed25519NoteKey:
        """The key that signs the log's checkpoints (c2sp.org/tlog-checkpoint); after ``open``."""

    def bind_checkpoint_key(self, origin: str) -> bytes:
        """The log key's Ed25519 signature binding the checkpoint key to ``origin``."""

    async def keep_checkpoint(self, size: int, cosignatures: int, note: bytes) -> None:
        """Keep ``note``, a checkpoint of ``size`` that witnesses cosigned, for every process.

        It replaces the kept one if its size is larger, or equal with at least
        as many cosignatures; otherwise the kept one stays. The caller has
        verified the cosignatures.
        """

    async def kept_checkpoint(self) -> bytes | None:
        """The kept cosigned checkpoint, or None before any witness cosigned."""

    def compact_signed(self, head: TreeHead) -> bytes:
        """The compact signed head of ``head``, a head this log committed (the caller checks)."""

    def sign_absence(
        self,
        head: TreeHead,
        served_at: int,
        tenant_id: str,
        slots: Sequence[bytes],
        retention: int = ...,
        spent: Sequence[bytes] = ...,
    ) -> bytes:
        """The encoded, signed :class:`~backchannel.protocol.misbehaviour.Absence` of
        ``slots`` (empty) and ``spent`` (acknowledged)."""
