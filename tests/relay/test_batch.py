"""The batch exchange in-process: one deposit and one fetch per round, binary.

The store-backed checks run on every backend (memory, SQLite, PostgreSQL when
one is reachable); the HTTP-only checks (limits, padding, refusals, the
client) on the memory store.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from backchannel.client.relay_client import RelayClient, RelayRefusal
from backchannel.crypto.signing import VerifyKey
from backchannel.errors import SignatureError, StoreUnavailable
from backchannel.protocol.batch import (
    CellPlace,
    DepositBatch,
    DepositBatchAnswer,
    DepositCell,
    FetchBatch,
    FetchBatchAnswer,
    LogBundle,
    Query,
    QueryKind,
    decode_consistency,
    decode_entry,
    decode_slot_read,
)
from backchannel.protocol.merkle import TreeHead, verify_consistency
from backchannel.protocol.misbehaviour import (
    Absence,
    SignedHead,
    relay_key_from_bytes,
    verify_cell_receipt,
)
from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.relay_store import DepositResult, RelayStore
from backchannel.store.sqlite import SQLiteRelayStore

from .conftest import CELL, AppFactory, Clock, Tenant, deposit, new_cell, register, running
from .procs import fresh_pg_schema, postgres_reachable

OCTET = {"Content-Type": "application/octet-stream"}
BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RelayStore]:
    name: str = request.param
    if name == "memory":
        yield MemoryRelayStore()
    elif name == "sqlite":
        yield SQLiteRelayStore(str(tmp_path / "relay.db"))
    else:
        reason = postgres_reachable()
        if reason:
            pytest.skip(reason)
        with fresh_pg_schema() as url:
            yield PostgresRelayStore(url)


@pytest.fixture
async def relay(
    backend: RelayStore, settings: RelaySettings, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    async for http in running(create_app(settings, backend, clock=clock)):
        yield http


def new_slot() -> bytes:
    return secrets.token_bytes(32)


async def post_deposit(
    http: httpx.AsyncClient, cells: Sequence[tuple[str, bytes, bytes]], known_size: int = 0
) -> DepositBatchAnswer:
    body = DepositBatch(known_size, tuple(DepositCell(*c) for c in cells)).encode()
    r = await http.post("/v1/batch/deposit", content=body, headers=OCTET)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    return DepositBatchAnswer.decode(r.content)


async def post_fetch(
    http: httpx.AsyncClient,
    tenant: Tenant,
    slots: Sequence[bytes],
    known_size: int = 0,
    queries: Sequence[Query] = (),
    pad_to: int = 0,
) -> FetchBatchAnswer:
    body = FetchBatch(known_size, pad_to, tuple(slots), tuple(queries)).encode()
    r = await http.post(tenant.path("batch/fetch"), content=body, headers={**OCTET, **tenant.auth})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return FetchBatchAnswer.decode(r.content, pad_to)


async def relay_key(http: httpx.AsyncClient) -> VerifyKey:
    body = (await http.get("/v1/log/key")).json()
    return relay_key_from_bytes(bytes.fromhex(body["ed25519"]) + bytes.fromhex(body["mldsa65"]))


def verified_head(bundle: LogBundle, key: VerifyKey) -> TreeHead:
    signed = SignedHead.decode(bundle.signed_head)
    signed.verify(key)
    return signed.head


def check_place(
    bundle: LogBundle, key: VerifyKey, tenant: str, slot: bytes, cell: bytes, place: CellPlace
) -> None:
    """As the client checks a cell (relay-log-v1 §4), from this one answer alone."""
    leaf = bundle.leaf(place.leaf_index)
    assert leaf is not None, "the answer lacks the cell's leaf"
    verify_cell_receipt(
        tenant_id=tenant,
        slot=slot,
        cell=cell,
        leaf=leaf,
        batch_position=place.batch_position,
        batch_proof=place.batch_proof,
        inclusion_proof=place.inclusion_proof,
        head=verified_head(bundle, key),
    )


def error_of(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and "\n" not in body["error"]
    return str(body["error"])


# -- store-backed: every backend ---------------------------------------------------------


async def test_a_batch_to_two_tenants_is_stored_and_proved_against_one_head(
    relay: httpx.AsyncClient, backend: RelayStore
) -> None:
    alpha, beta = await register(relay, "mission-alpha"), await register(relay, "mission-beta")
    cells = [
        (beta.tenant_id if i % 3 else alpha.tenant_id, new_slot(), new_cell()) for i in range(12)
    ]
    answer = await post_deposit(relay, cells)
    assert [r.status for r in answer.results] == [201] * 12
    key = await relay_key(relay)
    assert answer.log.key == key.ed25519 + key.mldsa65  # first contact: the key comes along
    places = answer.places()
    for (tenant, slot, cell), result, place in zip(cells, answer.results, places, strict=True):
        assert result.cell_id == hashlib.sha256(cell).digest()
        assert place is not None
        check_place(answer.log, key, tenant, slot, cell, place)
    # One head, and each leaf once however many cells it holds.
    used = {p.leaf_index for p in places if p is not None}
    assert set(answer.log.leaves) == used
    if not isinstance(backend, MemoryRelayStore):  # one deposit is one leaf in memory
        assert len(used) < len(cells), "the batch's cells never shared a commit"
    # Stored byte for byte, exactly once.
    for tenant in (alpha.tenant_id, beta.tenant_id):
        mine = {s: c for t, s, c in cells if t == tenant}
        assert await backend.fetch(tenant, list(mine)) == mine
        assert await backend.count_cells(tenant) == len(mine)


async def test_a_partial_failure_is_answered_per_cell(
    relay: httpx.AsyncClient, backend: RelayStore
) -> None:
    full = await register(relay, "mission-full", quota=1)
    beta = await register(relay, "mission-beta")
    assert (await deposit(relay, full.tenant_id, new_slot().hex(), new_cell())).status_code == 201
    taken = new_slot()
    assert (await deposit(relay, beta.tenant_id, taken.hex(), new_cell())).status_code == 201
    good = [(beta.tenant_id, new_slot(), new_cell()) for _ in range(2)]
    cells = [
        good[0],
        ("mission-nobody", new_slot(), new_cell()),  # unknown tenant
        (beta.tenant_id, taken, new_cell()),  # a different cell holds the slot
        (beta.tenant_id, new_slot(), new_cell(CELL - 1)),  # wrong size
        (full.tenant_id, new_slot(), new_cell()),  # quota full
        ("Not_A_Tenant", new_slot(), new_cell()),  # not a tenant id
        good[1],
    ]
    answer = await post_deposit(relay, cells, known_size=1)
    assert [r.status for r in answer.results] == [201, 404, 409, 400, 507, 400, 201]
    for result in answer.results[1:-1]:
        assert result.cell_id == bytes(32) and result.place is None
    key = await relay_key(relay)
    assert answer.log.key == b""  # the client already pinned it
    places = answer.places()
    for i in (0, 6):
        tenant, slot, cell = cells[i]
        place = places[i]
        assert place is not None
        check_place(answer.log, key, tenant, slot, cell, place)
    assert await backend.fetch(beta.tenant_id, [s for _, s, _ in good]) == {
        s: c for _, s, c in good
    }
    assert await backend.count_cells(full.tenant_id) == 1
    assert await backend.count_cells(beta.tenant_id) == 3


async def test_the_same_batch_again_stores_nothing_twice_and_keeps_its_places(
    relay: httpx.AsyncClient, backend: RelayStore
) -> None:
    beta = await register(relay, "mission-beta")
    cells = [(beta.tenant_id, new_slot(), new_cell()) for _ in range(5)]
    first = await post_deposit(relay, cells)
    size = (await backend.log_head()).size
    again = await post_deposit(relay, cells, known_size=size)
    assert [r.status for r in again.results] == [200] * 5
    assert [r.cell_id for r in again.results] == [r.cell_id for r in first.results]
    assert [r.place for r in again.results] == [r.place for r in first.results]
    assert (await backend.log_head()).size == size  # no new leaf
    assert await backend.count_cells(beta.tenant_id) == 5
    key = await relay_key(relay)
    for (tenant, slot, cell), place in zip(cells, again.places(), strict=True):
        assert place is not None
        check_place(again.log, key, tenant, slot, cell, place)


async def test_the_answer_proves_its_head_consistent_with_the_clients_size(
    relay: httpx.AsyncClient,
) -> None:
    beta = await register(relay, "mission-beta")
    key = await relay_key(relay)
    first = await post_deposit(relay, [(beta.tenant_id, new_slot(), new_cell())])
    old = verified_head(first.log, key)
    assert first.log.consistency == ()  # nothing to prove from size 0
    second = await post_deposit(
        relay, [(beta.tenant_id, new_slot(), new_cell()) for _ in range(3)], known_size=old.size
    )
    new = verified_head(second.log, key)
    assert new.size > old.size and second.log.key == b""
    verify_consistency(old.size, new.size, old.root, new.root, second.log.consistency)
    same = await post_fetch(relay, beta, [], known_size=new.size)
    assert verified_head(same.log, key) == new and same.log.consistency == ()
    ahead = await post_fetch(relay, beta, [], known_size=new.size + 5)
    assert ahead.log.consistency == ()  # the client's own check sees a smaller head
    fetched = await post_fetch(relay, beta, [], known_size=old.size)
    verify_consistency(old.size, new.size, old.root, new.root, fetched.log.consistency)


async def test_a_fetch_answers_cells_spent_absent_and_every_query(
    relay: httpx.AsyncClient, backend: RelayStore
) -> None:
    beta = await register(relay, "mission-beta")
    cells = [(beta.tenant_id, new_slot(), new_cell()) for _ in range(4)]
    await post_deposit(relay, cells[:2])
    deposited = await post_deposit(relay, cells[2:], known_size=1)
    spent_slot = cells[3][1]
    r = await relay.post(beta.path("ack"), json={"slots": [spent_slot.hex()]}, headers=beta.auth)
    assert r.json() == {"removed": 1}
    absent = [new_slot(), new_slot()]
    key = await relay_key(relay)
    size = (await backend.log_head()).size
    leaf_index = deposited.results[0].place.leaf_index  # type: ignore[union-attr]
    position = deposited.results[0].place.batch_position  # type: ignore[union-attr]
    lone = new_slot()
    queries = [
        Query.none(),
        Query.consistency(1, size),
        Query.head_at(1),
        Query.entry(leaf_index, position, size),
        Query.absence(cells[0][1]),
        Query.absence(lone),
        Query.absence(spent_slot),
        Query.leaf(0),
    ]
    asked = [c[1] for c in cells] + absent + [cells[0][1]]  # a duplicate is read once
    answer = await post_fetch(relay, beta, asked, known_size=1, queries=queries)
    head = verified_head(answer.log, key)
    assert head.size == size

    # Cells in the order asked, each proved against the one head; the spent slot listed.
    assert [c.slot for c in answer.cells] == [c[1] for c in cells[:3]]
    places = answer.places()
    for tenant, slot, cell in cells[:3]:
        assert answer.cell_map()[slot] == cell
        check_place(answer.log, key, tenant, slot, cell, places[slot])
    assert set(answer.log.leaves) == {p.leaf_index for p in places.values()}
    assert answer.spent == (spent_slot,)
    # The statement of absence names exactly the empty slots, at the answer's head.
    absence = answer.absence()
    assert absence is not None
    absence.verify(key)
    assert absence.head == head and absence.tenant_id == beta.tenant_id
    assert absence.slots == tuple(sorted(absent))
    assert absence.spent == (spent_slot,)  # signed: the relay answers for what it calls spent
    past = (await relay.get("/v1/log/head?size=1")).json()
    old_root = bytes.fromhex(past["root"])
    verify_consistency(1, size, old_root, head.root, answer.log.consistency)

    assert answer.answers_match(queries) and all(a.ok for a in answer.answers)
    by_kind = answer.answers
    assert by_kind[0].payload == b""
    verify_consistency(1, size, old_root, head.root, decode_consistency(by_kind[1].payload))
    assert by_kind[2].payload.hex() == past["compact_head"]
    leaf, batch_proof, inclusion = decode_entry(by_kind[3].payload)
    entry = (
        await relay.get(
            f"/v1/log/proof/entry?leaf_index={leaf_index}&batch_position={position}"
            f"&tree_size={size}"
        )
    ).json()
    assert leaf.hex() == entry["leaf"]
    assert [h.hex() for h in batch_proof] == entry["batch_proof"]
    assert [h.hex() for h in inclusion] == entry["inclusion_proof"]
    # ABSENCE of a full slot: the cell with everything that proves it, self-contained.
    read = decode_slot_read(by_kind[4].payload)
    assert read.cell == cells[0][2] and read.place is not None
    verify_cell_receipt(
        tenant_id=beta.tenant_id,
        slot=cells[0][1],
        cell=cells[0][2],
        leaf=read.leaf,
        batch_position=read.place.batch_position,
        batch_proof=read.place.batch_proof,
        inclusion_proof=read.inclusion_proof,
        head=head,
    )
    # ABSENCE of an empty slot: a statement for that slot alone, at the same head.
    lone_read = decode_slot_read(by_kind[5].payload)
    statement = Absence.decode(lone_read.absence)
    statement.verify(key)
    assert statement.slots == (lone,) and statement.head == head and lone_read.cell is None
    # ABSENCE of an acknowledged slot: signed as spent, at the same head.
    spent_read = Absence.decode(decode_slot_read(by_kind[6].payload).absence)
    spent_read.verify(key)
    assert spent_read.spent == (spent_slot,) and spent_read.slots == ()
    assert spent_read.head == head
    assert by_kind[7].payload.hex() == (await relay.get("/v1/log/leaves/0")).json()["leaf"]
    reads = answer.slot_reads(queries)
    assert set(reads) == {cells[0][1], lone, spent_slot}


async def test_a_compact_deposit_is_answered_with_each_hash_once(
    relay: httpx.AsyncClient,
) -> None:
    beta = await register(relay, "mission-beta")
    for _ in range(40):  # a log of some leaves: proofs of a round that share hashes
        last = await post_deposit(relay, [(beta.tenant_id, new_slot(), new_cell())])
    head = last.log.head()
    assert head is not None
    cells = [(beta.tenant_id, new_slot(), new_cell()) for _ in range(2)]
    batch = DepositBatch(head.size - 1, tuple(DepositCell(*c) for c in cells), compact=True)
    body = batch.encode()
    r = await relay.post("/v1/batch/deposit", content=body, headers=OCTET)
    assert r.status_code == 200
    assert r.content[0] == 2
    answer = DepositBatchAnswer.decode(r.content)
    assert len(answer.encode()) > len(r.content)  # the same answer, whole, is longer
    key = await relay_key(relay)
    verified_head(answer.log, key)
    assert answer.log.consistency  # from the size sent
    for (tenant, slot, cell), place in zip(cells, answer.places(), strict=True):
        assert place is not None
        check_place(answer.log, key, tenant, slot, cell, place)


async def test_a_compact_fetch_says_the_same_in_fewer_bytes(relay: httpx.AsyncClient) -> None:
    """A version 3 fetch is answered compactly; rebuilt with the slots asked, the
    answer is the full one, its statement of absence the one the relay signed."""
    beta = await register(relay, "mission-beta")
    cells = [(beta.tenant_id, new_slot(), new_cell()) for _ in range(3)]
    await post_deposit(relay, cells)
    spent_slot = cells[2][1]
    r = await relay.post(beta.path("ack"), json={"slots": [spent_slot.hex()]}, headers=beta.auth)
    assert r.json() == {"removed": 1}
    asked = (cells[0][1], new_slot(), cells[1][1], spent_slot, new_slot(), cells[0][1])
    queries = (Query.none(), Query.leaf(0))
    full_body = FetchBatch(1, 64, asked, queries).encode()
    compact_body = FetchBatch(1, 64, asked, queries, compact=True).encode()
    assert len(compact_body) == len(full_body)  # the request costs nothing more
    raws = []
    for body in (full_body, compact_body):
        r = await relay.post(beta.path("batch/fetch"), content=body, headers={**OCTET, **beta.auth})
        assert r.status_code == 200
        raws.append(r.content)
    full = FetchBatchAnswer.decode(raws[0], 64)
    compact = FetchBatchAnswer.decode_compact(raws[1], asked, beta.tenant_id, 64)
    assert raws[1][0] == 2 and len(raws[1]) < len(raws[0])
    assert compact.cells == full.cells and compact.spent == full.spent == (spent_slot,)
    assert compact.log == full.log and compact.answers == full.answers
    key = await relay_key(relay)
    absence = compact.absence()
    assert absence is not None
    absence.verify(key)
    assert absence.slots == tuple(sorted((asked[1], asked[4])))
    assert absence.spent == (spent_slot,)
    # The same clock, the same read: the rebuilt statement is the one sent whole.
    assert compact.absent == full.absent
    # Without the client's tenant, the statement rebuilt is not the one signed.
    other = FetchBatchAnswer.decode_compact(raws[1], asked, "mission-gamma", 64).absence()
    assert other is not None
    with pytest.raises(SignatureError):
        other.verify(key)


async def test_shared_answers_send_each_batchs_proof_once_and_prove_the_same(
    relay: httpx.AsyncClient,
) -> None:
    """A version 3 deposit and a version 4 fetch are answered with each batch's
    proof once; rebuilt from the cells, the answers are the compact ones and
    every place verifies."""
    beta = await register(relay, "mission-beta")
    for _ in range(5):  # a few leaves before, so the log proofs are not empty
        await post_deposit(relay, [(beta.tenant_id, new_slot(), new_cell())])
    cells = [(beta.tenant_id, new_slot(), new_cell()) for _ in range(5)]
    key = await relay_key(relay)
    raws, answers = [], []
    for shared in (False, True):
        batch = DepositBatch(5, tuple(DepositCell(*c) for c in cells), True, shared)
        r = await relay.post("/v1/batch/deposit", content=batch.encode(), headers=OCTET)
        assert r.status_code == 200 and r.content[0] == (3 if shared else 2)
        raws.append(r.content)
        answers.append(DepositBatchAnswer.decode(r.content, batch))
    # The second deposit held them already: the same places, said in fewer bytes.
    assert [r.status for r in answers[1].results] == [200] * 5
    assert [r.place for r in answers[1].results] == [r.place for r in answers[0].results]
    assert len(raws[1]) < len(raws[0]) - 5 * 32
    for (tenant, slot, cell), place in zip(cells, answers[1].places(), strict=True):
        assert place is not None
        check_place(answers[1].log, key, tenant, slot, cell, place)

    asked = (*(c[1] for c in cells), new_slot())
    fetched = []
    for shared in (False, True):
        body = FetchBatch(5, 1, asked, (), compact=True, shared=shared).encode()
        r = await relay.post(beta.path("batch/fetch"), content=body, headers={**OCTET, **beta.auth})
        assert r.status_code == 200 and r.content[0] == (3 if shared else 2)
        fetched.append(FetchBatchAnswer.decode_compact(r.content, asked, beta.tenant_id, 1))
        raws.append(r.content)
    assert fetched[1].cells == fetched[0].cells and fetched[1].log == fetched[0].log
    assert len(raws[3]) < len(raws[2])
    for (tenant, slot, cell), c in zip(cells, fetched[1].cells, strict=True):
        place = fetched[1].places()[c.slot]
        check_place(fetched[1].log, key, tenant, slot, cell, place)


async def test_the_same_cell_twice_in_a_shared_deposit_is_answered_in_one_place(
    relay: httpx.AsyncClient,
) -> None:
    beta = await register(relay, "mission-beta")
    cell = (beta.tenant_id, new_slot(), new_cell())
    batch = DepositBatch(0, (DepositCell(*cell), DepositCell(*cell)), True, True)
    r = await relay.post("/v1/batch/deposit", content=batch.encode(), headers=OCTET)
    assert r.status_code == 200
    answer = DepositBatchAnswer.decode(r.content, batch)
    assert all(result.stored for result in answer.results)
    first, second = answer.places()
    assert first is not None and first == second
    check_place(answer.log, await relay_key(relay), *cell, first)


async def test_queries_the_relay_cannot_answer_are_refused_one_by_one(
    relay: httpx.AsyncClient,
) -> None:
    beta = await register(relay, "mission-beta")
    await post_deposit(relay, [(beta.tenant_id, new_slot(), new_cell()) for _ in range(2)])
    size = verified_head((await post_fetch(relay, beta, [])).log, await relay_key(relay)).size
    queries = [
        Query.consistency(0, 1),
        Query.consistency(2, 1),
        Query.consistency(1, size + 1),
        Query.head_at(0),
        Query.head_at(size + 1),
        Query.entry(0, 7, size),  # no such member
        Query.entry(0, 0, size + 1),
        Query.leaf(size),
        Query.leaf(1 << 63),
        Query.consistency(1, 1 << 63),
        Query.leaf(0),  # still answered
    ]
    answer = await post_fetch(relay, beta, [], known_size=size, queries=queries)
    assert answer.answers_match(queries)
    assert [a.ok for a in answer.answers] == [False] * 10 + [True]
    for a in answer.answers[:-1]:
        assert a.reason and a.reason.isascii() and len(a.reason) <= 200
    assert "retention" in answer.answers[5].reason
    assert "2**63" in answer.answers[8].reason


class FlakyStore(MemoryRelayStore):
    """A memory store whose deposits fail at chosen slots, and whose head can fail."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: set[bytes] = set()
        self.no_head = False

    async def deposit(self, tenant_id: str, slot: bytes, cell: bytes, now: int) -> DepositResult:
        if slot in self.broken:
            raise StoreUnavailable("the test store failed this deposit")
        return await super().deposit(tenant_id, slot, cell, now)

    async def compact_head(self) -> bytes:
        if self.no_head:
            raise StoreUnavailable("the test store cannot sign a head")
        return await super().compact_head()


async def test_a_store_failure_refuses_only_its_cell_and_a_missing_head_the_batch(
    settings: RelaySettings, clock: Clock
) -> None:
    store = FlakyStore()
    async for http in running(create_app(settings, store, clock=clock)):
        beta = await register(http, "mission-beta")
        cells = [(beta.tenant_id, new_slot(), new_cell()) for _ in range(3)]
        store.broken.add(cells[1][1])
        answer = await post_deposit(http, cells)
        assert [r.status for r in answer.results] == [201, 503, 201]
        assert answer.places()[0] is not None and answer.places()[1] is None
        # Stored cells without a head to prove them: the whole batch is 503, nothing lost.
        store.broken.clear()
        store.no_head = True
        body = DepositBatch(0, tuple(DepositCell(*c) for c in cells)).encode()
        r = await http.post("/v1/batch/deposit", content=body, headers=OCTET)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        # Nothing stored, nothing to prove: the answer goes without a head.
        refused = await post_deposit(http, [("mission-nobody", new_slot(), new_cell())])
        assert [r.status for r in refused.results] == [404] and refused.log == LogBundle()
        store.no_head = False
        again = await post_deposit(http, cells)  # the 503 batch had stored its cells
        assert [r.status for r in again.results] == [200, 200, 200]
        assert all(p is not None for p in again.places())


# -- HTTP behaviour (memory store) -------------------------------------------------------


@pytest.mark.parametrize("pad_to", [0, 1, 100, 512, 65536])
async def test_the_fetch_answer_is_padded_to_a_multiple_of_pad_to(
    http: httpx.AsyncClient, alpha: Tenant, pad_to: int
) -> None:
    await post_deposit(http, [(alpha.tenant_id, new_slot(), new_cell())])
    body = FetchBatch(0, pad_to, (new_slot(),), (Query.none(),) * 4).encode()
    r = await http.post(alpha.path("batch/fetch"), content=body, headers={**OCTET, **alpha.auth})
    assert r.status_code == 200
    assert len(r.content) % max(pad_to, 1) == 0
    unpadded = FetchBatchAnswer.decode(r.content, pad_to).encode()
    assert len(r.content) - len(unpadded) < max(pad_to, 1)


@pytest.mark.parametrize("auth", [None, "Bearer " + "A" * 43, "Basic abc"])
async def test_a_fetch_needs_the_tenants_credential(
    http: httpx.AsyncClient, alpha: Tenant, auth: str | None
) -> None:
    body = FetchBatch(0, 0, (), ()).encode()
    headers = {**OCTET, **({"Authorization": auth} if auth else {})}
    wrong = await http.post(alpha.path("batch/fetch"), content=body, headers=headers)
    unknown = await http.post(
        "/v1/tenants/mission-nobody/batch/fetch", content=body, headers={**OCTET, **alpha.auth}
    )
    for r in (wrong, unknown):
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == unknown.json()


async def test_batch_bodies_have_their_own_limits(
    http: httpx.AsyncClient, alpha: Tenant, settings: RelaySettings
) -> None:
    # Twenty 4 KiB cells are over the 64 KiB body limit, and well within the batch limit.
    cells = [(alpha.tenant_id, new_slot(), new_cell()) for _ in range(20)]
    assert len(DepositBatch(0, tuple(DepositCell(*c) for c in cells)).encode()) > (
        settings.body_limit
    )
    assert [r.status for r in (await post_deposit(http, cells)).results] == [201] * 20
    over = settings.batch_deposit_limit + 1
    r = await http.post("/v1/batch/deposit", content=bytes(over), headers=OCTET)
    assert r.status_code == 413
    over = settings.batch_fetch_limit + 1
    r = await http.post(
        alpha.path("batch/fetch"), content=bytes(over), headers={**OCTET, **alpha.auth}
    )
    assert r.status_code == 413


async def test_a_body_over_the_limit_is_refused_before_it_is_read(
    http: httpx.AsyncClient, settings: RelaySettings
) -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield bytes(65536)

    headers = {**OCTET, "Content-Length": str(settings.batch_deposit_limit + 1)}
    r = await http.post("/v1/batch/deposit", content=b"", headers=headers)
    assert r.status_code == 413
    r = await http.post("/v1/batch/deposit", content=endless(), headers=OCTET)
    assert r.status_code == 413


async def test_malformed_bodies_are_400_and_echo_nothing(make_app: AppFactory) -> None:
    alpha_slot = b"\xab" * 32
    async for http in running(make_app(max_batch=2)):
        alpha = await register(http, "mission-alpha")
        good = DepositBatch(0, (DepositCell(alpha.tenant_id, alpha_slot, new_cell()),)).encode()
        three = DepositBatch(
            0, tuple(DepositCell(alpha.tenant_id, new_slot(), b"x") for _ in range(3))
        ).encode()
        # Versions 1 to 3 (the compact and the shared answers) are known; 4 is not.
        for body in (b"", b"\x04" + good[1:], good[:-1], good + b"\x00", three):
            r = await http.post("/v1/batch/deposit", content=body, headers=OCTET)
            assert r.status_code == 400
            text = error_of(r)
            assert alpha.tenant_id not in text and alpha_slot.hex() not in text
        fetch = FetchBatch(0, 0, (alpha_slot,), (Query.none(),)).encode()
        too_many = FetchBatch(0, 0, (new_slot(),) * 3, ()).encode()
        for body in (b"", fetch[:-1], fetch + b"\x00", fetch[:-33] + b"\x09" + bytes(32), too_many):
            r = await http.post(
                alpha.path("batch/fetch"), content=body, headers={**OCTET, **alpha.auth}
            )
            assert r.status_code == 400
            assert alpha_slot.hex() not in error_of(r)
        r = await http.post(
            "/v1/batch/deposit", content=good, headers={"Content-Type": "text/plain"}
        )
        assert r.status_code == 415


async def test_a_batch_takes_one_token_of_each_tenant_it_names(make_app: AppFactory) -> None:
    async for http in running(make_app(tenant_rate=0.001, tenant_burst=1)):
        alpha = await register(http, "mission-alpha")
        beta = await register(http, "mission-beta")
        first = await post_deposit(
            http,
            [(alpha.tenant_id, new_slot(), new_cell()) for _ in range(3)]
            + [(beta.tenant_id, new_slot(), new_cell())],
        )
        assert [r.status for r in first.results] == [201] * 4
        second = await post_deposit(
            http, [(alpha.tenant_id, new_slot(), new_cell()), ("mission-nobody", new_slot(), b"")]
        )
        assert [r.status for r in second.results] == [429, 400]


async def test_metrics_name_the_batch_routes_and_nothing_else(
    http: httpx.AsyncClient, alpha: Tenant
) -> None:
    slot = new_slot()
    await post_deposit(http, [(alpha.tenant_id, slot, new_cell()), ("No_Body", new_slot(), b"")])
    await post_fetch(http, alpha, [slot])
    text = (await http.get("/metrics")).text
    assert 'route="batch_deposit",status="200"' in text
    assert 'route="batch_fetch",status="200"' in text
    assert 'backchannel_relay_batch_cells_count{op="deposit"} 1.0' in text
    assert 'backchannel_relay_deposits_total{outcome="malformed"} 1.0' in text
    assert slot.hex() not in text and alpha.tenant_id not in text


# -- the client ------------------------------------------------------------------------


async def test_the_client_exchanges_in_two_requests_with_few_headers(
    make_app: AppFactory,
) -> None:
    app = make_app()
    seen: list[httpx.Request] = []

    class Recording(httpx.ASGITransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return await super().handle_async_request(request)

    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://relay"
        ) as http:
            beta = await register(http, "mission-beta")
        transport = Recording(app=app)
        async with RelayClient("http://relay", beta.tenant_id, beta.credential, transport) as c:
            cells = [(beta.tenant_id, new_slot(), new_cell()) for _ in range(3)]
            stored = await c.batch_deposit(cells, 0)
            assert [r.status for r in stored.results] == [201] * 3
            queries = [Query.absence(new_slot()), Query.none()]
            got = await c.batch_fetch([s for _, s, _ in cells], 1, queries, 512)
    assert got.cell_map() == {s: cell for _, s, cell in cells}
    assert [a.kind for a in got.answers] == [QueryKind.ABSENCE, QueryKind.NONE]
    assert len(seen) == 2
    deposit_headers = set(seen[0].headers.keys())
    assert deposit_headers == {"host", "content-type", "content-length"}
    assert set(seen[1].headers.keys()) == deposit_headers | {"authorization"}
    # Little more than the cells themselves travels.
    assert len(seen[0].content) < 3 * (CELL + 110)


async def test_the_client_calls_a_malformed_answer_malformed() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("deposit"):
            return httpx.Response(200, content=b"\x01\x00\x05")  # five results promised
        return httpx.Response(200, content=FetchBatchAnswer(()).encode_compact(()))  # no answers

    transport = httpx.MockTransport(answer)
    async with RelayClient("http://relay", "mission-beta", "A" * 43, transport) as c:
        with pytest.raises(RelayRefusal, match="malformed"):
            await c.batch_deposit([("mission-beta", new_slot(), new_cell())], 0)
        with pytest.raises(RelayRefusal, match="malformed"):
            await c.batch_fetch([], 0, [Query.none()], 0)
        with pytest.raises(RelayRefusal, match="malformed"):
            await c.batch_fetch([], 0, [], 512)  # not padded as asked


async def test_the_client_refuses_an_acknowledgement_of_another_cell() -> None:
    from backchannel.protocol.batch import CellResult

    def answer(request: httpx.Request) -> httpx.Response:
        lie = DepositBatchAnswer((CellResult(201, hashlib.sha256(b"other").digest()),), LogBundle())
        return httpx.Response(200, content=lie.encode())

    async with RelayClient("http://relay", transport=httpx.MockTransport(answer)) as c:
        with pytest.raises(RelayRefusal, match="different cell"):
            await c.batch_deposit([("mission-beta", new_slot(), new_cell())], 0)
