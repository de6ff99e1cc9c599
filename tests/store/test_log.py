"""The relay log, on every backend: appends, proofs, heads, retries, expiry."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path

import pytest

from backchannel.errors import (
    ConfigError,
    LocalProtocolError,
    QuotaExceeded,
    SlotConflict,
    StoreUnavailable,
    UnknownTenant,
)
from backchannel.protocol import merkle
from backchannel.protocol.merkle import TreeHead, leaf_hash
from backchannel.protocol.misbehaviour import (
    LogLeaf,
    open_signed_head,
    relay_key_from_bytes,
    verify_cell_receipt,
)
from backchannel.store.memory import MemoryRelayStore
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.relay_store import BatchTree, DepositResult, RelayStore
from backchannel.store.sqlite import SQLiteRelayStore

from .conftest import StoreMaker
from .helpers import CRED, cell, slot


async def verified_head(store: RelayStore) -> TreeHead:
    key = relay_key_from_bytes(store.log_public_key())
    return open_signed_head(await store.signed_head(), key)


async def check_receipt(
    store: RelayStore, tenant: str, n: int, result: DepositResult, tag: bytes = b""
) -> TreeHead:
    """Everything a client would check about a fresh deposit's answer."""
    assert result.receipt is not None
    assert result.leaf_index is not None and result.batch_position is not None
    leaf = await store.log_leaf(result.leaf_index)
    # The batch's own head, straight from the commit...
    receipt = result.receipt
    assert receipt.head.size == result.leaf_index + 1
    verify_cell_receipt(
        tenant_id=tenant,
        slot=slot(n, tag),
        cell=cell(n, tag),
        leaf=leaf,
        batch_position=result.batch_position,
        batch_proof=receipt.batch_proof(),
        inclusion_proof=receipt.inclusion_proof,
        head=receipt.head,
    )
    # ...and a signed head covering it, with proofs against that head.
    signed, proof = await store.log_receipt(result.leaf_index, result.batch_position)
    key = relay_key_from_bytes(store.log_public_key())
    head = open_signed_head(signed, key)
    assert head.size > result.leaf_index
    assert (proof.leaf_index, proof.batch_position, proof.batch_size) == (
        result.leaf_index,
        result.batch_position,
        result.batch_size,
    )
    verify_cell_receipt(
        tenant_id=tenant,
        slot=slot(n, tag),
        cell=cell(n, tag),
        leaf=leaf,
        batch_position=proof.batch_position,
        batch_proof=proof.batch_proof,
        inclusion_proof=proof.inclusion_proof,
        head=head,
    )
    assert LogLeaf.decode(leaf).batch_size == result.batch_size
    receipt.head.check_consistent(
        head,
        await store.consistency_proof(receipt.head.size, head.size)
        if receipt.head.size < head.size
        else [],
    )
    return head


async def check_all_cells(store: RelayStore, tenant: str, numbers: list[int]) -> TreeHead:
    """Fetch the cells with their positions; every proof verifies against a fresh head."""
    head = await verified_head(store)
    found = await store.fetch_logged(tenant, [slot(n) for n in numbers])
    assert set(found) == {slot(n) for n in numbers}
    positions = []
    for n in numbers:
        logged = found[slot(n)]
        assert logged.cell == cell(n)
        assert logged.leaf_index is not None and logged.batch_position is not None
        positions.append((logged.leaf_index, logged.batch_position))
    proofs = await store.cell_proofs(positions, head.size)
    for n, proof in zip(numbers, proofs, strict=True):
        leaf = await store.log_leaf(proof.leaf_index)
        verify_cell_receipt(
            tenant_id=tenant,
            slot=slot(n),
            cell=cell(n),
            leaf=leaf,
            batch_position=proof.batch_position,
            batch_proof=proof.batch_proof,
            inclusion_proof=proof.inclusion_proof,
            head=head,
        )
        # The single-item calls agree with the bulk one.
        assert await store.batch_proof(proof.leaf_index, proof.batch_position) == (
            proof.batch_proof
        )
        assert await store.inclusion_proof(proof.leaf_index, head.size) == proof.inclusion_proof
    # What a fetch answers: one snapshot, a compact signed head, proofs against it.
    compact, cells, snapshot = await store.fetch_proved(tenant, [slot(n) for n in numbers])
    key = relay_key_from_bytes(store.log_public_key())
    compact_head = open_signed_head(compact, key)
    assert len(compact) == 113 and compact_head.size >= head.size
    assert cells == {slot(n): cell(n) for n in numbers}
    assert set(snapshot) == set(cells)
    for n in numbers:
        proof = snapshot[slot(n)]
        verify_cell_receipt(
            tenant_id=tenant,
            slot=slot(n),
            cell=cell(n),
            leaf=await store.log_leaf(proof.leaf_index),
            batch_position=proof.batch_position,
            batch_proof=proof.batch_proof,
            inclusion_proof=proof.inclusion_proof,
            head=compact_head,
        )
    return head


def check_consistent(
    store_heads: list[TreeHead], proofs: dict[tuple[int, int], list[bytes]]
) -> None:
    for a, b in itertools.combinations(store_heads, 2):
        old, new = (a, b) if a.size <= b.size else (b, a)
        old.check_consistent(new, proofs.get((old.size, new.size), []))


async def all_consistency_proofs(
    store: RelayStore, heads: list[TreeHead]
) -> dict[tuple[int, int], list[bytes]]:
    out = {}
    for a, b in itertools.combinations(sorted({h.size for h in heads}), 2):
        if a > 0:
            out[(a, b)] = await store.consistency_proof(a, b)
    return out


async def test_empty_log_has_the_empty_root_and_a_valid_signed_head(store: RelayStore) -> None:
    head = await verified_head(store)
    assert head.size == 0 and head.root == merkle.EMPTY_ROOT
    assert await store.log_head() == TreeHead(0, merkle.EMPTY_ROOT, head.timestamp)
    with pytest.raises(LookupError):
        await store.log_leaf(0)


async def test_each_deposit_is_logged_and_its_receipt_verifies(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 100, now=0)
    heads = [await verified_head(store)]
    for n in range(12):
        result = await store.deposit("a", slot(n), cell(n), now=60 * n)
        assert result.created
        await check_receipt(store, "a", n, result)
        heads.append(await verified_head(store))
    assert [h.size for h in heads] == sorted(h.size for h in heads)
    assert [h.timestamp for h in heads[1:]] == sorted(h.timestamp for h in heads[1:])
    assert heads[-1].size >= 1
    assert (await store.log_head()).root == heads[-1].root
    check_consistent(heads, await all_consistency_proofs(store, heads))
    await check_all_cells(store, "a", list(range(12)))


async def test_concurrent_deposits_share_batches_and_every_proof_verifies(
    store: RelayStore,
) -> None:
    await store.create_tenant("a", CRED, 1000, now=0)
    await store.create_tenant("b", CRED, 1000, now=0)
    heads: list[TreeHead] = []
    sizes: list[int] = []
    for wave in range(4):
        numbers = range(wave * 50, wave * 50 + 50)
        results = await asyncio.gather(
            *(store.deposit("a" if n % 3 else "b", slot(n), cell(n), now=wave) for n in numbers)
        )
        for n, r in zip(numbers, results, strict=True):
            await check_receipt(store, "a" if n % 3 else "b", n, r)
        # No two cells share a (leaf, position); every batch is full.
        places = {(r.leaf_index, r.batch_position) for r in results}
        assert len(places) == len(results)
        for r in results:
            assert r.batch_size is not None and r.batch_position is not None
            assert 0 <= r.batch_position < r.batch_size
            sizes.append(r.batch_size)
        heads.append(await verified_head(store))
    if not isinstance(store, MemoryRelayStore):  # one deposit is one batch in memory
        assert max(sizes) > 1, "concurrent deposits never shared a commit"
    check_consistent(heads, await all_consistency_proofs(store, heads))
    await check_all_cells(store, "a", [n for n in range(200) if n % 3])
    await check_all_cells(store, "b", [n for n in range(200) if not n % 3])


async def test_idempotent_retry_reports_the_original_position(
    maker: StoreMaker, store: RelayStore
) -> None:
    await store.create_tenant("a", CRED, 100, now=0)
    first = await store.deposit("a", slot(1), cell(1), now=5)
    await store.deposit("a", slot(2), cell(2), now=6)
    size = (await store.log_head()).size
    again = await store.deposit("a", slot(1), cell(1), now=7)
    assert not again.created
    assert (again.leaf_index, again.batch_position, again.batch_size) == (
        first.leaf_index,
        first.batch_position,
        first.batch_size,
    )
    assert (await store.log_head()).size == size  # a retry appends nothing
    # Retries racing the original in the same batch agree on one position.
    results = await asyncio.gather(*(store.deposit("a", slot(3), cell(3), now=8) for _ in range(6)))
    assert sum(r.created for r in results) == 1
    assert len({(r.leaf_index, r.batch_position, r.batch_size) for r in results}) == 1
    if maker.shares_storage:
        await store.close()
        reopened = maker.make()
        await reopened.open()
        try:
            later = await reopened.deposit("a", slot(1), cell(1), now=9)
            assert (later.leaf_index, later.batch_position, later.batch_size) == (
                first.leaf_index,
                first.batch_position,
                first.batch_size,
            )
        finally:
            await reopened.close()
        await store.open()


async def test_refused_deposits_append_nothing(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 1, now=0)
    await store.deposit("a", slot(1), cell(1), now=1)
    size = (await store.log_head()).size
    outcomes = await asyncio.gather(
        store.deposit("a", slot(1), cell(9), now=2),  # conflict
        store.deposit("a", slot(2), cell(2), now=2),  # quota
        store.deposit("nobody", slot(3), cell(3), now=2),  # unknown tenant
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes] == [SlotConflict, QuotaExceeded, UnknownTenant]
    assert (await store.log_head()).size == size


async def test_a_batch_of_deposits_answers_each_cell_and_every_proof_verifies(
    store: RelayStore,
) -> None:
    await store.create_tenant("a", CRED, 3, now=0)
    await store.create_tenant("b", CRED, 10, now=0)
    first = await store.deposit("a", slot(1), cell(1), now=1)
    size = (await store.log_head()).size
    outcomes = await store.deposit_many(
        [
            ("a", slot(1), cell(1)),  # the same cell again: its first place
            ("a", slot(1), cell(9)),  # another cell there: a conflict
            ("nobody", slot(3), cell(3)),
            ("a", slot(4), cell(4)),
            ("b", slot(5), cell(5)),
            ("a", b"short", cell(6)),  # not a slot
            ("a", slot(7), cell(7)),
            ("a", slot(8), cell(8)),  # past the quota of 3
        ],
        now=2,
    )
    again, conflict, unknown, a4, b5, short, a7, over = outcomes
    assert isinstance(again, DepositResult) and not again.created
    assert (again.leaf_index, again.batch_position) == (first.leaf_index, first.batch_position)
    assert isinstance(conflict, SlotConflict) and isinstance(unknown, UnknownTenant)
    assert isinstance(short, ConfigError) and isinstance(over, QuotaExceeded)
    for tenant, n, r in (("a", 4, a4), ("b", 5, b5), ("a", 7, a7)):
        assert isinstance(r, DepositResult) and r.created
        await check_receipt(store, tenant, n, r)
    if isinstance(store, SQLiteRelayStore):  # one job, so one batch
        assert isinstance(a4, DepositResult) and isinstance(a7, DepositResult)
        assert a4.leaf_index == a7.leaf_index and a4.batch_size == 3
    assert (await store.log_head()).size > size
    await check_all_cells(store, "a", [1, 4, 7])
    await check_all_cells(store, "b", [5])


async def test_a_batch_the_disk_fails_leaves_nothing_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteRelayStore(f"{tmp_path}/relay.db")
    await store.open()
    try:
        await store.create_tenant("a", CRED, 100, now=0)
        await store.deposit("a", slot(1), cell(1), now=1)
        size = (await store.log_head()).size
        calls = itertools.count()
        real = store._deposit_in

        def failing(*args: object) -> object:
            if next(calls) == 1:  # the second cell, once the first is in the batch
                raise sqlite3.OperationalError("disk I/O error")
            return real(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "_deposit_in", failing)
        outcomes = await store.deposit_many([("a", slot(n), cell(n)) for n in (2, 3, 4)], now=2)
        assert all(isinstance(o, StoreUnavailable) for o in outcomes)
        assert await store.fetch("a", [slot(2), slot(3), slot(4)]) == {}
        assert (await store.log_head()).size == size  # no leaf for cells not stored
        monkeypatch.undo()
        results = await store.deposit_many([("a", slot(n), cell(n)) for n in (2, 3, 4)], now=3)
        for n, r in zip((2, 3, 4), results, strict=True):
            assert isinstance(r, DepositResult) and r.created and r.batch_size == 3
            await check_receipt(store, "a", n, r)
        await check_all_cells(store, "a", [1, 2, 3, 4])
    finally:
        await store.close()


async def test_ack_keeps_the_batch_provable_and_expiry_forgets_members_only(
    store: RelayStore,
) -> None:
    await store.create_tenant("a", CRED, 100, now=0)
    results = await asyncio.gather(
        *(store.deposit("a", slot(n), cell(n), now=100) for n in range(8))
    )
    later = await store.deposit("a", slot(50), cell(50), now=5000)
    assert later.leaf_index is not None
    await store.ack("a", [slot(0), slot(1)], now=200)
    await check_all_cells(store, "a", list(range(2, 8)))
    head_before = await store.log_head()

    assert await store.expire(now=1000, retention_seconds=500) == 6
    after = await store.log_head()
    assert (after.size, after.root) == (head_before.size, head_before.root)  # the log stays
    for r in results:
        assert r.leaf_index is not None and r.batch_position is not None
        await store.log_leaf(r.leaf_index)
        await store.inclusion_proof(r.leaf_index, after.size)
        with pytest.raises(LookupError):
            await store.batch_proof(r.leaf_index, r.batch_position)
    await check_all_cells(store, "a", [50])


async def test_proof_requests_outside_the_log_are_refused(store: RelayStore) -> None:
    await store.create_tenant("a", CRED, 100, now=0)
    await store.deposit("a", slot(1), cell(1), now=1)
    size = (await store.log_head()).size
    with pytest.raises(LocalProtocolError):
        await store.inclusion_proof(0, size + 1)
    with pytest.raises(LocalProtocolError):
        await store.inclusion_proof(size, size)
    with pytest.raises(LocalProtocolError):
        await store.consistency_proof(0, size)
    with pytest.raises(LocalProtocolError):
        await store.consistency_proof(1, size + 1)
    with pytest.raises(LookupError):
        await store.log_leaf(size)
    with pytest.raises(LookupError):
        await store.batch_proof(0, 5)


async def test_two_stores_on_one_database_append_to_one_log(maker: StoreMaker) -> None:
    async with maker.two() as (first, second):
        assert first.log_public_key() == second.log_public_key()
        await first.create_tenant("a", CRED, 1000, now=0)
        heads: list[TreeHead] = []
        for wave in range(3):
            numbers = range(wave * 40, wave * 40 + 40)
            results = await asyncio.gather(
                *(
                    (first if n % 2 else second).deposit("a", slot(n), cell(n), now=wave)
                    for n in numbers
                )
            )
            for n, r in zip(numbers, results, strict=True):
                await check_receipt(first, "a", n, r)
            heads.append(await verified_head(first))
            heads.append(await verified_head(second))
        check_consistent(heads, await all_consistency_proofs(first, heads))
        await check_all_cells(second, "a", list(range(120)))
        leaves = [await first.log_leaf(i) for i in range((await first.log_head()).size)]
        assert merkle.root(leaves) == (await second.log_head()).root
        assert [LogLeaf.decode(x).batch_index for x in leaves] == list(range(len(leaves)))
        assert sum(LogLeaf.decode(x).batch_size for x in leaves) == 120


async def test_log_survives_reopen(maker: StoreMaker) -> None:
    first = maker.make()
    await first.open()
    await first.create_tenant("a", CRED, 100, now=0)
    await asyncio.gather(*(first.deposit("a", slot(n), cell(n), now=1) for n in range(20)))
    before = await verified_head(first)
    key = first.log_public_key()
    await first.close()
    second = maker.make()
    await second.open()
    try:
        assert second.log_public_key() == key
        now = await verified_head(second)
        assert (now.size, now.root) == (before.size, before.root)
        await second.deposit("a", slot(99), cell(99), now=2)
        grown = await verified_head(second)
        before.check_consistent(grown, await second.consistency_proof(before.size, grown.size))
        await check_all_cells(second, "a", [*range(20), 99])
    finally:
        await second.close()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 9, 31, 64, 100])
def test_batch_tree_matches_rfc_9162(size: int) -> None:
    entries = [b"entry %d" % i for i in range(size)]
    tree = BatchTree.of_entries(entries)
    reference = merkle.MemoryLog()
    for e in entries:
        reference.append(e)
    assert tree.root() == reference.root() == merkle.root(entries)
    for i in range(size):
        assert tree.proof(i) == reference.inclusion_proof(i)
        merkle.verify_inclusion(leaf_hash(entries[i]), i, size, tree.proof(i), tree.root())


def test_store_hashing_and_appends_match_the_protocol_module() -> None:
    """The commit path's own hashing (hashlib directly) is RFC 9162's, as in merkle."""
    from backchannel.store import _log, relay_store

    for n in range(40):
        data = bytes(range(n)) * 3
        left, right = merkle.leaf_hash(data), merkle.leaf_hash(data + b"x")
        assert relay_store.leaf_hash(data) == merkle.leaf_hash(data)
        assert relay_store.node_hash(left, right) == merkle.node_hash(left, right)
    state, leaves = _log.EMPTY_STATE, []
    for index in range(70):
        step = _log.append_batch(state, merkle.leaf_hash(b"%d" % index), index % 4 + 1, index)
        leaves.append(step.leaf)
        assert step.head == step.state.head()
        assert step.head.root == merkle.root(leaves)
        assert step.inclusion_proof == tuple(reversed(state.frontier.hashes))
        state = step.state


async def _paced(store: RelayStore) -> None:
    await store.open()
    try:
        await store.create_tenant("a", CRED, 100, now=0)
        await store.deposit("a", slot(0), cell(0), now=1)  # a commit: the interval starts
        started = asyncio.get_running_loop().time()
        tasks = []
        for n in range(1, 9):  # spread over ~160 ms, well inside the 400 ms interval
            tasks.append(asyncio.create_task(store.deposit("a", slot(n), cell(n), now=1)))
            await asyncio.sleep(0.02)
        results = await asyncio.gather(*tasks)
        assert asyncio.get_running_loop().time() - started >= 0.3
        assert {r.leaf_index for r in results} == {1}  # one batch, one leaf
        assert (await store.log_head()).size == 2
    finally:
        await store.close()


async def test_sqlite_log_interval_paces_commits(tmp_path: Path) -> None:
    await _paced(SQLiteRelayStore(tmp_path / "relay.db", log_interval=0.4))


@pytest.mark.postgres
async def test_postgres_log_interval_paces_commits(pg_dsn: str) -> None:
    await _paced(PostgresRelayStore(pg_dsn, log_interval=0.4))


async def test_expiry_forgets_members_in_chunks_and_keeps_newer_batches(
    store: RelayStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backchannel.store import postgres as pg_module
    from backchannel.store import sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "_MEMBER_LEAVES_CHUNK", 2)
    monkeypatch.setattr(pg_module, "_MEMBER_LEAVES_CHUNK", 2)
    await store.create_tenant("a", CRED, 100, now=0)
    old = [await store.deposit("a", slot(n), cell(n), now=100 + n) for n in range(7)]
    new = await store.deposit("a", slot(50), cell(50), now=5000)
    assert await store.expire(now=1000, retention_seconds=500) == 7
    for r in old:
        assert r.leaf_index is not None and r.batch_position is not None
        with pytest.raises(LookupError):
            await store.batch_proof(r.leaf_index, r.batch_position)
    assert new.leaf_index is not None and new.batch_position is not None
    assert await store.batch_proof(new.leaf_index, new.batch_position) == []
    await check_all_cells(store, "a", [50])
