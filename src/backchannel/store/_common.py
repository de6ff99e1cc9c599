"""Argument checks and helpers shared by every relay store backend.

The checks live here so that memory, SQLite and PostgreSQL refuse exactly the
same inputs with exactly the same errors. Messages never echo the values.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from backchannel.errors import ConfigError, StoreUnavailable
from backchannel.protocol.constants import CELL_SIZE, SLOT_LEN
from backchannel.store.relay_store import DepositResult, TenantRecord

#: Most slots one ``fetch`` or ``ack`` call may name (bounds one SQL statement).
MAX_SLOTS_PER_CALL = 4096
#: Most rows one expiry step deletes. A step shares its transaction (SQLite's
#: group commit) or the tenant rows its triggers lock (PostgreSQL) with the
#: deposits of that moment, which wait for it: a few milliseconds, not the
#: quarter of a second that 5,000 rows took (``python -m bench.expiry``).
EXPIRE_STEP_ROWS = 128


@dataclass(frozen=True, slots=True)
class GroupCommitStats:
    """Counters of a backend's writer, for metrics: writes per transaction."""

    #: Transactions committed by this store object since it was created.
    transactions: int
    #: Writes (deposits and other calls) acknowledged in those transactions.
    writes: int
    #: Writes waiting for the writer right now.
    queued: int


def cell_id_of(cell: bytes) -> bytes:
    """The cell's identifier: SHA-256 of its bytes."""
    return hashlib.sha256(cell).digest()


def check_cell_size(cell_size: int) -> int:
    if not isinstance(cell_size, int) or cell_size <= 0:
        raise ConfigError("cell_size must be a positive number of bytes")
    return cell_size


def check_tenant_id(tenant_id: str) -> None:
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ConfigError("tenant_id must be a non-empty string")


def check_new_tenant(tenant_id: str, credential_hash: bytes, quota_cells: int) -> None:
    check_tenant_id(tenant_id)
    if not isinstance(credential_hash, bytes) or not credential_hash:
        raise ConfigError("credential_hash must be non-empty bytes (SHA-256 of the credential)")
    if not isinstance(quota_cells, int) or quota_cells < 0:
        raise ConfigError("quota_cells must be a non-negative integer")


def check_slot(slot: bytes) -> None:
    if not isinstance(slot, bytes) or len(slot) != SLOT_LEN:
        raise ConfigError(f"a slot address must be exactly {SLOT_LEN} bytes")


def check_cell(cell: bytes, cell_size: int = CELL_SIZE) -> None:
    if not isinstance(cell, bytes) or len(cell) != cell_size:
        raise ConfigError(f"a cell must be exactly {cell_size} bytes")


def check_slots(slots: Sequence[bytes]) -> list[bytes]:
    """Validate and de-duplicate ``slots``, keeping their order."""
    if len(slots) > MAX_SLOTS_PER_CALL:
        raise ConfigError(f"at most {MAX_SLOTS_PER_CALL} slots per call; split the request")
    for slot in slots:
        check_slot(slot)
    return list(dict.fromkeys(slots))


def check_expiry(retention_seconds: int) -> None:
    if not isinstance(retention_seconds, int) or retention_seconds < 0:
        raise ConfigError("retention_seconds must be a non-negative integer")


def check_checkpoint(size: int, cosignatures: int, note: bytes) -> None:
    if not isinstance(size, int) or size < 0:
        raise ConfigError("a checkpoint's size must be a non-negative integer")
    if not isinstance(cosignatures, int) or cosignatures < 1:
        raise ConfigError("a kept checkpoint carries at least one cosignature")
    if not isinstance(note, bytes) or not note:
        raise ConfigError("a checkpoint note must be non-empty bytes")


async def deposit_each(
    deposit: Callable[[str, bytes, bytes, int], Awaitable[DepositResult]],
    cells: Sequence[tuple[str, bytes, bytes]],
    now: int,
) -> list[DepositResult | BaseException]:
    """``deposit_many`` for a store whose deposits already share a commit when
    made at once: each cell's own deposit, all of them together."""
    return await asyncio.gather(
        *(deposit(tenant_id, slot, cell, now) for tenant_id, slot, cell in cells),
        return_exceptions=True,
    )


def not_open() -> StoreUnavailable:
    return StoreUnavailable("the relay store is not open; call open() before using it")


async def in_steps(step: Callable[[], Awaitable[bool]]) -> None:
    """Run ``step`` until it returns False, resting after each step as long
    as it took (its wait for the writer included).

    Expiry runs this way: it never holds the write path more than half the
    time, and the busier the writer, the longer each rest, so the deposits
    and acknowledgements that arrive meanwhile go first.
    """
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        if not await step():
            return
        await asyncio.sleep(loop.time() - began)


#: What :meth:`RelayStore.rotate_credential` did.
ROTATED, SAME, STALE, FORK = "rotated", "same", "stale", "fork"


def check_rotation(
    tenant_id: str, credential_hash: bytes, version: int, seq: int, roster_hash: bytes
) -> None:
    check_tenant_id(tenant_id)
    if not isinstance(credential_hash, bytes) or len(credential_hash) != 32:
        raise ConfigError("credential_hash must be 32 bytes (SHA-256 of the credential)")
    if not isinstance(roster_hash, bytes) or len(roster_hash) != 32:
        raise ConfigError("roster_hash must be 32 bytes")
    for value in (version, seq):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
            raise ConfigError("a rotation's roster version and sequence are 32-bit integers")


def tenant_record(tenant_id: str, row: Sequence[Any] | None) -> TenantRecord | None:
    """A ``credential_hash, quota_cells, created_at`` row as the store's record."""
    if row is None:
        return None
    return TenantRecord(tenant_id, bytes(row[0]), int(row[1]), int(row[2]))


def rotation_in_force(row: Sequence[Any]) -> tuple[bytes, int | None, int | None, bytes | None]:
    """A tenant row's ``credential_hash, rotation_version, rotation_seq,
    rotation_roster`` as :func:`rotation_outcome` takes them (the driver may
    give the blobs as memoryviews)."""
    current, version, seq, roster = row
    return bytes(current), version, seq, None if roster is None else bytes(roster)


def rotation_outcome(
    in_force: tuple[bytes, int | None, int | None, bytes | None],
    credential_hash: bytes,
    version: int,
    seq: int,
    roster_hash: bytes,
) -> str:
    """What a rotation does to a tenant whose credential hash and rotation in
    force are ``in_force``: replace them (``ROTATED``), nothing because it is
    the one in force (``SAME``), nothing because a later one is (``STALE``) or
    because it was made under another roster of the same version (``FORK``:
    the mission's officers signed two rosters of one version)."""
    current_hash, current_version, current_seq, current_roster = in_force
    if current_version is None or current_seq is None or current_roster is None:
        return ROTATED
    if version == current_version and not hmac.compare_digest(roster_hash, current_roster):
        return FORK
    if (version, seq) == (current_version, current_seq):
        same = hmac.compare_digest(credential_hash, current_hash)
        return SAME if same else FORK
    return ROTATED if (version, seq) > (current_version, current_seq) else STALE
