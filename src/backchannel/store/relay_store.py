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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TenantRecord:
    tenant_id: str
    #: SHA-256 of the tenant's fetch credential; compare in constant time.
    credential_hash: bytes
    #: Most cells the tenant may hold at once.
    quota_cells: int
    created_at: int


@dataclass(frozen=True, slots=True)
class DepositResult:
    #: SHA-256 of the cell bytes.
    cell_id: bytes
    #: False when the identical cell was already stored (an idempotent retry).
    created: bool


class RelayStore(Protocol):
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None:
        """Finish in-flight writes and release resources."""

    async def create_tenant(
        self, tenant_id: str, credential_hash: bytes, quota_cells: int, now: int
    ) -> TenantRecord:
        """Register a tenant. Raises ``TenantExists``."""

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...

    async def deposit(self, tenant_id: str, slot: bytes, cell: bytes, now: int) -> DepositResult:
        """Store ``cell`` at ``slot``; return only once it is durable.

        The same cell again at the same slot is not duplicated
        (``created=False``). A different cell at an occupied slot raises
        ``SlotConflict``; a full tenant raises ``QuotaExceeded``; an unknown
        tenant raises ``UnknownTenant``.
        """

    async def fetch(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, bytes]:
        """Cells present at those slots of this tenant (absent slots are left out)."""

    async def ack(self, tenant_id: str, slots: Sequence[bytes], now: int) -> int:
        """Delete acknowledged cells of this tenant; return how many were removed."""

    async def expire(self, now: int, retention_seconds: int) -> int:
        """Delete cells deposited at or before ``now - retention_seconds``; return how many."""

    async def count_cells(self, tenant_id: str | None = None) -> int: ...
