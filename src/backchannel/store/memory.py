"""An in-memory relay store for tests, with the same semantics as the others.

Nothing here survives the process. ``close()`` keeps the data so that a test can
``open()`` the same object again, as it would reopen a database file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backchannel.errors import QuotaExceeded, SlotConflict, TenantExists, UnknownTenant
from backchannel.protocol.constants import CELL_SIZE
from backchannel.store import _common
from backchannel.store.relay_store import DepositResult, TenantRecord


@dataclass(frozen=True, slots=True)
class _StoredCell:
    cell_id: bytes
    cell: bytes
    deposited_at: int


class MemoryRelayStore:
    """Dictionaries behind the :class:`~backchannel.store.relay_store.RelayStore` interface.

    Every method runs to completion without awaiting, so calls on one event
    loop are atomic and need no lock.
    """

    def __init__(self, *, cell_size: int = CELL_SIZE) -> None:
        self._cell_size = _common.check_cell_size(cell_size)
        self._open = False
        self._tenants: dict[str, TenantRecord] = {}
        self._cells: dict[str, dict[bytes, _StoredCell]] = {}

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise _common.not_open()

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
        return record

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        _common.check_tenant_id(tenant_id)
        self._check_open()
        return self._tenants.get(tenant_id)

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
                return DepositResult(cell_id, created=False)
            raise SlotConflict("a different cell already occupies that slot")
        if len(cells) >= tenant.quota_cells:
            raise QuotaExceeded("the tenant's cell quota is used up; fetch and ack, then retry")
        cells[slot] = _StoredCell(cell_id, cell, now)
        return DepositResult(cell_id, created=True)

    async def fetch(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, bytes]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        self._check_open()
        cells = self._cells.get(tenant_id, {})
        return {slot: cells[slot].cell for slot in wanted if slot in cells}

    async def ack(self, tenant_id: str, slots: Sequence[bytes], now: int) -> int:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        self._check_open()
        cells = self._cells.get(tenant_id, {})
        removed = 0
        for slot in wanted:
            if cells.pop(slot, None) is not None:
                removed += 1
        return removed

    async def expire(self, now: int, retention_seconds: int) -> int:
        _common.check_expiry(retention_seconds)
        self._check_open()
        cutoff = now - retention_seconds
        removed = 0
        for cells in self._cells.values():
            old = [slot for slot, stored in cells.items() if stored.deposited_at <= cutoff]
            for slot in old:
                del cells[slot]
            removed += len(old)
        return removed

    async def count_cells(self, tenant_id: str | None = None) -> int:
        self._check_open()
        if tenant_id is None:
            return sum(len(cells) for cells in self._cells.values())
        _common.check_tenant_id(tenant_id)
        return len(self._cells.get(tenant_id, {}))
