"""Kill the relay mid-load; lose nothing acknowledged, duplicate nothing.

The relay runs as a real process. Thousands of deposits go in concurrently
(single deposits, or batch deposits of several cells to two tenants); after
some hundreds are acknowledged the process gets SIGKILL (no shutdown code
runs). A new process on the same database must then hold every acknowledged
cell byte for byte (for batches: proved in its log, at the place its answer
gave), may hold some deposits that were committed but whose answer was lost,
and must hold nothing else and nothing twice.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from pathlib import Path

import httpx
import pytest

from backchannel.protocol.batch import (
    DepositBatch,
    DepositBatchAnswer,
    DepositCell,
    FetchBatch,
    FetchBatchAnswer,
)
from backchannel.protocol.misbehaviour import SignedHead, relay_key_from_bytes, verify_cell_receipt
from backchannel.store.factory import relay_store_from_url

from .procs import RelayProcess, register

TENANT = "mission-crash"
CELLS = 3000
CONCURRENCY = 64
KILL_AFTER = 800


async def _load_then_kill(
    relay: RelayProcess, cells: dict[bytes, bytes]
) -> tuple[set[bytes], set[bytes]]:
    """Deposit ``cells`` until KILL_AFTER are acknowledged, then SIGKILL the relay.

    Returns (acknowledged slots, attempted slots).
    """
    acked: set[bytes] = set()
    attempted: set[bytes] = set()
    queue = list(cells.items())
    queue.reverse()
    killed = asyncio.Event()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=relay.base_url, limits=limits, timeout=10) as http:

        async def worker() -> None:
            while queue and not killed.is_set():
                slot, cell = queue.pop()
                attempted.add(slot)
                try:
                    r = await http.put(
                        f"/v1/tenants/{TENANT}/slots/{slot.hex()}",
                        content=cell,
                        headers={"Content-Type": "application/octet-stream"},
                    )
                except httpx.TransportError:
                    return  # the relay is gone; this deposit may or may not be committed
                assert r.status_code in (200, 201), r.text
                acked.add(slot)
                if len(acked) >= KILL_AFTER and not killed.is_set():
                    killed.set()
                    relay.kill()  # mid-flight: ~CONCURRENCY requests are in the air

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    assert killed.is_set(), "the load finished before the relay was killed"
    return acked, attempted


async def _read_back(
    relay: RelayProcess, credential: str, slots: list[bytes]
) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    auth = {"Authorization": f"Bearer {credential}"}
    async with httpx.AsyncClient(base_url=relay.base_url, timeout=30) as http:
        for i in range(0, len(slots), 256):
            batch = [s.hex() for s in slots[i : i + 256]]
            r = await http.post(f"/v1/tenants/{TENANT}/fetch", json={"slots": batch}, headers=auth)
            assert r.status_code == 200
            found.update(
                {bytes.fromhex(k): base64.b64decode(v) for k, v in r.json()["cells"].items()}
            )
    return found


async def _redeposit(relay: RelayProcess, cells: dict[bytes, bytes]) -> set[int]:
    statuses: set[int] = set()
    async with httpx.AsyncClient(base_url=relay.base_url, timeout=30) as http:
        for slot, cell in cells.items():
            r = await http.put(
                f"/v1/tenants/{TENANT}/slots/{slot.hex()}",
                content=cell,
                headers={"Content-Type": "application/octet-stream"},
            )
            statuses.add(r.status_code)
            assert r.json()["created"] is False
    return statuses


async def _count(db_url: str) -> int:
    store = relay_store_from_url(db_url)
    await store.open()
    try:
        return await store.count_cells(TENANT)
    finally:
        await store.close()


def crash_and_check(db_url: str) -> None:
    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    cells = {secrets.token_bytes(32): secrets.token_bytes(4096) for _ in range(CELLS)}

    first = RelayProcess(db_url).start()
    try:
        asyncio.run(register(first.base_url, TENANT, credential))
        acked, attempted = asyncio.run(_load_then_kill(first, cells))
    finally:
        first.kill()
    assert first.proc is not None and first.proc.returncode == -9

    second = RelayProcess(db_url).start()
    try:
        found = asyncio.run(_read_back(second, credential, sorted(cells)))
        lost = acked - set(found)
        assert not lost, f"{len(lost)} acknowledged cells were lost"
        assert set(found) <= attempted, "cells appeared that were never deposited"
        corrupt = [s for s, c in found.items() if c != cells[s]]
        assert not corrupt, f"{len(corrupt)} cells came back different"
        # Every acknowledged cell is recognised as already stored: no duplicate rows.
        assert asyncio.run(_redeposit(second, {s: cells[s] for s in sorted(acked)[:200]})) == {200}
    finally:
        assert second.stopped_cleanly()
    count = asyncio.run(_count(db_url))
    assert count == len(found), "the store holds rows fetch does not show (duplicates?)"
    unacked_committed = len(found) - len(acked)
    print(
        f"\nacknowledged {len(acked)}, attempted {len(attempted)}, present after restart "
        f"{len(found)} ({unacked_committed} committed but unacknowledged), stored rows {count}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("run", range(3))
def test_sigkill_loses_no_acknowledged_deposit_sqlite(tmp_path: Path, run: int) -> None:
    crash_and_check(f"sqlite://{tmp_path / 'relay.db'}")


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("run", range(3))
def test_sigkill_loses_no_acknowledged_deposit_postgres(pg_url: str, run: int) -> None:
    crash_and_check(pg_url)


# -- the batch path ----------------------------------------------------------------------

BATCH_TENANTS = ("mission-crash", "mission-crash-b")
BATCH_CELLS = 1200
BATCH_SIZE = 8
BATCH_CONCURRENCY = 16
BATCH_KILL_AFTER = 400


async def _batches_then_kill(
    relay: RelayProcess, cells: list[tuple[str, bytes, bytes]]
) -> tuple[dict[bytes, tuple[int, int]], set[bytes]]:
    """Batch-deposit ``cells`` until BATCH_KILL_AFTER are acknowledged, then SIGKILL.

    Returns (acknowledged slot -> the (leaf, position) its answer gave, attempted slots).
    """
    acked: dict[bytes, tuple[int, int]] = {}
    attempted: set[bytes] = set()
    batches = [cells[i : i + BATCH_SIZE] for i in range(0, len(cells), BATCH_SIZE)]
    batches.reverse()
    killed = asyncio.Event()
    limits = httpx.Limits(
        max_connections=BATCH_CONCURRENCY, max_keepalive_connections=BATCH_CONCURRENCY
    )
    async with httpx.AsyncClient(base_url=relay.base_url, limits=limits, timeout=10) as http:

        async def worker() -> None:
            while batches and not killed.is_set():
                batch = batches.pop()
                attempted.update(slot for _, slot, _ in batch)
                body = DepositBatch(0, tuple(DepositCell(*c) for c in batch)).encode()
                try:
                    r = await http.post(
                        "/v1/batch/deposit",
                        content=body,
                        headers={"Content-Type": "application/octet-stream"},
                    )
                except httpx.TransportError:
                    return  # the relay is gone; these cells may or may not be committed
                assert r.status_code == 200, r.text
                answer = DepositBatchAnswer.decode(r.content)
                for (_, slot, _), result in zip(batch, answer.results, strict=True):
                    assert result.status in (200, 201) and result.place is not None
                    acked[slot] = (result.place.leaf_index, result.place.batch_position)
                if len(acked) >= BATCH_KILL_AFTER and not killed.is_set():
                    killed.set()
                    relay.kill()  # mid-flight: ~BATCH_CONCURRENCY batches are in the air

        await asyncio.gather(*(worker() for _ in range(BATCH_CONCURRENCY)))
    assert killed.is_set(), "the load finished before the relay was killed"
    return acked, attempted


async def _batch_read_back(
    relay: RelayProcess, credentials: dict[str, str], cells: list[tuple[str, bytes, bytes]]
) -> dict[bytes, bytes]:
    """Every cell the relay holds, each checked in its log against one verified head."""
    found: dict[bytes, bytes] = {}
    async with httpx.AsyncClient(base_url=relay.base_url, timeout=30) as http:
        raw_key = (await http.get("/v1/log/key")).json()
        key = relay_key_from_bytes(
            bytes.fromhex(raw_key["ed25519"]) + bytes.fromhex(raw_key["mldsa65"])
        )
        for tenant, credential in credentials.items():
            slots = [slot for t, slot, _ in cells if t == tenant]
            for i in range(0, len(slots), 256):
                body = FetchBatch(0, 0, tuple(slots[i : i + 256]), ()).encode()
                r = await http.post(
                    f"/v1/tenants/{tenant}/batch/fetch",
                    content=body,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Authorization": f"Bearer {credential}",
                    },
                )
                assert r.status_code == 200
                answer = FetchBatchAnswer.decode(r.content)
                signed = SignedHead.decode(answer.log.signed_head)
                signed.verify(key)
                places = answer.places()
                for c in answer.cells:
                    place = places[c.slot]
                    leaf = answer.log.leaf(place.leaf_index)
                    assert leaf is not None
                    verify_cell_receipt(
                        tenant_id=tenant,
                        slot=c.slot,
                        cell=c.cell,
                        leaf=leaf,
                        batch_position=place.batch_position,
                        batch_proof=place.batch_proof,
                        inclusion_proof=place.inclusion_proof,
                        head=signed.head,
                    )
                    found[c.slot] = c.cell
    return found


def batch_crash_and_check(db_url: str) -> None:
    credentials = {
        t: base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        for t in BATCH_TENANTS
    }
    cells = [
        (BATCH_TENANTS[i % 2], secrets.token_bytes(32), secrets.token_bytes(4096))
        for i in range(BATCH_CELLS)
    ]
    by_slot = {slot: (tenant, cell) for tenant, slot, cell in cells}

    first = RelayProcess(db_url).start()
    try:
        for tenant, credential in credentials.items():
            asyncio.run(register(first.base_url, tenant, credential))
        acked, attempted = asyncio.run(_batches_then_kill(first, cells))
    finally:
        first.kill()
    assert first.proc is not None and first.proc.returncode == -9

    second = RelayProcess(db_url).start()
    try:
        found = asyncio.run(_batch_read_back(second, credentials, cells))
        lost = set(acked) - set(found)
        assert not lost, f"{len(lost)} acknowledged cells were lost"
        assert set(found) <= attempted, "cells appeared that were never deposited"
        corrupt = [s for s, c in found.items() if c != by_slot[s][1]]
        assert not corrupt, f"{len(corrupt)} cells came back different"
        # The same batches again: every acknowledged cell is held once, at the
        # place its first answer gave.
        again = sorted(acked)[:96]
        retry = [(by_slot[s][0], s, by_slot[s][1]) for s in again]
        answer = asyncio.run(_post_batch(second.base_url, retry))
        assert [r.status for r in answer.results] == [200] * len(retry)
        for slot, result in zip(again, answer.results, strict=True):
            assert result.place is not None
            assert (result.place.leaf_index, result.place.batch_position) == acked[slot]
    finally:
        assert second.stopped_cleanly()
    counts = [asyncio.run(_count_tenant(db_url, t)) for t in BATCH_TENANTS]
    assert sum(counts) == len(found), "the store holds rows fetch does not show (duplicates?)"
    print(
        f"\nacknowledged {len(acked)}, attempted {len(attempted)}, present after restart "
        f"{len(found)} ({len(found) - len(acked)} committed but unacknowledged)"
    )


async def _post_batch(base_url: str, cells: list[tuple[str, bytes, bytes]]) -> DepositBatchAnswer:
    body = DepositBatch(1, tuple(DepositCell(*c) for c in cells)).encode()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        r = await http.post(
            "/v1/batch/deposit",
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        )
    assert r.status_code == 200
    return DepositBatchAnswer.decode(r.content)


async def _count_tenant(db_url: str, tenant: str) -> int:
    store = relay_store_from_url(db_url)
    await store.open()
    try:
        return await store.count_cells(tenant)
    finally:
        await store.close()


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_batch_deposit_sqlite(tmp_path: Path) -> None:
    batch_crash_and_check(f"sqlite://{tmp_path / 'relay.db'}")


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_loses_no_acknowledged_batch_deposit_postgres(pg_url: str) -> None:
    batch_crash_and_check(pg_url)
