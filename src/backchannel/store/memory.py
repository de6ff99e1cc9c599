"""An in-memory relay store for tests, with the same semantics as the others.

Nothing here survives the process. ``close()`` keeps the data so that a test can
``open()`` the same object again, as it would reopen a database file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from backchannel.crypto.signing import SigningKey
from backchannel.errors import (
    IntakeClosed,
    QuotaExceeded,
    SlotConflict,
    TenantExists,
    UnknownTenant,
)
from backchannel.protocol import merkle
from backchannel.protocol.constants import CELL_SIZE
from backchannel.protocol.merkle import MemoryLog, TreeHead
from backchannel.protocol.misbehaviour import cell_entry
from backchannel.store import _common, _intake, _log, _log_proofs
from backchannel.store.relay_store import (
    BatchTree,
    CellProof,
    DepositResult,
    LoggedCell,
    LogReceipt,
    TenantRecord,
)


@dataclass(frozen=True, slots=True)
class _StoredCell:
    cell_id: bytes
    cell: bytes
    deposited_at: int
    leaf_index: int | None = None
    batch_position: int | None = None


class MemoryRelayStore(_log.LogSigning):
    """Dictionaries behind the :class:`~backchannel.store.relay_store.RelayStore` interface.

    Every method runs to completion without awaiting, so calls on one event
    loop are atomic and need no lock.
    """

    def __init__(
        self,
        *,
        cell_size: int = CELL_SIZE,
        log: bool = True,
        signing_key: SigningKey | None = None,
    ) -> None:
        self._cell_size = _common.check_cell_size(cell_size)
        self._open = False
        self._tenants: dict[str, TenantRecord] = {}
        #: The credential rotation in force: (roster version, sequence, roster hash).
        self._rotations: dict[str, tuple[int, int, bytes]] = {}
        # A slot whose cell was acknowledged keeps its entry with ``cell=b""``
        # (spent) until retention: slots are write-once.
        self._cells: dict[str, dict[bytes, _StoredCell]] = {}
        self._spent: dict[str, int] = {}
        # The intake: tenant -> open; tenant -> [(seq, digest, cell, received)];
        # tenant -> next seq; tenant -> the highest number its mission fetched
        # past (requests up to it no longer count against the cap).
        self._intake_open: dict[str, bool] = {}
        self._intake: dict[str, list[tuple[int, bytes, bytes, int]]] = {}
        self._intake_next: dict[str, int] = {}
        self._intake_fetched: dict[str, int] = {}
        # The log: one leaf per deposit that stored a cell.
        self._logging = log
        key = signing_key or _log.key_from_seeds(*_log.new_key_seeds())
        self._signer = _log.LogCache(key)
        self._tree = MemoryLog()
        self._leaves: list[bytes] = []
        self._times: list[int] = []
        self._members: dict[int, BatchTree] = {}
        self._state = _log.EMPTY_STATE
        # The kept cosigned checkpoint: (size, cosignatures, note).
        self._checkpoint: tuple[int, int, bytes] | None = None

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise _common.not_open()

    async def keep_checkpoint(self, size: int, cosignatures: int, note: bytes) -> None:
        _common.check_checkpoint(size, cosignatures, note)
        self._check_open()
        kept = self._checkpoint
        if kept is None or (size, cosignatures) >= kept[:2]:
            self._checkpoint = (size, cosignatures, note)

    async def kept_checkpoint(self) -> bytes | None:
        self._check_open()
        return None if self._checkpoint is None else self._checkpoint[2]

    async def create_tenant(
        self, tenant_id: str, credential_hash: bytes, quota_cells: int, now: int
    ) -> TenantRecord:
        _common.check_new_tenant(tenant_id, credential_hash, quota_cells)
        self._check_open()
        if tenant_id in self._tenants:
            raise TenantExists("that tenant id is already registered; choose another")
        record = TenantRecord(tenant_id, credential_hash, quota_cells, now)
        self._tenants[tenant_id] = record
        self._cells[tenant_id] = {}
        self._spent[tenant_id] = 0
        return record

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        _common.check_tenant_id(tenant_id)
        self._check_open()
        return self._tenants.get(tenant_id)

    async def rotate_credential(
        self, tenant_id: str, credential_hash: bytes, version: int, seq: int, roster_hash: bytes
    ) -> str:
        _common.check_rotation(tenant_id, credential_hash, version, seq, roster_hash)
        self._check_open()
        record = self._tenants.get(tenant_id)
        if record is None:
            raise UnknownTenant("no such tenant is registered on this relay")
        current = self._rotations.get(tenant_id)
        in_force = (record.credential_hash, *(current or (None, None, None)))
        outcome = _common.rotation_outcome(in_force, credential_hash, version, seq, roster_hash)
        if outcome == _common.ROTATED:
            self._tenants[tenant_id] = replace(record, credential_hash=credential_hash)
            self._rotations[tenant_id] = (version, seq, roster_hash)
        return outcome

    async def deposit_many(
        self, cells: Sequence[tuple[str, bytes, bytes]], now: int
    ) -> list[DepositResult | BaseException]:
        return await _common.deposit_each(self.deposit, cells, now)

    async def deposit(self, tenant_id: str, slot: bytes, cell: bytes, now: int) -> DepositResult:
        _common.check_tenant_id(tenant_id)
        _common.check_slot(slot)
        _common.check_cell(cell, self._cell_size)
        self._check_open()
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise UnknownTenant("no such tenant is registered on this relay")
        cells = self._cells[tenant_id]
        cell_id = _common.cell_id_of(cell)
        existing = cells.get(slot)
        if existing is not None:
            if existing.cell_id == cell_id:
                return self._retry_result(existing)
            raise SlotConflict("a different cell already occupies that slot")
        if len(cells) - self._spent[tenant_id] >= tenant.quota_cells:
            raise QuotaExceeded("the tenant's cell quota is used up; fetch and ack, then retry")
        if not self._logging:
            cells[slot] = _StoredCell(cell_id, cell, now)
            return DepositResult(cell_id, created=True)
        batch = BatchTree.of_entries([cell_entry(tenant_id, slot, cell_id)])
        step = _log.append_batch(self._state, batch.root(), 1, now)
        self._tree.append(step.leaf)
        self._leaves.append(step.leaf)
        self._times.append(step.time)
        self._members[step.leaf_index] = batch
        self._state = step.state
        self._signer.committed(batch, step)
        # Kept from the batch's time (its leaf's), which never goes backwards:
        # expiry never comes before the hour clients hold the relay to.
        cells[slot] = _StoredCell(cell_id, cell, step.time, step.leaf_index, 0)
        receipt = LogReceipt(batch, 0, step.head, step.inclusion_proof)
        return DepositResult(cell_id, True, step.leaf_index, 0, 1, receipt)

    async def fetch(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, bytes]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        self._check_open()
        cells = self._cells.get(tenant_id, {})
        return {slot: c.cell for slot in wanted if (c := cells.get(slot)) is not None and c.cell}

    async def fetch_logged(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, LoggedCell]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        self._check_open()
        cells = self._cells.get(tenant_id, {})
        return {
            slot: LoggedCell(c.cell, c.leaf_index, c.batch_position)
            for slot in wanted
            if (c := cells.get(slot)) is not None and c.cell
        }

    async def ack(self, tenant_id: str, slots: Sequence[bytes], now: int) -> int:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        self._check_open()
        cells = self._cells.get(tenant_id, {})
        removed = 0
        for slot in wanted:
            stored = cells.get(slot)
            if stored is not None and stored.cell:
                cells[slot] = replace(stored, cell=b"")
                self._spent[tenant_id] += 1
                removed += 1
        return removed

    async def expire(self, now: int, retention_seconds: int) -> int:
        _common.check_expiry(retention_seconds)
        self._check_open()
        cutoff = now - retention_seconds
        removed = 0
        for tenant_id, cells in self._cells.items():
            old = [slot for slot, stored in cells.items() if stored.deposited_at <= cutoff]
            for slot in old:
                if cells.pop(slot).cell:
                    removed += 1
                else:
                    self._spent[tenant_id] -= 1
        for index in [i for i in self._members if self._times[i] <= cutoff]:
            del self._members[index]
        return removed

    async def count_cells(self, tenant_id: str | None = None) -> int:
        self._check_open()
        if tenant_id is None:
            return sum(len(cells) for cells in self._cells.values()) - sum(self._spent.values())
        _common.check_tenant_id(tenant_id)
        return len(self._cells.get(tenant_id, {})) - self._spent.get(tenant_id, 0)

    # -- the log -------------------------------------------------------------

    def _retry_result(self, stored: _StoredCell) -> DepositResult:
        if stored.leaf_index is None or stored.batch_position is None:
            return DepositResult(stored.cell_id, created=False)
        batch = self._members.get(stored.leaf_index)
        return DepositResult(
            stored.cell_id,
            False,
            stored.leaf_index,
            stored.batch_position,
            len(batch.members) if batch is not None else None,
        )

    async def fetch_proved(
        self, tenant_id: str, slots: Sequence[bytes]
    ) -> tuple[bytes, dict[bytes, bytes], dict[bytes, CellProof]]:
        logged = await self.fetch_logged(tenant_id, slots)
        stored = self._cells.get(tenant_id, {})
        spent = {s: b"" for s in _common.check_slots(slots) if s in stored and not stored[s].cell}
        size = self._state.size
        positions = [
            (slot, (c.leaf_index, c.batch_position))
            for slot, c in logged.items()
            if c.leaf_index is not None and c.batch_position is not None
        ]
        proofs = await self.cell_proofs([p for _, p in positions], size) if positions else []
        return (
            self._signer.compact_exact(self._state.head()),
            {**{slot: c.cell for slot, c in logged.items()}, **spent},
            {slot: proof for (slot, _), proof in zip(positions, proofs, strict=True)},
        )

    async def log_head(self) -> TreeHead:
        self._check_open()
        return self._state.head()

    async def _current_state(self) -> _log.HeadState:
        self._check_open()
        return self._state

    async def log_leaf(self, index: int) -> bytes:
        self._check_open()
        if not 0 <= index < len(self._leaves):
            raise LookupError("no such leaf in the log")
        return self._leaves[index]

    async def batch_proof(self, leaf_index: int, position: int) -> list[bytes]:
        self._check_open()
        batch = self._members.get(leaf_index)
        if batch is None or not 0 <= position < len(batch.members):
            raise LookupError("no such batch member in the log (expired or never stored)")
        return batch.proof(position)

    async def inclusion_proof(self, leaf_index: int, tree_size: int) -> list[bytes]:
        self._check_open()
        _log_proofs.check_leaf(leaf_index, tree_size, self._tree.size)
        return merkle.inclusion_proof(self._tree, leaf_index, tree_size)

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        self._check_open()
        _log_proofs.check_sizes(old_size, new_size, self._tree.size)
        return merkle.consistency_proof(self._tree, old_size, new_size)

    async def cell_proofs(
        self, positions: Sequence[tuple[int, int]], tree_size: int
    ) -> list[CellProof]:
        self._check_open()
        for leaf_index, _ in positions:
            _log_proofs.check_leaf(leaf_index, tree_size, self._tree.size)
        out: list[CellProof] = []
        for leaf_index, position in positions:
            batch = self._members.get(leaf_index)
            if batch is None or not 0 <= position < len(batch.members):
                raise LookupError("that batch's members have expired")
            out.append(
                CellProof(
                    leaf_index,
                    position,
                    len(batch.members),
                    batch.proof(position),
                    merkle.inclusion_proof(self._tree, leaf_index, tree_size),
                )
            )
        return out

    def _log_cache(self) -> _log.LogCache:
        return self._signer

    # -- the intake (store/_intake.py) -------------------------------------------

    async def intake_set_open(self, tenant_id: str, is_open: bool, now: int) -> None:
        _common.check_tenant_id(tenant_id)
        self._check_open()
        if tenant_id not in self._tenants:
            raise UnknownTenant("no such tenant is registered on this relay")
        self._intake_open[tenant_id] = is_open

    async def intake_is_open(self, tenant_id: str) -> bool:
        _common.check_tenant_id(tenant_id)
        self._check_open()
        return self._intake_open.get(tenant_id, False)

    async def intake_put(
        self, tenant_id: str, cell: bytes, cap: int, now: int
    ) -> _intake.IntakeStored:
        _common.check_tenant_id(tenant_id)
        _intake.check_request(cell)
        _intake.check_cap(cap)
        self._check_open()
        if not self._intake_open.get(tenant_id, False):
            raise IntakeClosed("this mission does not take requests here")
        digest = _common.cell_id_of(cell)
        queue = self._intake.setdefault(tenant_id, [])
        for seq, seen, _, _ in queue:
            if seen == digest:
                return _intake.IntakeStored(seq, created=False)
        fetched = self._intake_fetched.get(tenant_id, 0)
        if sum(1 for row in queue if row[0] > fetched) >= cap:
            raise QuotaExceeded("this mission's intake is full; try again later")
        seq = self._intake_next.get(tenant_id, 1)
        self._intake_next[tenant_id] = seq + 1
        queue.append((seq, digest, cell, now))
        return _intake.IntakeStored(seq, created=True)

    async def intake_fetch(self, tenant_id: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        _common.check_tenant_id(tenant_id)
        _intake.check_fetch(after, limit)
        self._check_open()
        rows = [(seq, cell) for seq, _, cell, _ in self._intake.get(tenant_id, []) if seq > after]
        fetched = self._intake_fetched.get(tenant_id, 0)
        mark = _intake.fetched_mark(fetched, after, self._intake_next.get(tenant_id, 1))
        if mark > fetched:
            self._intake_fetched[tenant_id] = mark
        return rows[:limit]

    async def intake_expire(self, now: int, retention_seconds: int) -> int:
        _common.check_expiry(retention_seconds)
        self._check_open()
        cutoff = now - retention_seconds
        removed = 0
        for tenant_id, queue in self._intake.items():
            kept = [row for row in queue if row[3] > cutoff]
            removed += len(queue) - len(kept)
            self._intake[tenant_id] = kept
        return removed
