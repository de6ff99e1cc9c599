"""The relay's signed statements over HTTP: absences, past heads, entry proofs.

Through the in-process app and the memory store (one log leaf per deposit).
Where it concerns security the tests are attacks: an honest relay's answers
must never combine into a proof of misbehaviour against it, and a lying
relay's must (relay-log-v1 §3, §6).
"""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

from backchannel.crypto.signing import SigningKey, VerifyKey
from backchannel.errors import SignatureError
from backchannel.protocol import merkle
from backchannel.protocol.constants import MIN_RETENTION_SECONDS
from backchannel.protocol.evidence import (
    REWIND,
    drop_evidence,
    encode_evidence,
    slot_conflict_evidence,
    verify_misbehaviour,
)
from backchannel.protocol.merkle import ProofError, TreeHead
from backchannel.protocol.misbehaviour import (
    Absence,
    EntryProof,
    LogLeaf,
    SignedHead,
    open_signed_head,
    relay_key_fingerprint,
    relay_key_from_bytes,
)
from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore

from .conftest import AppFactory, Clock, Tenant, deposit, new_cell, new_slot, register, running

GRANULARITY = 60  # RelaySettings.time_granularity_seconds, the default


def one_line_error(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"}
    text = body["error"]
    assert isinstance(text, str) and text and "\n" not in text
    return text


async def relay_key(http: httpx.AsyncClient) -> VerifyKey:
    r = await http.get("/v1/log/key")
    assert r.status_code == 200
    body = r.json()
    key = relay_key_from_bytes(bytes.fromhex(body["ed25519"]) + bytes.fromhex(body["mldsa65"]))
    assert relay_key_fingerprint(key).hex() == body["fingerprint"]
    return key


async def fetch(http: httpx.AsyncClient, tenant: Tenant, slots: list[str]) -> dict[str, object]:
    r = await http.post(tenant.path("fetch"), json={"slots": slots}, headers=tenant.auth)
    assert r.status_code == 200, r.text
    log = r.json()["log"]
    assert isinstance(log, dict)
    return log


def absence_of(log: dict[str, object]) -> Absence:
    raw = log["absent"]
    assert isinstance(raw, str)
    return Absence.decode(bytes.fromhex(raw))


def head_of(log: dict[str, object], key: VerifyKey) -> TreeHead:
    signed = log["signed_head"]
    assert isinstance(signed, str)
    return open_signed_head(bytes.fromhex(signed), key)


class Deposited:
    """A cell deposited over HTTP and the log part of the relay's answer."""

    def __init__(self, tenant: str, slot: str, cell: bytes, answer: dict[str, object]) -> None:
        self.tenant = tenant
        self.slot = slot
        self.cell = cell
        log = answer["log"]
        assert isinstance(log, dict)
        self.log: dict[str, object] = log
        signed, index, position = log["signed_head"], log["leaf_index"], log["batch_position"]
        assert isinstance(signed, str) and isinstance(index, int) and isinstance(position, int)
        self.signed_head = bytes.fromhex(signed)
        self.leaf_index = index
        self.position = position

    @property
    def cell_id(self) -> bytes:
        return hashlib.sha256(self.cell).digest()

    async def entry(self, http: httpx.AsyncClient) -> EntryProof:
        """The entry proof against the head of the deposit answer, from the answer itself."""
        leaf = (await http.get(f"/v1/log/leaves/{self.leaf_index}")).json()["leaf"]
        batch, inclusion = self.log["batch_proof"], self.log["inclusion_proof"]
        assert isinstance(batch, list) and isinstance(inclusion, list)
        return EntryProof(
            self.cell_id,
            bytes.fromhex(leaf),
            self.position,
            tuple(bytes.fromhex(x) for x in batch),
            tuple(bytes.fromhex(x) for x in inclusion),
        )


async def put(
    http: httpx.AsyncClient, tenant: str, slot: str | None = None, cell: bytes | None = None
) -> Deposited:
    slot = slot or new_slot()
    cell = cell or new_cell()
    r = await deposit(http, tenant, slot, cell)
    assert r.status_code == 201, r.text
    return Deposited(tenant, slot, cell, r.json())


# -- statements of absence ----------------------------------------------------------


async def test_fetch_signs_the_absence_of_exactly_the_empty_slots(
    http: httpx.AsyncClient, alpha: Tenant, beta: Tenant, clock: Clock
) -> None:
    key = await relay_key(http)
    for _ in range(3):
        await put(http, beta.tenant_id)
        await put(http, alpha.tenant_id)
    present = await put(http, alpha.tenant_id)
    clock.now += 7 * 60 + 13
    empty = [new_slot(), new_slot()]
    log = await fetch(http, alpha, [empty[0], present.slot, empty[1]])
    head = head_of(log, key)
    assert head.size == 7
    absence = absence_of(log)
    absence.verify(key)
    assert absence.head == head
    assert absence.slots == tuple(sorted(bytes.fromhex(s) for s in empty))
    assert absence.tenant_id == alpha.tenant_id
    assert absence.served_at == int(clock.now) // GRANULARITY * GRANULARITY
    cells = log["cells"]
    assert isinstance(cells, dict) and set(cells) == {present.slot}
    # The statement is the relay's: no other key verifies it.
    with pytest.raises(SignatureError):
        absence.verify(SigningKey(bytes(32), bytes(32)).verify_key)


async def test_fetch_of_present_slots_carries_no_absence(
    http: httpx.AsyncClient, alpha: Tenant
) -> None:
    cells = [await put(http, alpha.tenant_id) for _ in range(3)]
    log = await fetch(http, alpha, [c.slot for c in cells])
    assert "absent" not in log
    log = await fetch(http, alpha, [])
    assert "absent" not in log
    # Asking twice for one empty slot names it once.
    slot = new_slot()
    log = await fetch(http, alpha, [slot, cells[0].slot, slot])
    assert absence_of(log).slots == (bytes.fromhex(slot),)


async def test_an_honest_relay_proves_no_drop_against_itself(
    http: httpx.AsyncClient, alpha: Tenant, beta: Tenant
) -> None:
    """Every pairing of a real absence with a real entry is refused as a drop."""
    key = await relay_key(http)
    await put(http, alpha.tenant_id)
    slot = new_slot()
    # The slot is empty now; the cell comes after.
    before = await fetch(http, alpha, [slot])
    cell = await put(http, alpha.tenant_id, slot)
    entry = await cell.entry(http)
    assert entry.verify(alpha.tenant_id, bytes.fromhex(slot), head_of(cell.log, key))

    def drop(log: dict[str, object]) -> bytes:
        signed = log["signed_head"]
        assert isinstance(signed, str)
        return drop_evidence(
            key,
            cell.signed_head,
            bytes.fromhex(signed),
            absence_of(log),
            bytes.fromhex(slot),
            entry,
        )

    with pytest.raises(ProofError, match="logged after"):
        verify_misbehaviour(drop(before))
    # Now the slot holds the cell: the relay names only the other, empty, slot.
    after = await fetch(http, alpha, [slot, new_slot()])
    assert bytes.fromhex(slot) not in absence_of(after).slots
    with pytest.raises(ProofError, match="does not name"):
        verify_misbehaviour(drop(after))
    # Another tenant's slot of the same address is empty, and honestly said so:
    # that is no drop of alpha's cell.
    theirs = await fetch(http, beta, [slot])
    assert absence_of(theirs).tenant_id == beta.tenant_id
    assert absence_of(theirs).slots == (bytes.fromhex(slot),)
    with pytest.raises(ProofError):
        verify_misbehaviour(drop(theirs))


async def test_a_relay_that_hides_a_cell_is_caught(
    http: httpx.AsyncClient, alpha: Tenant, store: MemoryRelayStore
) -> None:
    """The statement a dropping relay must make is evidence against it.

    Simulated by taking the cell out of the store behind the relay's back (as a
    relay that drops it would), well within the retention hour.
    """
    key = await relay_key(http)
    cell = await put(http, alpha.tenant_id)
    await put(http, alpha.tenant_id)
    del store._cells[alpha.tenant_id][bytes.fromhex(cell.slot)]
    log = await fetch(http, alpha, [cell.slot])
    signed = log["signed_head"]
    assert isinstance(signed, str)
    blob = drop_evidence(
        key,
        cell.signed_head,
        bytes.fromhex(signed),
        absence_of(log),
        bytes.fromhex(cell.slot),
        await cell.entry(http),
    )
    line = verify_misbehaviour(blob)
    assert line.startswith("drop:") and repr(alpha.tenant_id) in line


# -- past heads ------------------------------------------------------------------------


async def test_every_past_head_is_the_one_signed_at_that_size(
    http: httpx.AsyncClient, alpha: Tenant, beta: Tenant, clock: Clock
) -> None:
    key = await relay_key(http)
    empty = await http.get("/v1/log/head", params={"size": 1})
    assert empty.status_code == 404  # the log has not reached that size yet
    one_line_error(empty)
    carried: dict[int, bytes] = {}
    # The clock runs, stands still, and steps back once: heads never go back.
    for step in (0, 60, 0, 125, -600, 60, 3600, 1, 60, 60, 0):
        clock.now += step
        d = await put(http, alpha.tenant_id if step % 2 else beta.tenant_id)
        carried[d.leaf_index + 1] = d.signed_head
    latest = (await http.get("/v1/log/head")).json()
    full = SignedHead.decode(bytes.fromhex(latest["signed_head"]))
    full.verify(key)
    assert full.is_full
    size = full.head.size
    assert size == len(carried) == 11
    heads: list[bytes] = []
    for n in range(1, size + 1):
        r = await http.get("/v1/log/head", params={"size": n})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"size", "root", "timestamp", "compact_head"}
        compact = bytes.fromhex(body["compact_head"])
        assert len(compact) == 113
        head = open_signed_head(compact, key)
        assert (head.size, head.root.hex(), head.timestamp) == (
            n,
            body["root"],
            body["timestamp"],
        )
        # Exactly the statement the deposit answer carried when the log had this size.
        assert compact == carried[n]
        # Its timestamp is leaf n - 1's time.
        leaf = bytes.fromhex((await http.get(f"/v1/log/leaves/{n - 1}")).json()["leaf"])
        assert head.timestamp == LogLeaf.decode(leaf).coarse_time
        # And it is a prefix of the latest full head's history.
        if n < size:
            proof = (
                await http.get("/v1/log/proof/consistency", params={"first": n, "second": size})
            ).json()["proof"]
            merkle.verify_consistency(
                n, size, head.root, full.head.root, [bytes.fromhex(p) for p in proof]
            )
        else:
            assert head == full.head
            assert compact == full.compact().encode()
        heads.append(compact)
    times = [open_signed_head(c, key).timestamp for c in heads]
    assert times == sorted(times)
    # No two of these heads make a rewind against the relay.
    for i in range(size):
        for j in range(i):
            with pytest.raises(ProofError):
                verify_misbehaviour(encode_evidence(REWIND, key, heads[i], heads[j]))


@pytest.mark.parametrize(
    ("size", "status"),
    [
        ("0", 400),  # no head of the empty tree is ever given
        ("12", 404),  # well-formed, but the log has not reached it
        ("99999999", 404),
        ("-1", 400),
        ("x", 400),
        ("", 400),
        ("1.0", 400),
    ],
)
async def test_past_head_outside_the_log_is_refused(
    http: httpx.AsyncClient, alpha: Tenant, size: str, status: int
) -> None:
    for _ in range(11):
        await put(http, alpha.tenant_id)
    r = await http.get(f"/v1/log/head?size={size}")
    assert r.status_code == status
    one_line_error(r)


async def test_past_head_parameter_given_twice_is_refused(
    http: httpx.AsyncClient, alpha: Tenant
) -> None:
    await put(http, alpha.tenant_id)
    await put(http, alpha.tenant_id)
    r = await http.get("/v1/log/head?size=1&size=2")
    assert r.status_code == 400
    one_line_error(r)


# -- entry proofs ----------------------------------------------------------------------


async def entry_at(
    http: httpx.AsyncClient, leaf_index: int, position: int, tree_size: int
) -> httpx.Response:
    return await http.get(
        "/v1/log/proof/entry",
        params={"leaf_index": leaf_index, "batch_position": position, "tree_size": tree_size},
    )


def entry_from(body: dict[str, object], cell: bytes) -> EntryProof:
    leaf, batch, inclusion, position = (
        body["leaf"],
        body["batch_proof"],
        body["inclusion_proof"],
        body["batch_position"],
    )
    assert isinstance(leaf, str) and isinstance(position, int)
    assert isinstance(batch, list) and isinstance(inclusion, list)
    return EntryProof(
        hashlib.sha256(cell).digest(),
        bytes.fromhex(leaf),
        position,
        tuple(bytes.fromhex(x) for x in batch),
        tuple(bytes.fromhex(x) for x in inclusion),
    )


async def test_entry_proof_proves_each_deposited_cell(
    http: httpx.AsyncClient, alpha: Tenant, beta: Tenant
) -> None:
    key = await relay_key(http)
    cells = [await put(http, (alpha, beta)[i % 2].tenant_id) for i in range(9)]
    latest = SignedHead.decode(
        bytes.fromhex((await http.get("/v1/log/head")).json()["signed_head"])
    )
    latest.verify(key)
    for d in cells:
        slot = bytes.fromhex(d.slot)
        for head in (latest.head, open_signed_head(d.signed_head, key)):
            r = await entry_at(http, d.leaf_index, d.position, head.size)
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["leaf_index"], body["batch_position"], body["tree_size"]) == (
                d.leaf_index,
                d.position,
                head.size,
            )
            entry = entry_from(body, d.cell)
            leaf = entry.verify(d.tenant, slot, head)
            assert leaf.batch_index == d.leaf_index
            # The same proof says nothing about another cell, slot or tenant.
            other_tenant = beta.tenant_id if d.tenant == alpha.tenant_id else alpha.tenant_id
            for tenant, at, cell in (
                (other_tenant, slot, d.cell),
                (d.tenant, bytes.fromhex(new_slot()), d.cell),
                (d.tenant, slot, new_cell()),
            ):
                with pytest.raises(ProofError):
                    entry_from(body, cell).verify(tenant, at, head)
        # The proof equals the one the deposit answer carried against its own head.
        assert entry_from(
            (await entry_at(http, d.leaf_index, d.position, d.leaf_index + 1)).json(), d.cell
        ) == await d.entry(http)


async def test_entry_proof_outside_the_log_is_refused(
    http: httpx.AsyncClient, alpha: Tenant
) -> None:
    for _ in range(4):
        await put(http, alpha.tenant_id)
    assert (await entry_at(http, 3, 0, 4)).status_code == 200
    for path, status in [
        ("leaf_index=3&batch_position=1&tree_size=4", 404),  # a batch of one cell
        ("leaf_index=0&batch_position=99999&tree_size=4", 404),
        # Well-formed, but no such proof in this log: 404.
        ("leaf_index=4&batch_position=0&tree_size=4", 404),  # beyond the log
        ("leaf_index=4&batch_position=0&tree_size=5", 404),
        ("leaf_index=400&batch_position=0&tree_size=500", 404),
        ("leaf_index=3&batch_position=0&tree_size=3", 404),  # not in that tree
        ("leaf_index=0&batch_position=0&tree_size=0", 400),
        ("leaf_index=0&batch_position=0", 400),
        ("leaf_index=0&tree_size=4", 400),
        ("leaf_index=-1&batch_position=0&tree_size=4", 400),
        ("leaf_index=0&batch_position=x&tree_size=4", 400),
        ("leaf_index=0&leaf_index=1&batch_position=0&tree_size=4", 400),
    ]:
        r = await http.get(f"/v1/log/proof/entry?{path}")
        assert r.status_code == status, (path, r.text)
        one_line_error(r)


# -- the published API -----------------------------------------------------------------


async def test_openapi_lists_the_new_log_endpoints(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    entry = doc["paths"]["/v1/log/proof/entry"]["get"]
    params = {p["name"]: p for p in entry["parameters"]}
    assert set(params) == {"leaf_index", "batch_position", "tree_size"}
    assert all(p["in"] == "query" and p["required"] for p in params.values())
    assert {"200", "400", "404"} <= set(entry["responses"])
    head = doc["paths"]["/v1/log/head"]["get"]
    [size] = [p for p in head["parameters"] if p["name"] == "size"]
    assert size["in"] == "query" and not size.get("required", False)
    assert "400" in head["responses"]
    schemas = doc["components"]["schemas"]
    assert schemas["Cells"]["properties"]["log"] == {"$ref": "#/components/schemas/CellsLog"}
    fetch_log = schemas["CellsLog"]
    assert "absent" in fetch_log["properties"]
    assert "absent" not in fetch_log.get("required", [])


# -- an honest relay's own statements never prove "misbehaviour" ------------------------
#
# Each was once a false proof of misbehaviour built from an honest relay's
# answers (kept as a strict xfail until src/ was fixed).


async def test_an_acknowledged_cell_is_spent_not_absent(
    http: httpx.AsyncClient, alpha: Tenant
) -> None:
    """After an ack the relay says the slot is spent, never that it is empty: an
    honest relay's answers make no proof of a drop. It signs what it calls spent,
    so a relay that hides a cell by calling it acknowledged answers for it."""
    cell = await put(http, alpha.tenant_id)
    other = new_slot()
    r = await http.post(alpha.path("ack"), json={"slots": [cell.slot]}, headers=alpha.auth)
    assert r.json() == {"removed": 1}
    log = await fetch(http, alpha, [cell.slot, other])
    assert log["spent"] == [cell.slot]
    statement = absence_of(log)
    assert statement.slots == (bytes.fromhex(other),)  # only the never-filled slot
    assert statement.spent == (bytes.fromhex(cell.slot),)
    r = await http.post(alpha.path("fetch"), json={"slots": [cell.slot]}, headers=alpha.auth)
    alone = r.json()["log"]
    assert r.json()["cells"] == {} and alone["spent"] == [cell.slot]
    only_spent = absence_of(alone)
    assert only_spent.slots == () and only_spent.spent == (bytes.fromhex(cell.slot),)
    r = await http.post(alpha.path("ack"), json={"slots": [cell.slot]}, headers=alpha.auth)
    assert r.json() == {"removed": 0}  # acknowledged once


async def test_an_acknowledged_slot_takes_no_second_cell(
    http: httpx.AsyncClient, alpha: Tenant
) -> None:
    """Slots are write-once: after an ack a different cell is refused (409), the same
    one is an idempotent retry, so an honest relay never logs two cells in one slot."""
    first = await put(http, alpha.tenant_id)
    await http.post(alpha.path("ack"), json={"slots": [first.slot]}, headers=alpha.auth)
    r = await deposit(http, alpha.tenant_id, first.slot, new_cell())
    assert r.status_code == 409, r.text
    r = await deposit(http, alpha.tenant_id, first.slot, first.cell)
    assert r.status_code == 200 and r.json()["created"] is False
    assert r.json()["log"]["leaf_index"] == first.leaf_index


async def test_a_cell_outlives_its_leaf_time_by_the_retention_despite_a_clock_step_back(
    make_app: AppFactory, clock: Clock
) -> None:
    """A cell's age counts from its batch's time, which never goes backwards: after the
    clock steps back, the cell is kept a full retention past its leaf's time, and the
    absence the relay signs once it is gone proves no drop."""
    app = make_app(retention_seconds=MIN_RETENTION_SECONDS)
    async for http in running(app):
        tenant = await register(http, "mission-clock")
        key = await relay_key(http)
        await put(http, tenant.tenant_id)
        clock.now -= 600  # NTP steps the relay's clock back ten minutes
        cell = await put(http, tenant.tenant_id)
        clock.now += MIN_RETENTION_SECONDS  # an hour by the cell's own deposit time
        await app.state.service.expire_once()
        log = await fetch(http, tenant, [cell.slot])
        assert "absent" not in log and cell.slot in log["cells"]  # still kept
        clock.now += 600 + 60  # an hour and the expiry's one-step grace after its leaf: gone
        await app.state.service.expire_once()
        log = await fetch(http, tenant, [cell.slot])
        blob = drop_evidence(
            key,
            cell.signed_head,
            bytes.fromhex(str(log["signed_head"])),
            absence_of(log),
            bytes.fromhex(cell.slot),
            await cell.entry(http),
        )
        with pytest.raises(ProofError, match="expired"):
            verify_misbehaviour(blob)


async def test_a_clock_stepping_back_after_expiry_proves_nothing(
    make_app: AppFactory, clock: Clock
) -> None:
    """The relay's time never goes backwards: after an expiry, a clock stepped back
    neither dates an absence before the expiry nor a new cell in the freed slot
    within the hour of the old one."""
    app = make_app(retention_seconds=MIN_RETENTION_SECONDS)
    async for http in running(app):
        tenant = await register(http, "mission-step")
        key = await relay_key(http)
        cell = await put(http, tenant.tenant_id)
        clock.now += MIN_RETENTION_SECONDS + 120
        await app.state.service.expire_once()
        clock.now -= 120  # NTP steps the clock back after the expiry
        log = await fetch(http, tenant, [cell.slot])
        assert absence_of(log).served_at >= open_signed_head(cell.signed_head, key).timestamp
        blob = drop_evidence(
            key,
            cell.signed_head,
            bytes.fromhex(str(log["signed_head"])),
            absence_of(log),
            bytes.fromhex(cell.slot),
            await cell.entry(http),
        )
        with pytest.raises(ProofError, match="expired"):
            verify_misbehaviour(blob)
        again = await put(http, tenant.tenant_id, slot=cell.slot)
        blob = slot_conflict_evidence(
            key,
            cell.signed_head,
            again.signed_head,
            tenant.tenant_id,
            bytes.fromhex(cell.slot),
            await cell.entry(http),
            await again.entry(http),
        )
        with pytest.raises(ProofError, match="expired"):
            verify_misbehaviour(blob)


async def test_the_absence_states_the_relay_retention(make_app: AppFactory, clock: Clock) -> None:
    app = make_app(retention_seconds=2 * 86_400)
    async for http in running(app):
        tenant = await register(http, "mission-keeps")
        log = await fetch(http, tenant, [new_slot()])
        assert absence_of(log).retention == 2 * 86_400


# -- the embedded store: batches of many cells -------------------------------------------


async def test_embedded_store_proves_members_of_shared_batches(settings: RelaySettings) -> None:
    """Concurrent deposits share a batch (group commit): every member is proved, and
    the past heads are the ones the deposit answers carried."""
    app = create_app(settings)
    async for http in running(app):
        tenant = await register(http, "mission-batch")
        key = await relay_key(http)
        cells: list[Deposited] = []
        for _ in range(10):  # until group commit has put several cells in one batch
            slots, bodies = [new_slot() for _ in range(16)], [new_cell() for _ in range(16)]
            answers = await asyncio.gather(
                *(deposit(http, tenant.tenant_id, s, c) for s, c in zip(slots, bodies, strict=True))
            )
            for s, c, r in zip(slots, bodies, answers, strict=True):
                assert r.status_code == 201, r.text
                cells.append(Deposited(tenant.tenant_id, s, c, r.json()))
            if any(c.log["batch_size"] != 1 for c in cells):
                break
        shared = [c for c in cells if c.log["batch_size"] != 1]
        assert shared, "group commit never shared a batch"
        raw = (await http.get("/v1/log/head")).json()["signed_head"]
        latest = open_signed_head(bytes.fromhex(raw), key)
        for d in cells:
            # The deposit answer's own proof, against its own head.
            head = open_signed_head(d.signed_head, key)
            (await d.entry(http)).verify(d.tenant, bytes.fromhex(d.slot), head)
            # The relay's entry proof, against the latest head.
            r = await entry_at(http, d.leaf_index, d.position, latest.size)
            assert r.status_code == 200, r.text
            entry = entry_from(r.json(), d.cell)
            assert entry.batch_proof == (await d.entry(http)).batch_proof
            entry.verify(d.tenant, bytes.fromhex(d.slot), latest)
            # One past the batch's last member is no member.
            size = d.log["batch_size"]
            assert isinstance(size, int)
            r = await entry_at(http, d.leaf_index, size, latest.size)
            assert r.status_code == 404
            one_line_error(r)
            # The head at the batch's size is the one the answer carried.
            r = await http.get("/v1/log/head", params={"size": d.leaf_index + 1})
            assert bytes.fromhex(r.json()["compact_head"]) == d.signed_head
        # A fetch of the whole lot and two empty slots: absence at the answer's head.
        empty = sorted(new_slot() for _ in range(2))
        log = await fetch(http, tenant, [*empty, *(c.slot for c in cells[:50])])
        absence = absence_of(log)
        absence.verify(key)
        assert absence.head == head_of(log, key) == latest
        assert absence.slots == tuple(bytes.fromhex(s) for s in empty)
