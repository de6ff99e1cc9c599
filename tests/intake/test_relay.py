"""The relay's intake endpoints refuse what they must: no or stale proof of work,
a closed or unknown intake, a flood from one address or at one tenant, a
stranger reading the queue; and a flood never reaches a tenant's slots."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from backchannel.protocol import intake as pi
from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore

BITS = 8
CLOCK = [1_800_000_000.0]


class Relay:
    def __init__(self, **settings: Any) -> None:
        self.store = MemoryRelayStore()
        base = {"open_registration": True, "intake_pow_bits": BITS, "ip_rate": 0, "tenant_rate": 0}
        self.app = create_app(
            RelaySettings(**{**base, **settings}), self.store, clock=lambda: CLOCK[0],
            background=False,
        )  # fmt: skip
        self.credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        key = pi.intake_private_key(secrets.token_bytes(32), bytes(32))
        self.card = pi.IntakeCard("M", bytes(32), "http://r", "mission-a", key.public_key, BITS)

    def client(self, ip: str = "198.51.100.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(ip, 5000))
        return httpx.AsyncClient(transport=transport, base_url="http://r")

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}

    async def setup(self, is_open: bool = True) -> None:
        async with self.client() as c:
            r = await c.post("/v1/tenants", json={"tenant_id": "mission-a",
                                                  "credential": self.credential})  # fmt: skip
            assert r.status_code == 201
            r = await c.post("/v1/tenants/mission-a/intake/fetch",
                             json={"after": 0, "open": is_open}, headers=self.auth)  # fmt: skip
            assert r.status_code == 200

    def body(self, cell: bytes | None = None, bucket_shift: int = 0, bits: int = BITS) -> dict:
        code = pi.new_reply_code(secrets.token_bytes)
        request = pi.IntakeRequest(pi.Kind.OTHER, "s", secrets.token_hex(8), "", code)
        cell = cell or pi.seal_request(self.card, request)
        bucket = int(CLOCK[0]) // 600 + bucket_shift
        nonce = pi.solve_pow(pi.pow_prefix("mission-a", bucket, cell), bits)
        return {"cell": base64.b64encode(cell).decode(), "bucket": bucket, "nonce": nonce}


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = Relay()
    async with r.app.router.lifespan_context(r.app):
        await r.setup()
        yield r


async def test_a_request_with_its_proof_is_stored_once(relay: Relay) -> None:
    body = relay.body()
    async with relay.client() as c:
        pow_ = (await c.get("/v1/intake/mission-a/pow")).json()
        assert pow_ == {"bits": BITS, "bucket": int(CLOCK[0]) // 600, "bucket_seconds": 600}
        first = await c.post("/v1/intake/mission-a/requests", json=body)
        again = await c.post("/v1/intake/mission-a/requests", json=body)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json() == {"stored": True}  # the sender learns no number
        rows = await c.post("/v1/tenants/mission-a/intake/fetch", json={"after": 0},
                            headers=relay.auth)  # fmt: skip
        assert [r["seq"] for r in rows.json()["requests"]] == [1]
        # JSON's 0.0 is the integer 0 (the document says integer); 0.5 is not; null
        # for 'open' states nothing.
        for after, status in ((0.0, 200), (0.5, 400)):
            r = await c.post("/v1/tenants/mission-a/intake/fetch",
                             json={"after": after, "open": None}, headers=relay.auth)  # fmt: skip
            assert r.status_code == status, r.text
        assert (await c.get("/v1/intake/mission-a/pow")).status_code == 200  # still open
    # Last bucket's proof still holds; older, or a future one, does not.
    async with relay.client() as c:
        assert (await c.post("/v1/intake/mission-a/requests",
                             json=relay.body(bucket_shift=-1))).status_code == 201  # fmt: skip
        for shift in (-2, 1):
            r = await c.post("/v1/intake/mission-a/requests", json=relay.body(bucket_shift=shift))
            assert r.status_code == 400 and "proof of work" in r.json()["error"]


async def test_a_request_without_the_work_is_refused(relay: Relay) -> None:
    body = relay.body()
    cell = base64.b64decode(body["cell"])
    prefix = pi.pow_prefix("mission-a", body["bucket"], cell)
    wrong = next(n for n in range(1 << 16) if not pi.pow_ok(prefix, n, BITS))
    # Another cell of the right size for which this nonce is no proof (at 8 bits
    # one cell in 256 would pass with it by chance, so it is chosen, not assumed).
    other = next(
        o for o in (bytes([i]) * len(cell) for i in range(256))
        if not pi.pow_ok(pi.pow_prefix("mission-a", body["bucket"], o), body["nonce"], BITS)
    )  # fmt: skip
    async with relay.client() as c:
        for bad in (
            {**body, "nonce": wrong},
            {**body, "cell": base64.b64encode(other).decode()},  # proof of another cell
            {**body, "cell": base64.b64encode(cell[:-1]).decode()},
            {**body, "nonce": -1},
            {**body, "nonce": True},
            {"cell": body["cell"]},
        ):
            r = await c.post("/v1/intake/mission-a/requests", json=bad)
            assert r.status_code == 400, bad
    assert await relay.store.intake_fetch("mission-a", 0, 10) == []
    assert relay.app.state.service.metrics.intake.labels("bad_pow")._value.get() == 2


async def test_a_closed_or_unknown_intake_takes_nothing() -> None:
    r = Relay()
    async with r.app.router.lifespan_context(r.app):
        await r.setup(is_open=False)
        async with r.client() as c:
            for path in ("/v1/intake/mission-a/requests", "/v1/intake/nobody-here/requests"):
                answer = await c.post(path, json=r.body())
                assert answer.status_code == 404
            assert (await c.get("/v1/intake/mission-a/pow")).status_code == 404
            slot = secrets.token_bytes(32).hex()
            assert (await c.get(f"/v1/intake/mission-a/answers/{slot}")).status_code == 404


async def test_an_answer_read_tells_a_closed_intake_from_no_answer() -> None:
    """The two 404s of an answer's read, by their documented bodies (relay-api.md):
    a closed intake (or no such tenant) withholds even an answer already deposited."""
    r = Relay()
    async with r.app.router.lifespan_context(r.app):
        await r.setup(is_open=True)
        code = pi.new_reply_code(secrets.token_bytes)
        name = pi.reply_id(r.card, code)
        cell = pi.seal_answer(r.card, code, "Yes.", secrets.token_bytes)
        await r.store.deposit("mission-a", pi.answer_slot(name), cell, 0)
        none = secrets.token_bytes(32).hex()
        async with r.client() as c:
            assert (await c.get(f"/v1/intake/mission-a/answers/{name.hex()}")).status_code == 200
            answer = await c.get(f"/v1/intake/mission-a/answers/{none}")
            assert answer.status_code == 404
            assert answer.json() == {"error": "no answer under this reply code (yet)"}
            closed = {
                "error": "this mission takes no requests on this relay; check the intake card"
            }
            for path in (f"mission-a/answers/{name.hex()}", f"nobody-here/answers/{none}"):
                if path.startswith("mission-a"):
                    fetch = {"after": 0, "open": False}
                    await c.post("/v1/tenants/mission-a/intake/fetch", json=fetch, headers=r.auth)
                answer = await c.get(f"/v1/intake/{path}")
                assert (answer.status_code, answer.json()) == (404, closed), path
    assert pi.NO_ANSWER_ERROR == "no answer under this reply code (yet)"
    assert closed == {"error": pi.CLOSED_ERROR}


async def test_a_flood_from_one_address_is_limited_and_others_still_get_in() -> None:
    r = Relay(intake_ip_rate=0.01, intake_ip_burst=3)
    async with r.app.router.lifespan_context(r.app):
        await r.setup()
        async with r.client("198.51.100.66") as c:
            statuses = [
                (await c.post("/v1/intake/mission-a/requests", json=r.body())).status_code
                for _ in range(5)
            ]
        assert statuses == [201, 201, 201, 429, 429]
        async with r.client("203.0.113.5") as c:
            assert (await c.post("/v1/intake/mission-a/requests",
                                 json=r.body())).status_code == 201  # fmt: skip


async def test_a_flood_at_one_tenant_fills_its_intake_not_its_slots() -> None:
    r = Relay(intake_queue_cap=3, intake_ip_rate=0)
    async with r.app.router.lifespan_context(r.app):
        await r.setup()
        async with r.client() as c:
            statuses = [
                (await c.post("/v1/intake/mission-a/requests", json=r.body())).status_code
                for _ in range(5)
            ]
            assert statuses == [201, 201, 201, 507, 507]
            # The tenant's official slots take deposits as before.
            slot = secrets.token_bytes(32).hex()
            put = await c.put(f"/v1/tenants/mission-a/slots/{slot}", content=bytes(4096),
                              headers={"Content-Type": "application/octet-stream"})  # fmt: skip
            assert put.status_code == 201
        assert await r.store.count_cells("mission-a") == 1


async def test_a_flood_at_many_tenants_meets_the_relays_own_intake_rate() -> None:
    r = Relay(intake_rate=0.01, intake_burst=4, intake_ip_rate=0)
    async with r.app.router.lifespan_context(r.app):
        await r.setup()
        async with r.client() as c:
            statuses = [
                (await c.post("/v1/intake/mission-a/requests", json=r.body())).status_code
                for _ in range(6)
            ]
        assert statuses == [201, 201, 201, 201, 429, 429]
        limited = r.app.state.service.metrics.rate_limited.labels("intake_relay")
        assert limited._value.get() == 2


async def test_only_the_mission_reads_its_intake(relay: Relay) -> None:
    async with relay.client() as c:
        await c.post("/v1/intake/mission-a/requests", json=relay.body())
        for headers in ({}, {"Authorization": "Bearer " + "A" * 43}):
            r = await c.post("/v1/tenants/mission-a/intake/fetch", json={"after": 0},
                             headers=headers)  # fmt: skip
            assert r.status_code == 401
        r = await c.post("/v1/tenants/mission-a/intake/fetch",
                         json={"after": 0, "open": "yes"}, headers=relay.auth)  # fmt: skip
        assert r.status_code == 400


async def test_an_answer_is_read_by_its_reply_id_alone(relay: Relay) -> None:
    code = pi.new_reply_code(secrets.token_bytes)
    name = pi.reply_id(relay.card, code)
    async with relay.client() as c:
        assert (await c.get(f"/v1/intake/mission-a/answers/{name.hex()}")).status_code == 404
        cell = pi.seal_answer(relay.card, code, "Yes.", secrets.token_bytes)
        await relay.store.deposit("mission-a", pi.answer_slot(name), cell, 0)
        got = await c.get(f"/v1/intake/mission-a/answers/{name.hex()}")
        assert got.status_code == 200
        assert pi.open_answer(relay.card, code, base64.b64decode(got.json()["cell"])) == "Yes."
        assert (await c.get("/v1/intake/mission-a/answers/xyz")).status_code == 400


async def test_the_answer_endpoint_reads_no_other_cell_of_the_tenant(relay: Relay) -> None:
    # Attack: whoever knows a slot of an intake-open tenant (the peer mission
    # that deposits there, an officer removed since) names it as a reply id to
    # read the cell without the tenant's credential. A reply id names the slot
    # of its hash, so neither a channel's slot nor an answer's own slot reads.
    code = pi.new_reply_code(secrets.token_bytes)
    name = pi.reply_id(relay.card, code)
    channel_slot, channel_cell = secrets.token_bytes(32), secrets.token_bytes(4096)
    await relay.store.deposit("mission-a", channel_slot, channel_cell, 0)
    answer = pi.seal_answer(relay.card, code, "Yes.", secrets.token_bytes)
    await relay.store.deposit("mission-a", pi.answer_slot(name), answer, 0)
    async with relay.client() as c:
        for slot in (channel_slot, pi.answer_slot(name)):
            r = await c.get(f"/v1/intake/mission-a/answers/{slot.hex()}")
            assert r.status_code == 404, r.text
        # The credential still reads the channel's cell, and the reply id its answer.
        r = await c.get(f"/v1/tenants/mission-a/slots/{channel_slot.hex()}", headers=relay.auth)
        assert r.status_code == 200 and r.content == channel_cell
        r = await c.get(f"/v1/intake/mission-a/answers/{name.hex()}")
        assert base64.b64decode(r.json()["cell"]) == answer


async def test_the_page_is_served_with_a_strict_policy(relay: Relay) -> None:
    async with relay.client() as c:
        page = await c.get("/intake/")
        assert page.status_code == 200 and '<form id="request-form">' in page.text
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe" not in csp
        assert (
            (await c.get("/intake/hpke.min.js"))
            .headers["content-type"]
            .startswith("text/javascript")
        )
        for name in ("../app.py", "hpke.LICENSE", "nothing.js"):
            assert (await c.get(f"/intake/{name}")).status_code == 404


async def test_the_round_fetch_carries_the_intake(relay: Relay) -> None:
    # Devices ask for the intake in their batch fetch (one request fewer a round);
    # the older JSON endpoint answers the same.
    from backchannel.protocol.batch import FetchBatch, FetchBatchAnswer, IntakeAsk

    bodies = [relay.body() for _ in range(3)]
    async with relay.client() as c:
        for body in bodies:
            assert (await c.post("/v1/intake/mission-a/requests", json=body)).status_code == 201

        async def fetch(ask: IntakeAsk | None) -> FetchBatchAnswer:
            raw = FetchBatch(0, 64, (bytes(32),), (), ask).encode()
            headers = {**relay.auth, "content-type": "application/octet-stream"}
            r = await c.post("/v1/tenants/mission-a/batch/fetch", content=raw, headers=headers)
            assert r.status_code == 200, r.text
            return FetchBatchAnswer.decode(r.content, 64, ask is not None)

        got = await fetch(IntakeAsk(1, 32, True))
        assert [seq for seq, _ in got.intake or ()] == [2, 3]
        assert [cell for _, cell in got.intake or ()] == [
            base64.b64decode(b["cell"]) for b in bodies[1:]
        ]
        assert (await fetch(IntakeAsk(0, 1, True))).intake == (
            (1, base64.b64decode(bodies[0]["cell"])),
        )
        assert (await fetch(None)).intake is None
        # Stating "closed" in the round's fetch closes the intake at once.
        assert (await fetch(IntakeAsk(3, 32, False))).intake == ()
        assert not await relay.store.intake_is_open("mission-a")
        r = await c.post("/v1/intake/mission-a/requests", json=relay.body())
        assert r.status_code == 404
        # A stranger asks nothing of it.
        raw = FetchBatch(0, 64, (), (), IntakeAsk(0, 32, True)).encode()
        r = await c.post("/v1/tenants/mission-a/batch/fetch", content=raw,
                         headers={"Authorization": "Bearer " + "A" * 43})  # fmt: skip
        assert r.status_code in (401, 403)
        assert not await relay.store.intake_is_open("mission-a")
