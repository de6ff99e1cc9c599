"""The public intake's storage, on every backend: opened per tenant, numbered in
order, never duplicated, capped, expired, and apart from the tenant's slots."""

from __future__ import annotations

import asyncio

import pytest

from backchannel.errors import ConfigError, IntakeClosed, QuotaExceeded, UnknownTenant
from backchannel.store.relay_store import RelayStore

from .helpers import CRED, cell, slot


def request(n: int) -> bytes:
    return n.to_bytes(4, "big") * 1024


async def opened(store: RelayStore, tenant: str = "mission-a") -> str:
    await store.create_tenant(tenant, CRED, 10, now=1000)
    await store.intake_set_open(tenant, True, now=1000)
    return tenant


async def test_a_tenant_takes_requests_only_once_it_opened_its_intake(store: RelayStore) -> None:
    await store.create_tenant("mission-a", CRED, 10, now=1000)
    assert not await store.intake_is_open("mission-a")
    with pytest.raises(IntakeClosed):
        await store.intake_put("mission-a", request(1), 10, now=1000)
    await store.intake_set_open("mission-a", True, now=1000)
    assert await store.intake_is_open("mission-a")
    assert (await store.intake_put("mission-a", request(1), 10, now=1000)).seq == 1
    await store.intake_set_open("mission-a", False, now=1000)
    with pytest.raises(IntakeClosed):
        await store.intake_put("mission-a", request(2), 10, now=1000)
    # What arrived while it was open stays readable.
    assert await store.intake_fetch("mission-a", 0, 10) == [(1, request(1))]
    with pytest.raises(UnknownTenant):
        await store.intake_set_open("nobody", True, now=1000)


async def test_requests_are_numbered_in_order_and_never_duplicated(store: RelayStore) -> None:
    tenant = await opened(store)
    first = await store.intake_put(tenant, request(1), 10, now=1000)
    again = await store.intake_put(tenant, request(1), 10, now=1001)
    second = await store.intake_put(tenant, request(2), 10, now=1002)
    assert (first.seq, first.created) == (1, True)
    assert (again.seq, again.created) == (1, False)
    assert (second.seq, second.created) == (2, True)
    assert await store.intake_fetch(tenant, 0, 10) == [(1, request(1)), (2, request(2))]
    assert await store.intake_fetch(tenant, 1, 10) == [(2, request(2))]
    assert await store.intake_fetch(tenant, 0, 1) == [(1, request(1))]
    assert await store.intake_fetch(tenant, 2, 10) == []


async def test_concurrent_requests_get_distinct_numbers_without_gaps(store: RelayStore) -> None:
    tenant = await opened(store)
    stored = await asyncio.gather(
        *(store.intake_put(tenant, request(n), 100, now=1000) for n in range(1, 41))
    )
    assert sorted(s.seq for s in stored) == list(range(1, 41))
    rows = await store.intake_fetch(tenant, 0, 100)
    assert [seq for seq, _ in rows] == list(range(1, 41))


async def test_the_cap_bounds_a_tenants_intake_and_spares_its_slots(store: RelayStore) -> None:
    tenant = await opened(store)
    await store.create_tenant("mission-b", CRED, 10, now=1000)
    await store.intake_set_open("mission-b", True, now=1000)
    for n in range(3):
        await store.intake_put(tenant, request(n), 3, now=1000)
    with pytest.raises(QuotaExceeded):
        await store.intake_put(tenant, request(9), 3, now=1000)
    # Another tenant's intake and this tenant's own slots are untouched by the flood.
    assert (await store.intake_put("mission-b", request(9), 3, now=1000)).created
    assert await store.count_cells(tenant) == 0
    await store.deposit(tenant, slot(1), cell(1), now=1000)
    assert await store.fetch(tenant, [slot(1)]) == {slot(1): cell(1)}


async def test_expiry_removes_old_requests_and_frees_the_cap(store: RelayStore) -> None:
    tenant = await opened(store)
    await store.intake_put(tenant, request(1), 2, now=1000)
    await store.intake_put(tenant, request(2), 2, now=5000)
    assert await store.intake_expire(now=5000, retention_seconds=3600) == 1
    assert await store.intake_fetch(tenant, 0, 10) == [(2, request(2))]
    # The cap counts what is held: one more fits, and numbers keep growing.
    assert (await store.intake_put(tenant, request(3), 2, now=5000)).seq == 3
    with pytest.raises(QuotaExceeded):
        await store.intake_put(tenant, request(4), 2, now=5000)


@pytest.mark.parametrize("bad", [b"", bytes(4095), bytes(4097)])
async def test_a_request_of_the_wrong_size_is_refused(store: RelayStore, bad: bytes) -> None:
    tenant = await opened(store)
    with pytest.raises(ConfigError):
        await store.intake_put(tenant, bad, 10, now=1000)
    with pytest.raises(ConfigError):
        await store.intake_fetch(tenant, -1, 10)
    with pytest.raises(ConfigError):
        await store.intake_fetch(tenant, 0, 0)
