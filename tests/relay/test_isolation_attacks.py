"""A hostile client against the relay's tenant isolation and its limits.

The client is another mission in the building, a reporter, anyone who can
reach the port. Each test plays one attack: reaching another tenant's cells,
intake or credential through odd paths, headers or names; squatting a name
that is not its own; passing a limit by racing; or finding a tenant, a slot
or a secret in what the relay logs and counts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette

from backchannel.client.harness import MissionKit
from backchannel.protocol import intake as pi
from backchannel.protocol import tenant_credential as tc
from backchannel.protocol.batch import (
    DepositBatch,
    DepositBatchAnswer,
    DepositCell,
    FetchBatch,
    FetchBatchAnswer,
    Query,
    decode_slot_read,
)
from backchannel.protocol.constants import RENDEZVOUS_CREDENTIAL, RENDEZVOUS_TENANT
from backchannel.protocol.misbehaviour import Absence
from backchannel.relay import service as relay_service
from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore
from backchannel.store.relay_store import RelayStore
from backchannel.store.sqlite import SQLiteRelayStore
from tests.conftest import DetRng

from .conftest import (
    OPERATOR_TOKEN,
    AppFactory,
    Clock,
    Tenant,
    deposit,
    new_cell,
    new_credential,
    new_slot,
    register,
    running,
)
from .test_batch import OCTET, backend, relay

__all__ = ["backend", "relay"]


def _batch(cells: list[tuple[str, bytes, bytes]]) -> bytes:
    return DepositBatch(0, tuple(DepositCell(*c) for c in cells)).encode()


# -- paths, names and headers ---------------------------------------------------------


async def test_a_trailing_slash_reaches_no_endpoint_and_echoes_nothing(
    http: httpx.AsyncClient, alpha: Tenant, store: MemoryRelayStore
) -> None:
    slot, cell = new_slot(), new_cell()
    assert (await deposit(http, alpha.tenant_id, slot, cell)).status_code == 201
    fetch = FetchBatch(0, 0, (bytes.fromhex(slot),), ()).encode()
    attempts: list[tuple[str, str, dict[str, object]]] = [
        ("GET", alpha.path(f"slots/{slot}/"), {"headers": alpha.auth}),
        ("PUT", alpha.path(f"slots/{new_slot()}/"), {"content": new_cell(), "headers": OCTET}),
        ("POST", alpha.path("fetch/"), {"json": {"slots": [slot]}, "headers": alpha.auth}),
        ("POST", alpha.path("ack/"), {"json": {"slots": [slot]}, "headers": alpha.auth}),
        (
            "POST",
            alpha.path("batch/fetch/"),
            {"content": fetch, "headers": {**OCTET, **alpha.auth}},
        ),
        (
            "POST",
            "/v1/batch/deposit/",
            {"content": _batch([(alpha.tenant_id, secrets.token_bytes(32), new_cell())])},
        ),
        ("POST", "/v1/tenants/", {"json": {"tenant_id": "mission-x", "credential": "x"}}),
        ("GET", "/v1/info/", {}),
    ]
    for method, path, kwargs in attempts:
        # A Host of the client's choosing must not come back as somewhere to go.
        headers = {"Host": "elsewhere.example", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        r = await http.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 404, (method, path, r.status_code)
        assert set(r.json()) == {"error"}
        assert "location" not in r.headers
        assert slot not in r.text and all(slot not in v for v in r.headers.values())
    # Nothing was stored, read or acknowledged through them.
    assert await store.count_cells(alpha.tenant_id) == 1
    assert await store.fetch(alpha.tenant_id, [bytes.fromhex(slot)]) == {bytes.fromhex(slot): cell}


@pytest.mark.parametrize("registration", ["open", "operator"])
async def test_the_public_rendezvous_tenant_is_nobodys_to_register(
    make_app: AppFactory, store: MemoryRelayStore, registration: str
) -> None:
    # A relay that keeps no rendezvous tenant (yet): whoever registered the name
    # would hold, once the operator turns pairing by code on, the tenant every
    # pairing deposits to, and the public credential would open nothing.
    mine = new_credential()
    open_registration = registration == "open"
    headers = {} if open_registration else {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    async for http in running(make_app(rendezvous=False, open_registration=open_registration)):
        r = await http.post(
            "/v1/tenants",
            json={"tenant_id": RENDEZVOUS_TENANT, "credential": mine},
            headers=headers,
        )
        assert r.status_code == 409, r.text
        assert mine not in r.text
        assert await store.get_tenant(RENDEZVOUS_TENANT) is None
    async for http in running(make_app(rendezvous=True, open_registration=open_registration)):
        public = Tenant(RENDEZVOUS_TENANT, RENDEZVOUS_CREDENTIAL)
        squatter = Tenant(RENDEZVOUS_TENANT, mine)
        ask = {"slots": [new_slot()]}
        assert (await http.post(public.path("fetch"), json=ask, headers=public.auth)).is_success
        r = await http.post(squatter.path("fetch"), json=ask, headers=squatter.auth)
        assert r.status_code == 401
        # Registering it now is refused the same way.
        r = await http.post(
            "/v1/tenants",
            json={"tenant_id": RENDEZVOUS_TENANT, "credential": mine},
            headers=headers,
        )
        assert r.status_code == 409


LOOK_ALIKES = [
    "Mission-alpha",  # case
    "MISSION-ALPHA",
    "mission-alpha ",  # trailing space
    "mission-alpha\n",
    "mission_alpha",
    "mission\u2010alpha",  # Unicode hyphen
    "mission-alph\u0430",  # Cyrillic a
    "\uff4dission-alpha",  # fullwidth m
    "mission-alpha\u200b",  # zero-width space
]


async def test_look_alike_tenant_ids_reach_no_tenant(
    http: httpx.AsyncClient, alpha: Tenant, beta: Tenant, store: MemoryRelayStore
) -> None:
    slot, cell = new_slot(), new_cell()
    assert (await deposit(http, alpha.tenant_id, slot, cell)).status_code == 201
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    for name in LOOK_ALIKES:
        # Registration refuses every one: no tenant that reads like alpha's.
        r = await http.post(
            "/v1/tenants",
            json={"tenant_id": name, "credential": new_credential()},
            headers=operator,
        )
        assert r.status_code == 400, name
        # Through the path (percent-encoded as a client would send it), beta's
        # credential opens none of alpha's cells, and a deposit lands nowhere.
        quoted = quote(name, safe="-")
        as_beta = Tenant(quoted, beta.credential)
        r = await http.get(as_beta.path(f"slots/{slot}"), headers=as_beta.auth)
        assert r.status_code == 401, name
        r = await http.post(as_beta.path("fetch"), json={"slots": [slot]}, headers=as_beta.auth)
        assert r.status_code == 401, name
        assert (await deposit(http, quoted, new_slot(), new_cell())).status_code == 404, name
    # The percent-encoded id itself is alpha's own name: still beta's credential opens nothing.
    encoded = Tenant(alpha.tenant_id.replace("-", "%2D"), beta.credential)
    assert (await http.get(encoded.path(f"slots/{slot}"), headers=encoded.auth)).status_code == 401
    # In a batch, an id in the wrong case or with a stray character is refused cell by cell.
    ascii_ones = [n for n in LOOK_ALIKES if n.isascii()]
    cells = [(n, secrets.token_bytes(32), new_cell()) for n in ascii_ones]
    r = await http.post("/v1/batch/deposit", content=_batch(cells), headers=OCTET)
    assert r.status_code == 200
    assert [c.status for c in DepositBatchAnswer.decode(r.content).results] == [400] * len(cells)
    # A non-ASCII id (UTF-8 bytes in the id's place) makes the whole batch malformed.
    body = bytearray(_batch([("mission-alphx", secrets.token_bytes(32), new_cell())]))
    body[body.index(b"mission-alphx") + 12] = 0xD0  # the x
    r = await http.post("/v1/batch/deposit", content=bytes(body), headers=OCTET)
    assert r.status_code == 400
    assert await store.count_cells(alpha.tenant_id) == 1
    assert await store.count_cells() == 1
    assert await store.fetch(alpha.tenant_id, [bytes.fromhex(slot)]) == {bytes.fromhex(slot): cell}


async def test_a_batch_fetch_reads_only_the_callers_tenant(
    http: httpx.AsyncClient, alpha: Tenant, beta: Tenant
) -> None:
    slot, cell = new_slot(), new_cell()
    assert (await deposit(http, alpha.tenant_id, slot, cell)).status_code == 201
    raw = bytes.fromhex(slot)
    # Beta names alpha's slot, as a slot and as a fresh read, with its own credential.
    body = FetchBatch(0, 0, (raw,), (Query.absence(raw),)).encode()
    r = await http.post(beta.path("batch/fetch"), content=body, headers={**OCTET, **beta.auth})
    assert r.status_code == 200
    answer = FetchBatchAnswer.decode(r.content)
    assert answer.cells == () and answer.spent == ()
    read = decode_slot_read(answer.answers[0].payload)
    assert read.cell is None
    # Both statements of absence are about beta's tenant: nothing says what alpha holds.
    for statement in (answer.absent, read.absence):
        assert Absence.decode(statement).tenant_id == beta.tenant_id
    assert cell not in r.content
    # With alpha's path and beta's credential, nothing at all.
    r = await http.post(alpha.path("batch/fetch"), content=body, headers={**OCTET, **beta.auth})
    assert r.status_code == 401


async def _put_raw(app: Starlette, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    """A POST or PUT of endless 1 KiB chunks straight into the app; its status."""

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"\x01" * 1024, "more_body": True}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT" if "/slots/" in path else "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("relay", 80),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)  # type: ignore[arg-type]
    status = sent[0]["status"]
    assert isinstance(status, int)
    return status


@pytest.mark.parametrize(
    "path",
    [f"/v1/tenants/mission-alpha/slots/{new_slot()}", "/v1/batch/deposit", "/v1/tenants"],
    ids=["slot", "batch-deposit", "register"],
)
async def test_duplicate_headers_pass_no_body_limit(make_app: AppFactory, path: str) -> None:
    # Two lengths (a large one, then one that fits) and two media types: whichever
    # the relay reads, it counts the bytes that come and stops at its limit.
    media = b"application/json" if path == "/v1/tenants" else b"application/octet-stream"
    headers = [
        (b"content-type", media),
        (b"content-type", b"text/plain"),
        (b"content-length", b"99999999999"),
        (b"content-length", b"16"),
        (b"authorization", f"Bearer {OPERATOR_TOKEN}".encode()),
    ]
    app = make_app(body_limit=8192)
    status = await _put_raw(app, path, headers)
    assert status in (413, 415)
    # In the order a proxy would fold them the other way round: the same.
    status = await _put_raw(app, path, [headers[1], headers[0], headers[3], headers[2], headers[4]])
    assert status in (413, 415)


def _client_at(app: Starlette, host: str) -> httpx.AsyncClient:
    """A client whose requests come from ``host``."""
    transport = httpx.ASGITransport(app=app, client=(host, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://relay")


def _credentialed(alpha: Tenant, credential: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, arguments) of a request to each endpoint that takes the
    tenant's credential, the two fast paths included, with ``credential``."""
    auth = {"Authorization": f"Bearer {credential}"}
    fetch = FetchBatch(0, 0, (), ()).encode()
    return [
        ("GET", alpha.path(f"slots/{new_slot()}"), {"headers": auth}),
        ("POST", alpha.path("batch/fetch"), {"content": fetch, "headers": {**OCTET, **auth}}),
        ("POST", alpha.path("fetch"), {"json": {"slots": []}, "headers": auth}),
        ("POST", alpha.path("intake/fetch"), {"json": {"after": 0}, "headers": auth}),
    ]


# -- credentials -------------------------------------------------------------------------


async def test_guessing_a_credential_is_bounded_by_the_address_and_locks_no_one_out(
    make_app: AppFactory,
) -> None:
    # Every endpoint that takes a credential, the two fast paths included, spends
    # one of the guessing address's tokens per guess; none spends the tenant's,
    # so the mission itself, from its own address, is never locked out.
    app = make_app(ip_rate=0.001, ip_burst=8, tenant_rate=0.001, tenant_burst=2)
    async for http in running(app):
        alpha = await register(http, "mission-alpha")
    guesser, owner = _client_at(app, "203.0.113.9"), _client_at(app, "198.51.100.7")
    async with app.router.lifespan_context(app), guesser, owner:

        async def guess(c: httpx.AsyncClient, credential: str) -> list[int]:
            return [
                (await c.request(method, path, **kw)).status_code
                for method, path, kw in _credentialed(alpha, credential)
            ]

        assert await guess(guesser, new_credential()) == [401] * 4
        assert await guess(guesser, new_credential()) == [401] * 4
        # The address has spent its burst: even the right credential is refused there.
        assert await guess(guesser, alpha.credential) == [429] * 4
        # The tenant's own tokens were untouched by eight wrong guesses.
        r = await owner.post(alpha.path("fetch"), json={"slots": []}, headers=alpha.auth)
        assert r.status_code == 200


#: One IPv6 subscriber's /64, and its neighbour's.
_ATTACKER_64 = "2001:db8:bad:1"
_NEIGHBOUR_64 = "2001:db8:bad:2"


async def test_rotating_ipv6_addresses_within_one_64_buys_no_more_guesses(
    make_app: AppFactory,
) -> None:
    # The guesser holds a whole /64 (2**64 addresses) and sends every request
    # from a new one: every endpoint that takes a credential, the two fast paths
    # included, still spends the one bucket of its /64. The mission, in the
    # next /64, keeps its own tokens.
    app = make_app(ip_rate=0.001, ip_burst=8, tenant_rate=0.001, tenant_burst=2)
    async for http in running(app):
        alpha = await register(http, "mission-alpha")
    hosts = (f"{_ATTACKER_64}:{i:x}:{i * 37:x}:{i * 101:x}:{i + 1:x}" for i in range(1, 100))
    async with app.router.lifespan_context(app):

        async def guess(credential: str) -> list[int]:
            codes = []
            for method, path, kw in _credentialed(alpha, credential):
                async with _client_at(app, next(hosts)) as c:
                    codes.append((await c.request(method, path, **kw)).status_code)
            return codes

        assert await guess(new_credential()) == [401] * 4
        assert await guess(new_credential()) == [401] * 4
        # The /64 has spent its burst: from yet another of its addresses, even the
        # right credential is refused.
        assert await guess(alpha.credential) == [429] * 4
        async with _client_at(app, f"{_NEIGHBOUR_64}::1") as owner:
            r = await owner.post(alpha.path("fetch"), json={"slots": []}, headers=alpha.auth)
        assert r.status_code == 200


async def test_an_ipv4_client_is_limited_per_address_and_its_mapped_form_is_the_same(
    make_app: AppFactory,
) -> None:
    app = make_app(ip_rate=0.001, ip_burst=2)
    async with app.router.lifespan_context(app):

        async def status_from(host: str) -> int:
            async with _client_at(app, host) as c:
                return (await c.get("/healthz")).status_code

        # 192.0.2.1 written as an IPv4-mapped IPv6 address is the same client.
        hosts = ["192.0.2.1", "::ffff:192.0.2.1", "::ffff:c000:201"]
        assert [await status_from(h) for h in hosts] == [200, 200, 429]
        # The next IPv4 address is another client: IPv4 is not grouped.
        assert await status_from("192.0.2.2") == 200


async def test_every_credential_comparison_is_constant_time(
    http: httpx.AsyncClient, alpha: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    # The relay compares through the hmac module (service.py); every comparison is seen.
    monkeypatch.setattr(hmac, "compare_digest", spy)
    ghost = Tenant("mission-ghost", new_credential())
    cases = [
        (alpha.path("fetch"), alpha.auth),  # right
        (alpha.path("fetch"), {"Authorization": f"Bearer {new_credential()}"}),  # wrong
        (alpha.path("fetch"), {"Authorization": "Bearer not-a-credential"}),  # malformed
        (alpha.path("fetch"), {}),  # none
        (ghost.path("fetch"), ghost.auth),  # no such tenant
    ]
    for path, headers in cases:
        before = len(compared)
        await http.post(path, json={"slots": []}, headers=headers)
        # One comparison of two 32-byte hashes, whatever was (or was not) presented.
        assert len(compared) == before + 1
        assert all(len(x) == 32 for x in compared[-1])
    before = len(compared)
    r = await http.post(
        "/v1/tenants",
        json={"tenant_id": "mission-new", "credential": new_credential()},
        headers={"Authorization": "Bearer a-guess-at-the-operator-token"},
    )
    assert r.status_code == 401
    assert len(compared) == before + 1 and all(len(x) == 32 for x in compared[-1])


# -- races -------------------------------------------------------------------------------


async def test_batches_racing_single_deposits_never_pass_the_quota(
    relay: httpx.AsyncClient, backend: RelayStore
) -> None:
    small = await register(relay, "mission-small", quota=10)
    batches = [
        _batch([(small.tenant_id, secrets.token_bytes(32), new_cell()) for _ in range(8)])
        for _ in range(2)
    ]
    calls = [relay.post("/v1/batch/deposit", content=b, headers=OCTET) for b in batches]
    calls += [deposit(relay, small.tenant_id, new_slot(), new_cell()) for _ in range(8)]
    answers = await asyncio.gather(*calls)
    statuses = [c.status for a in answers[:2] for c in DepositBatchAnswer.decode(a.content).results]
    statuses += [a.status_code for a in answers[2:]]
    assert sorted(statuses) == [201] * 10 + [507] * 14
    assert await backend.count_cells(small.tenant_id) == 10


async def test_racing_registrations_of_one_id_leave_one_owner(
    relay: httpx.AsyncClient, backend: RelayStore
) -> None:
    credentials = [new_credential() for _ in range(8)]
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    answers = await asyncio.gather(
        *(
            relay.post(
                "/v1/tenants", json={"tenant_id": "mission-race", "credential": c}, headers=operator
            )
            for c in credentials
        )
    )
    assert sorted(a.status_code for a in answers) == [201] + [409] * 7
    owner = credentials[[a.status_code for a in answers].index(201)]
    for credential in credentials:
        t = Tenant("mission-race", credential)
        r = await relay.post(t.path("fetch"), json={"slots": []}, headers=t.auth)
        assert r.status_code == (200 if credential == owner else 401)


async def test_a_retired_credential_is_refused_by_every_relay_process_within_its_cache_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two relay processes on one database: the rotation reaches one of them;
    # the other had just trusted the old credential and keeps it only that long.
    monkeypatch.setattr(relay_service, "TENANT_CACHE_SECONDS", 0.2)
    mission = MissionKit.create("New York", ["Pak", "Kim", "Ri"], 2, DetRng())
    pak, kim, _ = (o.officer for o in mission.officers)
    tenant = tc.tenant_id_for(mission.mission_id)
    settings = RelaySettings(data_dir=tmp_path, open_registration=True, ip_rate=0, tenant_rate=0)
    db = tmp_path / "relay.db"
    first, second = new_credential(), new_credential()
    apps = [create_app(settings, SQLiteRelayStore(db), background=False) for _ in range(2)]
    async with (
        apps[0].router.lifespan_context(apps[0]),
        apps[1].router.lifespan_context(apps[1]),
    ):
        a, b = (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://relay")
            for app in apps
        )
        async with a, b:

            async def opens(c: httpx.AsyncClient, credential: str) -> bool:
                t = Tenant(tenant, credential)
                r = await c.post(t.path("fetch"), json={"slots": []}, headers=t.auth)
                assert r.status_code in (200, 401)
                return r.status_code == 200

            r = await a.post("/v1/tenants", json={"tenant_id": tenant, "credential": first})
            assert r.status_code == 201
            assert await opens(b, first)  # b trusts this record now
            new_hash = tc.credential_hash(second)
            sigs = tuple(tc.sign(o, tenant, mission.roster, 1, new_hash) for o in (pak, kim))
            rotation = tc.Rotation(tuple(mission.chain), 1, new_hash, sigs)
            r = await a.post(f"/v1/tenants/{tenant}/credential", json=rotation.to_json())
            assert r.status_code == 200 and r.json()["rotated"] is True
            assert not await opens(a, first)  # at once where it was taken
            await asyncio.sleep(0.3)
            assert not await opens(b, first)  # and everywhere within the cache time
            assert await opens(b, second)


# -- the public intake -------------------------------------------------------------------

POW_BITS = 8


def _intake_body(tenant_id: str, now: float) -> dict[str, object]:
    cell = secrets.token_bytes(pi.REQUEST_CELL_SIZE)
    bucket = int(now) // 600
    nonce = pi.solve_pow(pi.pow_prefix(tenant_id, bucket, cell), POW_BITS)
    return {"cell": base64.b64encode(cell).decode(), "bucket": bucket, "nonce": nonce}


async def test_an_intake_proof_and_queue_belong_to_one_tenant(
    make_app: AppFactory, store: MemoryRelayStore, clock: Clock
) -> None:
    app = make_app(intake_pow_bits=POW_BITS, intake_queue_cap=2, intake_ip_rate=0)
    async for http in running(app):
        alpha = await register(http, "mission-alpha")
        beta = await register(http, "mission-beta")
        for t in (alpha, beta):
            opening = {"after": 0, "open": True}
            r = await http.post(t.path("intake/fetch"), json=opening, headers=t.auth)
            assert r.status_code == 200
        # A proof made for alpha's intake buys nothing at beta's.
        for_alpha = _intake_body(alpha.tenant_id, clock.now)
        r = await http.post(f"/v1/intake/{beta.tenant_id}/requests", json=for_alpha)
        assert r.status_code == 400 and "proof of work" in r.json()["error"]
        for _ in range(2):
            body = _intake_body(alpha.tenant_id, clock.now)
            r = await http.post(f"/v1/intake/{alpha.tenant_id}/requests", json=body)
            assert r.status_code == 201
        # Beta can neither read alpha's queue nor free its places.
        r = await http.post(alpha.path("intake/fetch"), json={"after": 0}, headers=beta.auth)
        assert r.status_code == 401
        r = await http.post(beta.path("intake/fetch"), json={"after": 10**6}, headers=beta.auth)
        assert r.json() == {"requests": []}
        body = _intake_body(alpha.tenant_id, clock.now)
        r = await http.post(f"/v1/intake/{alpha.tenant_id}/requests", json=body)
        assert r.status_code == 507
        assert await store.intake_fetch(beta.tenant_id, 0, 10) == []
        assert len(await store.intake_fetch(alpha.tenant_id, 0, 10)) == 2


async def test_rotating_ipv6_addresses_within_one_64_buys_no_more_intake_requests(
    make_app: AppFactory, clock: Clock
) -> None:
    app = make_app(intake_pow_bits=POW_BITS, intake_ip_rate=0.001, intake_ip_burst=2)
    async for http in running(app):
        alpha = await register(http, "mission-alpha")
        opening = {"after": 0, "open": True}
        r = await http.post(alpha.path("intake/fetch"), json=opening, headers=alpha.auth)
        assert r.status_code == 200
    async with app.router.lifespan_context(app):

        async def submit(host: str) -> int:
            body = _intake_body(alpha.tenant_id, clock.now)
            async with _client_at(app, host) as c:
                r = await c.post(f"/v1/intake/{alpha.tenant_id}/requests", json=body)
            return r.status_code

        rotated = [f"{_ATTACKER_64}::{i:x}" for i in range(1, 5)]
        assert [await submit(h) for h in rotated] == [201, 201, 429, 429]
        # A writer in another /64 is not held back by the flood.
        assert await submit(f"{_NEIGHBOUR_64}::1") == 201


# -- what the relay logs and counts ------------------------------------------------------


async def test_logs_and_metrics_name_no_tenant_slot_or_secret(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_texts: list[str] = [OPERATOR_TOKEN]
    app = make_app(intake_pow_bits=POW_BITS, intake_ip_rate=0)
    async for http in running(app):
        alpha = await register(http, "mission-alpha")
        beta = await register(http, "mission-beta")
        secret_texts += [alpha.tenant_id, beta.tenant_id, alpha.credential, beta.credential]
        r = await http.post(
            "/v1/tenants",
            json={"tenant_id": "mission-gamma", "credential": new_credential()},
            headers={"Authorization": "Bearer wrong-operator-token"},
        )
        assert r.status_code == 401
        secret_texts += ["mission-gamma", "wrong-operator-token"]
        slots = [secrets.token_bytes(32) for _ in range(3)]
        cells = [new_cell() for _ in slots]
        secret_texts += [s.hex() for s in slots] + [c.hex()[:64] for c in cells]
        secret_texts += [hashlib.sha256(c).hexdigest() for c in cells]
        batch = [(alpha.tenant_id, slots[0], cells[0]), (beta.tenant_id, slots[1], cells[1])]
        batch += [("No_Such", slots[2], cells[2])]
        r = await http.post("/v1/batch/deposit", content=_batch(batch), headers=OCTET)
        assert r.status_code == 200
        fetch = FetchBatch(0, 0, tuple(slots), (Query.absence(slots[2]),)).encode()
        for creds in (alpha.auth, beta.auth, {"Authorization": "Bearer " + "A" * 43}):
            await http.post(alpha.path("batch/fetch"), content=fetch, headers={**OCTET, **creds})
        junk = {"content": b"\x09junk", "headers": {**OCTET, **alpha.auth}}
        await http.post(alpha.path("batch/fetch"), **junk)  # type: ignore[arg-type]
        opening = {"after": 0, "open": True}
        await http.post(alpha.path("intake/fetch"), json=opening, headers=alpha.auth)
        body = _intake_body(alpha.tenant_id, clock.now)
        secret_texts.append(str(body["cell"])[:64])
        await http.post(f"/v1/intake/{alpha.tenant_id}/requests", json=body)
        await http.post(f"/v1/intake/{beta.tenant_id}/requests", json=body)
        await http.get(f"/v1/intake/{alpha.tenant_id}/answers/{slots[0].hex()}")
        await http.post(f"/v1/tenants/{alpha.tenant_id}/credential", json={"chain": []})
        await http.get(alpha.path(f"slots/{slots[0].hex()}/"), headers=alpha.auth)
        await http.put(alpha.path(f"slots/{slots[0].hex()}"), content=b"short", headers=OCTET)
        metrics = (await http.get("/metrics")).text
    relay_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in relay_records
    )
    assert "batch_deposit" in logged  # the access log did record the requests
    for text in secret_texts:
        assert text not in logged, text
        assert text not in metrics, text


async def test_a_rendezvous_tenant_registered_before_it_was_kept_back_is_named_at_start(
    make_app: AppFactory, store: MemoryRelayStore, caplog: pytest.LogCaptureFixture
) -> None:
    mine = new_credential()
    await store.open()
    await store.create_tenant(
        RENDEZVOUS_TENANT, hashlib.sha256(base64.urlsafe_b64decode(mine + "=")).digest(), 10, 0
    )
    await store.close()
    caplog.set_level(logging.WARNING, logger="backchannel.relay")
    async for _ in running(make_app(rendezvous=True)):
        pass
    [warning] = [r.getMessage() for r in caplog.records if RENDEZVOUS_TENANT in r.getMessage()]
    assert "pairing by code cannot work" in warning and mine not in warning
