"""The public intake's storage, on every backend (``docs/intake.md``).

A tenant that opened its intake receives sealed requests of a fixed size,
numbered in the order they were stored. None of it touches the tenant's
slots, its quota or the transparency log: an intake flood costs the official
channels nothing but its share of the machine, and the relay caps how many
requests a tenant holds. (The mission's answers are ordinary cells of its
tenant, deposited on its round schedule.)

The checks here are shared so that memory, SQLite and PostgreSQL refuse the
same inputs with the same errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from backchannel.errors import ConfigError
from backchannel.protocol.intake import REQUEST_CELL_SIZE

#: Most requests one fetch returns.
MAX_FETCH = 256


@dataclass(frozen=True, slots=True)
class IntakeStored:
    """Where a request went: its number in the tenant's queue, and whether it is new."""

    seq: int
    created: bool


class IntakeStore(Protocol):
    """The intake's part of a relay store."""

    async def intake_set_open(self, tenant_id: str, is_open: bool, now: int) -> None:
        """Open or close the tenant's intake. Raises ``UnknownTenant``."""

    async def intake_is_open(self, tenant_id: str) -> bool: ...

    async def intake_put(self, tenant_id: str, cell: bytes, cap: int, now: int) -> IntakeStored:
        """Store a request; the same cell again is not duplicated.

        Raises ``IntakeClosed`` if the tenant's intake is not open and
        ``QuotaExceeded`` if it already holds ``cap`` requests.
        """

    async def intake_fetch(self, tenant_id: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Requests numbered above ``after``, oldest first, at most ``limit``."""

    async def intake_expire(self, now: int, retention_seconds: int) -> int:
        """Delete requests older than the retention; return how many."""


def check_request(cell: bytes) -> None:
    if not isinstance(cell, bytes) or len(cell) != REQUEST_CELL_SIZE:
        raise ConfigError(f"an intake request must be exactly {REQUEST_CELL_SIZE} bytes")


def check_fetch(after: int, limit: int) -> None:
    if not isinstance(after, int) or after < 0:
        raise ConfigError("after must be a non-negative integer")
    if not isinstance(limit, int) or not 0 < limit <= MAX_FETCH:
        raise ConfigError(f"limit must be 1 to {MAX_FETCH}")


def check_cap(cap: int) -> None:
    if not isinstance(cap, int) or cap < 0:
        raise ConfigError("the intake cap must be a non-negative integer")
