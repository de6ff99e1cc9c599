"""The one behavioural suite every relay store backend must pass."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from backchannel.errors import (
    ConfigError,
    QuotaExceeded,
    SlotConflict,
    StoreUnavailable,
    TenantExists,
    UnknownTenant,
)
from backchannel.protocol.constants import SLOT_LEN
from backchannel.store import _common
from backchannel.store.relay_store import DepositResult, RelayStore, TenantRecord

from .conftest import StoreMaker
from .helpers import CRED, cell, slot

# -- tenants -----------------------------------------------------------------


async def test_tenant_is_registered_once(store: RelayStore) -> None:
    record = await store.create_tenant("mission-a", CRED, 10, now=1000)
    assert record == TenantRecord("mission-a", CRED, 10, 1000)
    assert await store.get_tenant("mission-a") == record
    with pytest.raises(TenantExists):
        await store.create_tenant("mission-a", b"\x01" * 32, 99, now=2000)
    assert await store.get_tenant("mission-a") == record
    assert await store.get_tenant("mission-b") is None


async def test_deposit_to_unknown_tenant_is_refused(store: RelayStore) -> None:
    with pytest.raises(UnknownTenant):
        await store.deposit("nobody", slot(1), cell(1), now=1)
    assert await store.count_cells() == 0


# -- deposit, fetch, ack -------------------------------------------------------


async def test_deposit_then_fetch_returns_the_cell(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 10, now=0)
    result = await store.deposit("a", slot(1), cell(1), now=5)
    assert result == DepositResult(hashlib.sha256(cell(1)).digest(), created=True)
    assert await store.fetch("a", [slot(1), slot(2)]) == {slot(1): cell(1)}
    assert await store.count_cells("a") == 1
    assert await store.count_cells() == 1


async def test_identical_retry_is_not_duplicated(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 10, now=0)
    first = await store.deposit("a", slot(1), cell(1), now=5)
    again = await store.deposit("a", slot(1), cell(1), now=6)
    assert again == DepositResult(first.cell_id, created=False)
    assert await store.count_cells("a") == 1
    assert await store.fetch("a", [slot(1)]) == {slot(1): cell(1)}


async def test_different_cell_at_occupied_slot_conflicts(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 10, now=0)
    await store.deposit("a", slot(1), cell(1), now=5)
    with pytest.raises(SlotConflict) as caught:
        await store.deposit("a", slot(1), cell(2), now=6)
    assert slot(1).hex() not in str(caught.value)
    assert await store.fetch("a", [slot(1)]) == {slot(1): cell(1)}
    assert await store.count_cells("a") == 1


async def test_fetch_returns_only_present_slots_in_request_order(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 2000, now=0)
    for n in range(0, 1200, 2):  # every other slot, more than one SQL chunk
        await store.deposit("a", slot(n), cell(n), now=1)
    wanted = [slot(n) for n in reversed(range(1200))] + [slot(0)]
    found = await store.fetch("a", wanted)
    assert list(found) == [slot(n) for n in reversed(range(0, 1200, 2))]
    assert all(found[slot(n)] == cell(n) for n in range(0, 1200, 2))
    assert await store.fetch("a", []) == {}


async def test_ack_removes_only_the_named_cells(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 10, now=0)
    for n in range(4):
        await store.deposit("a", slot(n), cell(n), now=1)
    assert await store.ack("a", [slot(0), slot(1), slot(9), slot(1)], now=2) == 2
    assert await store.ack("a", [slot(0)], now=3) == 0
    assert await store.ack("a", [], now=3) == 0
    assert await store.fetch("a", [slot(n) for n in range(4)]) == {
        slot(2): cell(2),
        slot(3): cell(3),
    }
    assert await store.count_cells("a") == 2


async def test_slot_stays_spent_after_ack_until_it_expires(store: RelayStore) -> None:
    # Slots are write-once (docs/spec/relay-log-v1.md §3.2): an acknowledged slot
    # takes no other cell, and a fetch reports it spent, not empty, until retention.
    await store.create_tenant("a", CRED, 10, now=0)
    await store.deposit("a", slot(1), cell(1), now=1)
    await store.ack("a", [slot(1)], now=2)
    with pytest.raises(SlotConflict):
        await store.deposit("a", slot(1), cell(2), now=3)
    assert not (await store.deposit("a", slot(1), cell(1), now=3)).created  # a retry
    assert await store.fetch("a", [slot(1)]) == {}
    _, found, proofs = await store.fetch_proved("a", [slot(1), slot(2)])
    assert found == {slot(1): b""} and proofs == {}
    assert await store.count_cells("a") == 0
    assert await store.expire(now=1 + 100, retention_seconds=100) == 0  # no cell, only the slot
    _, found, _ = await store.fetch_proved("a", [slot(1)])
    assert found == {}
    assert (await store.deposit("a", slot(1), cell(2), now=200)).created


async def test_a_cell_ages_from_its_batch_time_which_never_goes_back(
    store: RelayStore,
) -> None:
    # The clock steps back between two deposits: the second cell's batch (log leaf)
    # keeps the later time, and the cell is kept a full retention past it.
    await store.create_tenant("a", CRED, 10, now=0)
    await store.deposit("a", slot(1), cell(1), now=1000)
    await store.deposit("a", slot(2), cell(2), now=400)
    assert await store.expire(now=400 + 100, retention_seconds=100) == 0
    assert await store.count_cells("a") == 2
    assert await store.expire(now=1000 + 100, retention_seconds=100) == 2


# -- quotas --------------------------------------------------------------------


async def test_quota_is_enforced_and_freed_by_ack(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 3, now=0)
    for n in range(3):
        await store.deposit("a", slot(n), cell(n), now=1)
    with pytest.raises(QuotaExceeded):
        await store.deposit("a", slot(3), cell(3), now=1)
    # A retry of a stored cell is not a new cell: it succeeds on a full tenant.
    assert not (await store.deposit("a", slot(0), cell(0), now=2)).created
    # A conflict is still a conflict on a full tenant.
    with pytest.raises(SlotConflict):
        await store.deposit("a", slot(0), cell(9), now=2)
    assert await store.count_cells("a") == 3
    await store.ack("a", [slot(0)], now=3)
    assert (await store.deposit("a", slot(3), cell(3), now=4)).created
    assert await store.count_cells("a") == 3


async def test_zero_quota_refuses_everything(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 0, now=0)
    with pytest.raises(QuotaExceeded):
        await store.deposit("a", slot(1), cell(1), now=1)
    assert await store.count_cells() == 0


async def test_quota_of_one_tenant_does_not_limit_another(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 1, now=0)
    await store.create_tenant("b", CRED, 2, now=0)
    await store.deposit("a", slot(1), cell(1), now=1)
    await store.deposit("b", slot(1), cell(1), now=1)
    await store.deposit("b", slot(2), cell(2), now=1)
    with pytest.raises(QuotaExceeded):
        await store.deposit("a", slot(2), cell(2), now=1)
    assert (await store.count_cells("a"), await store.count_cells("b")) == (1, 2)


# -- tenant isolation ------------------------------------------------------------


async def test_tenants_never_see_or_ack_each_others_slots(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 10, now=0)
    await store.create_tenant("b", CRED, 10, now=0)
    await store.deposit("a", slot(1), cell(1, b"a"), now=1)
    await store.deposit("b", slot(1), cell(1, b"b"), now=1)  # same slot, other tenant
    await store.deposit("b", slot(2), cell(2, b"b"), now=1)

    assert await store.fetch("a", [slot(1), slot(2)]) == {slot(1): cell(1, b"a")}
    assert await store.fetch("b", [slot(1), slot(2)]) == {
        slot(1): cell(1, b"b"),
        slot(2): cell(2, b"b"),
    }
    assert await store.ack("a", [slot(2)], now=2) == 0
    assert await store.fetch("b", [slot(2)]) == {slot(2): cell(2, b"b")}
    assert await store.ack("a", [slot(1)], now=2) == 1
    assert await store.fetch("b", [slot(1)]) == {slot(1): cell(1, b"b")}
    assert await store.fetch("nobody", [slot(1), slot(2)]) == {}
    assert await store.count_cells("a") == 0
    assert await store.count_cells("b") == 2
    assert await store.count_cells("nobody") == 0


# -- concurrency -----------------------------------------------------------------


async def test_hundreds_of_concurrent_deposits_are_all_stored_once(
    maker: StoreMaker, store: RelayStore
) -> None:
    await store.create_tenant("a", CRED, 1000, now=0)
    numbers = list(range(300))
    calls = [store.deposit("a", slot(n), cell(n), now=1) for n in numbers * 2]
    results = await asyncio.gather(*calls)
    assert sum(r.created for r in results) == 300
    assert all(
        r.cell_id == hashlib.sha256(cell(n)).digest()
        for r, n in zip(results, numbers * 2, strict=True)
    )
    assert await store.count_cells("a") == 300
    await store.close()

    reopened = maker.make()
    await reopened.open()
    try:
        found = await reopened.fetch("a", [slot(n) for n in numbers])
        assert found == {slot(n): cell(n) for n in numbers}
        assert await reopened.count_cells() == 300
    finally:
        await reopened.close()
    await store.open()  # the fixture closes it


async def test_concurrent_different_cells_at_one_slot_one_wins(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 1000, now=0)
    tags = (b"x", b"y")
    calls = [store.deposit("a", slot(n), cell(n, tag), now=1) for n in range(50) for tag in tags]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for n in range(50):
        pair = outcomes[2 * n : 2 * n + 2]
        won = [i for i, o in enumerate(pair) if isinstance(o, DepositResult)]
        assert len(won) == 1, pair
        assert isinstance(pair[1 - won[0]], SlotConflict)
        winner = cell(n, tags[won[0]])
        assert await store.fetch("a", [slot(n)]) == {slot(n): winner}
    assert await store.count_cells("a") == 50


async def test_concurrent_deposits_never_exceed_the_quota(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 100, now=0)
    outcomes = await asyncio.gather(
        *(store.deposit("a", slot(n), cell(n), now=1) for n in range(250)),
        return_exceptions=True,
    )
    stored = [n for n, o in enumerate(outcomes) if isinstance(o, DepositResult)]
    refused = [o for o in outcomes if not isinstance(o, DepositResult)]
    assert len(stored) == 100
    assert all(isinstance(o, QuotaExceeded) for o in refused)
    assert await store.count_cells("a") == 100
    assert len(await store.fetch("a", [slot(n) for n in range(250)])) == 100


async def test_two_stores_on_one_database_share_every_invariant(maker: StoreMaker) -> None:
    async with maker.two() as (first, second):
        await first.create_tenant("a", CRED, 120, now=0)
        with pytest.raises(TenantExists):
            await second.create_tenant("a", CRED, 5, now=0)
        calls = []
        for n in range(100):  # the same 100 cells through both stores at once
            calls.append(first.deposit("a", slot(n), cell(n), now=1))
            calls.append(second.deposit("a", slot(n), cell(n), now=1))
        for n in range(100, 150):  # 50 more than the quota leaves room for
            calls.append((first if n % 2 else second).deposit("a", slot(n), cell(n), now=1))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        results = [o for o in outcomes[:200] if isinstance(o, DepositResult)]
        assert len(results) == 200
        assert sum(r.created for r in results) == 100
        extra = outcomes[200:]
        assert sum(isinstance(o, DepositResult) for o in extra) == 20
        assert all(isinstance(o, DepositResult | QuotaExceeded) for o in extra)
        assert await first.count_cells("a") == 120
        assert await second.count_cells("a") == 120


# -- the kept cosigned checkpoint ------------------------------------------------


async def test_a_cosigned_checkpoint_is_kept_unless_a_weaker_one_comes(store: RelayStore) -> None:
    assert await store.kept_checkpoint() is None
    await store.keep_checkpoint(5, 1, b"size 5, one cosignature")
    assert await store.kept_checkpoint() == b"size 5, one cosignature"
    await store.keep_checkpoint(5, 2, b"size 5, two cosignatures")
    assert await store.kept_checkpoint() == b"size 5, two cosignatures"
    # Fewer cosignatures at the same size, or an older size: the kept one stays.
    await store.keep_checkpoint(5, 1, b"size 5 again, one cosignature")
    await store.keep_checkpoint(4, 3, b"size 4")
    assert await store.kept_checkpoint() == b"size 5, two cosignatures"
    await store.keep_checkpoint(5, 2, b"size 5, two other cosignatures")
    assert await store.kept_checkpoint() == b"size 5, two other cosignatures"
    await store.keep_checkpoint(6, 1, b"size 6")
    assert await store.kept_checkpoint() == b"size 6"
    for size, cosignatures, note in ((-1, 1, b"n"), (7, 0, b"n"), (7, 1, b"")):
        with pytest.raises(ConfigError):
            await store.keep_checkpoint(size, cosignatures, note)
    assert await store.kept_checkpoint() == b"size 6"


async def test_a_credential_rotation_replaces_only_an_earlier_one(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 10, now=0)
    first, second, third = (hashlib.sha256(bytes([n])).digest() for n in range(3))
    roster, other = b"\x01" * 32, b"\x02" * 32

    async def credential() -> bytes:
        record = await store.get_tenant("a")
        assert record is not None
        return record.credential_hash

    # Never rotated: the first rotation, whatever its place, is taken.
    assert await store.rotate_credential("a", first, 0, 1, roster) == "rotated"
    assert await credential() == first
    assert await store.rotate_credential("a", first, 0, 1, roster) == "same"
    assert await store.rotate_credential("a", second, 0, 1, roster) == "fork"  # its place, not it
    assert await store.rotate_credential("a", second, 0, 0, roster) == "stale"
    assert await store.rotate_credential("a", second, 0, 2, other) == "fork"  # another version 0
    assert await credential() == first
    assert await store.rotate_credential("a", second, 1, 0, other) == "rotated"  # a later version
    assert await store.rotate_credential("a", third, 0, 9, roster) == "stale"
    assert await credential() == second
    with pytest.raises(UnknownTenant):
        await store.rotate_credential("nobody", third, 2, 0, roster)
    for bad in ((b"short", 2, 0, roster), (third, -1, 0, roster), (third, 2, 0, b"")):
        with pytest.raises(ConfigError):
            await store.rotate_credential("a", *bad)
    assert await credential() == second
    # The record a relay reads afresh carries the rotated credential.
    assert await store.rotate_credential("a", third, 1, 1, other) == "rotated"
    assert await credential() == third


async def test_every_store_on_one_database_sees_a_rotation(maker: StoreMaker) -> None:
    async with maker.two() as (first, second):
        await first.create_tenant("a", CRED, 10, now=0)
        new = hashlib.sha256(b"new").digest()
        assert await first.rotate_credential("a", new, 1, 0, b"\x01" * 32) == "rotated"
        record = await second.get_tenant("a")
        assert record is not None and record.credential_hash == new
        assert await second.rotate_credential("a", CRED, 0, 5, b"\x01" * 32) == "stale"


async def test_every_store_on_one_database_serves_the_kept_checkpoint(maker: StoreMaker) -> None:
    async with maker.two() as (first, second):
        await first.keep_checkpoint(3, 1, b"kept by the first")
        assert await second.kept_checkpoint() == b"kept by the first"
        await second.keep_checkpoint(3, 1, b"kept by the second")
        assert await first.kept_checkpoint() == b"kept by the second"
    third = maker.make()
    await third.open()
    try:
        assert await third.kept_checkpoint() == b"kept by the second"
    finally:
        await third.close()


async def test_cancelled_deposit_does_not_disturb_the_others(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 100, now=0)
    tasks = [asyncio.create_task(store.deposit("a", slot(n), cell(n), now=1)) for n in range(40)]
    tasks[5].cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[5], asyncio.CancelledError)
    assert all(not isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 5)
    found = await store.fetch("a", [slot(n) for n in range(40)])
    assert {slot(n) for n in range(40) if n != 5} <= set(found)
    # The cancelled one may or may not have been written; a retry settles it.
    assert (await store.deposit("a", slot(5), cell(5), now=2)).cell_id
    assert await store.count_cells("a") == 40


# -- retention -----------------------------------------------------------------


async def test_expiry_boundary_is_inclusive_and_never_early(store: RelayStore) -> None:
    retention = 3600
    await store.create_tenant("a", CRED, 10, now=0)
    await store.create_tenant("b", CRED, 10, now=0)
    await store.deposit("a", slot(1), cell(1), now=1000)
    await store.deposit("b", slot(2), cell(2), now=1000)
    await store.deposit("a", slot(3), cell(3), now=1001)

    assert await store.expire(now=1000 + retention - 1, retention_seconds=retention) == 0
    assert await store.count_cells() == 3
    assert await store.expire(now=1000 + retention, retention_seconds=retention) == 2
    assert await store.fetch("a", [slot(1), slot(3)]) == {slot(3): cell(3)}
    assert await store.fetch("b", [slot(2)]) == {}
    assert await store.expire(now=1001 + retention, retention_seconds=retention) == 1
    assert await store.count_cells() == 0


async def test_idempotent_retry_does_not_extend_retention(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 10, now=0)
    await store.deposit("a", slot(1), cell(1), now=100)
    await store.deposit("a", slot(1), cell(1), now=500)
    assert await store.expire(now=110, retention_seconds=10) == 1


async def test_expire_with_zero_retention_removes_cells_deposited_now(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 10, now=0)
    await store.deposit("a", slot(1), cell(1), now=50)
    await store.deposit("a", slot(2), cell(2), now=51)
    assert await store.expire(now=50, retention_seconds=0) == 1
    assert await store.fetch("a", [slot(1), slot(2)]) == {slot(2): cell(2)}


async def test_expire_removes_more_than_one_step(
    store: RelayStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_common, "EXPIRE_STEP_ROWS", 7)
    await store.create_tenant("a", CRED, 100, now=0)
    await asyncio.gather(*(store.deposit("a", slot(n), cell(n), now=n) for n in range(30)))
    assert await store.expire(now=29 + 10, retention_seconds=10) == 30
    assert await store.count_cells() == 0


async def test_expiry_rests_after_each_step_as_long_as_the_step_took() -> None:
    # The rest is what lets deposits and acknowledgements through between
    # expiry's steps; it can only be longer than asked, so the bound is safe.
    loop = asyncio.get_running_loop()
    calls: list[float] = []

    async def step() -> bool:
        calls.append(loop.time())
        await asyncio.sleep(0.02)
        return len(calls) < 3

    began = loop.time()
    await _common.in_steps(step)
    assert len(calls) == 3  # until a step says it found less than a full step
    assert calls[1] - calls[0] >= 0.04 and calls[2] - calls[1] >= 0.04
    assert loop.time() - began >= 0.02 * 3 + 0.02 * 2


# -- durability across reopen ------------------------------------------------------


async def test_reopen_after_close_keeps_everything(maker: StoreMaker) -> None:
    first = maker.make()
    await first.open()
    record = await first.create_tenant("a", CRED, 10, now=7)
    await first.deposit("a", slot(1), cell(1), now=8)
    await first.deposit("a", slot(2), cell(2), now=8)
    await first.ack("a", [slot(2)], now=9)
    await first.close()

    second = maker.make()
    await second.open()
    try:
        assert await second.get_tenant("a") == record
        assert await second.fetch("a", [slot(1), slot(2)]) == {slot(1): cell(1)}
        assert not (await second.deposit("a", slot(1), cell(1), now=10)).created
        assert await second.count_cells() == 1
    finally:
        await second.close()


async def test_close_finishes_deposits_already_submitted(maker: StoreMaker) -> None:
    opened = maker.make()
    await opened.open()
    await opened.create_tenant("a", CRED, 100, now=0)
    tasks = [asyncio.create_task(opened.deposit("a", slot(n), cell(n), now=1)) for n in range(50)]
    await asyncio.sleep(0)  # every deposit is submitted
    await opened.close()
    assert all(t.done() and t.result().created for t in tasks)
    reopened = maker.make()
    await reopened.open()
    try:
        assert await reopened.count_cells("a") == 50
    finally:
        await reopened.close()


async def test_closed_store_refuses_work(maker: StoreMaker) -> None:
    opened = maker.make()
    await opened.open()
    await opened.create_tenant("a", CRED, 10, now=0)
    await opened.close()
    with pytest.raises(StoreUnavailable):
        await opened.deposit("a", slot(1), cell(1), now=1)
    with pytest.raises(StoreUnavailable):
        await opened.fetch("a", [slot(1)])


# -- argument checks -------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_slot", "bad_cell"),
    [
        (b"\x00" * (SLOT_LEN - 1), cell(1)),
        (b"\x00" * (SLOT_LEN + 1), cell(1)),
        (slot(1), cell(1)[:-1]),
        (slot(1), cell(1) + b"\x00"),
        (slot(1), b""),
    ],
)
async def test_malformed_slot_or_cell_is_refused(
    store: RelayStore, bad_slot: bytes, bad_cell: bytes
) -> None:
    await store.create_tenant("a", CRED, 10, now=0)
    with pytest.raises(ConfigError):
        await store.deposit("a", bad_slot, bad_cell, now=1)
    assert await store.count_cells() == 0


async def test_bad_arguments_raise_config_errors(store: RelayStore) -> None:
    with pytest.raises(ConfigError):
        await store.create_tenant("", CRED, 10, now=0)
    with pytest.raises(ConfigError):
        await store.create_tenant("a", CRED, -1, now=0)
    with pytest.raises(ConfigError):
        await store.expire(now=10, retention_seconds=-1)
    with pytest.raises(ConfigError):
        await store.fetch("a", [b"short"])
    with pytest.raises(ConfigError):
        await store.fetch("a", [slot(n) for n in range(5000)])
