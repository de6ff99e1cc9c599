"""The public intake's storage, on every backend (``docs/intake.md``).

A tenant that opened its intake receives sealed requests of a fixed size,
numbered in the order they were stored. None of it touches the tenant's
slots, its quota or the transparency log: an intake flood costs the official
channels nothing but its share of the machine, and the relay caps how many
requests a tenant holds that its mission has not fetched yet. (The mission's
answers are ordinary cells of its tenant, deposited on its round schedule.)

The cap counts **unfetched** requests. A fetch after number N tells the relay
that the device asking has every request up to N, so requests numbered up to
the highest ``after`` the mission has fetched with (never above the last
number given) stop counting; they stay stored until they expire, for the
mission's other devices. Each store keeps one count per tenant, ``queued``:
its stored requests numbered above that mark, changed only under the tenant's
row (a submission adds one, a fetch that raises the mark takes away the
stored requests it passes, expiry takes away the unfetched ones it deletes).
So junk that fills the cap holds the intake shut only until the mission
fetches past it, not until it expires.

The checks here are shared so that memory, SQLite and PostgreSQL refuse the
same inputs with the same errors.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        ``QuotaExceeded`` if it already holds ``cap`` requests its mission
        has not fetched.
        """

    async def intake_fetch(self, tenant_id: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Requests numbered above ``after``, oldest first, at most ``limit``.

        The mission's fetch: requests numbered up to ``after`` (never above
        the last number given, see :func:`fetched_mark`) no longer count
        against the cap. A lower ``after`` than before changes nothing.
        """

    async def intake_expire(self, now: int, retention_seconds: int) -> int:
        """Delete requests older than the retention; return how many."""


def check_request(cell: bytes) -> None:
    if not isinstance(cell, bytes) or len(cell) != REQUEST_CELL_SIZE:
        raise ConfigError(f"an intake request must be exactly {REQUEST_CELL_SIZE} bytes")


def check_fetch(after: int, limit: int) -> None:
    if not isinstance(after, int) or not 0 <= after < 2**63:
        raise ConfigError("after must be an integer from 0 to 2^63 - 1")
    if not isinstance(limit, int) or not 0 < limit <= MAX_FETCH:
        raise ConfigError(f"limit must be 1 to {MAX_FETCH}")


def fetched_mark(fetched: int, after: int, next_seq: int) -> int:
    """The tenant's new fetched mark once its mission fetched after ``after``.

    It only rises (a device that lags behind gives nothing back twice and takes
    nothing away), and never above the last number given (``next_seq - 1``):
    a fetch with an ``after`` from the future must not let requests not yet
    stored skip the cap.
    """
    return max(fetched, min(after, next_seq - 1))


def raised_mark(state: Sequence[int] | None, after: int) -> tuple[int, int] | None:
    """(the mark, the new mark) when a fetch after ``after`` raises the mark of
    the tenant whose row reads ``state`` (``fetched_seq, next_seq``); None when
    it does not, or there is no row."""
    if state is None:
        return None
    fetched = int(state[0])
    mark = fetched_mark(fetched, after, int(state[1]))
    return (fetched, mark) if mark > fetched else None


def check_cap(cap: int) -> None:
    if not isinstance(cap, int) or cap < 0:
        raise ConfigError("the intake cap must be a non-negative integer")
