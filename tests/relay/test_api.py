"""The relay API in-process: every endpoint and every error it documents."""

from __future__ import annotations

import base64
import hashlib
import logging

import httpx
import pytest
from starlette.applications import Starlette

from backchannel import __version__
from backchannel.store.memory import MemoryRelayStore

from .conftest import (
    CELL,
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

OCTET = {"Content-Type": "application/octet-stream"}


def error_of(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"}
    assert "\n" not in body["error"] and body["error"]
    return str(body["error"])


# -- registration -----------------------------------------------------------


async def test_register_returns_quota_and_stores_only_the_credential_hash(
    http: httpx.AsyncClient, store: MemoryRelayStore
) -> None:
    credential = new_credential()
    r = await http.post(
        "/v1/tenants",
        json={"tenant_id": "mission-x", "credential": credential, "quota_cells": 10},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert r.status_code == 201
    assert r.json() == {"tenant_id": "mission-x", "quota_cells": 10}
    record = await store.get_tenant("mission-x")
    assert record is not None
    raw = base64.urlsafe_b64decode(credential + "=")
    assert record.credential_hash == hashlib.sha256(raw).digest()


async def test_register_takes_an_integral_json_number_as_the_integer(
    http: httpx.AsyncClient,
) -> None:
    # JSON (and the document's "type": "integer") has no int/float split: 150.0 is 150.
    r = await http.post(
        "/v1/tenants",
        content=b'{"tenant_id": "mission-f", "credential": "%s", "quota_cells": 150.0}'
        % new_credential().encode(),
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json"},
    )
    assert r.status_code == 201
    assert r.content.count(b'"quota_cells":150}') == 1  # answered as an integer


async def test_register_default_quota(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/v1/tenants",
        json={"tenant_id": "mission-y", "credential": new_credential()},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert r.status_code == 201 and r.json()["quota_cells"] == 100_000


async def test_register_taken_id_is_409(http: httpx.AsyncClient, alpha: Tenant) -> None:
    r = await http.post(
        "/v1/tenants",
        json={"tenant_id": alpha.tenant_id, "credential": new_credential()},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert r.status_code == 409
    assert "taken" in error_of(r)


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic abc", "Bearer "])
async def test_register_needs_the_operator_token(http: httpx.AsyncClient, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    r = await http.post(
        "/v1/tenants",
        json={"tenant_id": "mission-z", "credential": new_credential()},
        headers=headers,
    )
    assert r.status_code == 401
    assert "operator token" in error_of(r)


async def test_open_registration_needs_no_token(make_app: AppFactory) -> None:
    async for http in running(make_app(open_registration=True, operator_token=None)):
        r = await http.post(
            "/v1/tenants", json={"tenant_id": "demo", "credential": new_credential()}
        )
        assert r.status_code == 201


async def test_registration_closed_without_token_or_open_flag(make_app: AppFactory) -> None:
    async for http in running(make_app(operator_token=None)):
        r = await http.post(
            "/v1/tenants",
            json={"tenant_id": "demo", "credential": new_credential()},
            headers={"Authorization": "Bearer anything"},
        )
        assert r.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"tenant_id": "AB", "credential": "x"},
        {"tenant_id": "ab", "credential": new_credential()},
        {"tenant_id": "UPPER", "credential": new_credential()},
        {"tenant_id": "a" * 65, "credential": new_credential()},
        {"tenant_id": "mission", "credential": "too-short"},
        {"tenant_id": "mission", "credential": base64.urlsafe_b64encode(b"x" * 31).decode()},
        {"tenant_id": "mission", "credential": new_credential(), "quota_cells": 0},
        {"tenant_id": "mission", "credential": new_credential(), "quota_cells": "5"},
        {"tenant_id": "mission", "credential": new_credential(), "quota_cells": True},
        {"tenant_id": "mission", "credential": new_credential(), "quota_cells": 150.5},
        {"tenant_id": "mission", "credential": new_credential(), "quota_cells": 10**12},
        {"tenant_id": "mission", "credential": new_credential(), "admin": True},
        {"tenant_id": "mission"},
        ["mission"],
    ],
)
async def test_register_refuses_bad_bodies(http: httpx.AsyncClient, body: object) -> None:
    r = await http.post(
        "/v1/tenants", json=body, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    assert r.status_code == 400
    error_of(r)


async def test_register_refuses_non_json(http: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    r = await http.post(
        "/v1/tenants", content=b"{", headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = await http.post(
        "/v1/tenants", content=b"{}", headers={**auth, "Content-Type": "text/plain"}
    )
    assert r.status_code == 415


# -- deposit ----------------------------------------------------------------


async def test_deposit_then_identical_retry_then_conflict(
    http: httpx.AsyncClient, alpha: Tenant, store: MemoryRelayStore
) -> None:
    slot, cell = new_slot(), new_cell()
    first = await deposit(http, alpha.tenant_id, slot, cell)
    assert first.status_code == 201
    body = first.json()
    assert set(body) == {"cell_id", "created", "log"}
    assert body["cell_id"] == hashlib.sha256(cell).hexdigest() and body["created"] is True
    retry = await deposit(http, alpha.tenant_id, slot, cell)
    assert retry.status_code == 200
    again = retry.json()
    assert again["cell_id"] == hashlib.sha256(cell).hexdigest() and again["created"] is False
    # A retry points at the original place in the log.
    for field in ("leaf_index", "batch_position", "batch_size", "batch_proof"):
        assert again["log"][field] == body["log"][field]
    other = await deposit(http, alpha.tenant_id, slot, new_cell())
    assert other.status_code == 409
    assert "different cell" in error_of(other)
    assert await store.count_cells(alpha.tenant_id) == 1
    assert await store.fetch(alpha.tenant_id, [bytes.fromhex(slot)]) == {bytes.fromhex(slot): cell}


async def test_deposit_needs_no_authentication_and_records_coarse_time(
    http: httpx.AsyncClient, alpha: Tenant, store: MemoryRelayStore, clock: Clock
) -> None:
    minute = 1_700_000_040  # a multiple of 60
    clock.now = minute + 59.9
    slot = new_slot()
    assert (await deposit(http, alpha.tenant_id, slot, new_cell())).status_code == 201
    # The store got the time rounded down to the minute, not the exact second:
    # a cutoff one second before the minute keeps it, the minute itself drops it.
    assert await store.expire(minute - 1 + 60, 60) == 0
    assert await store.expire(minute + 60, 60) == 1


@pytest.mark.parametrize("size", [0, 1, CELL - 1, CELL + 1, 2 * CELL])
async def test_deposit_of_the_wrong_size_is_refused(
    http: httpx.AsyncClient, alpha: Tenant, store: MemoryRelayStore, size: int
) -> None:
    r = await deposit(http, alpha.tenant_id, new_slot(), b"\x00" * size)
    assert r.status_code == 400
    assert f"exactly {CELL} bytes" in error_of(r)
    assert await store.count_cells() == 0


async def test_deposit_over_the_body_limit_is_413_unread(
    http: httpx.AsyncClient, alpha: Tenant
) -> None:
    r = await deposit(http, alpha.tenant_id, new_slot(), b"\x00" * (64 * 1024 + 1))
    assert r.status_code == 413
    assert "limited to 65536 bytes" in error_of(r)


async def _endless_put(app: Starlette, length_header: tuple[bytes, bytes]) -> tuple[int, int]:
    """PUT a body of endless 1 KiB chunks straight into the ASGI app; (status, chunks read)."""
    received = 0

    async def receive() -> dict[str, object]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"\x00" * 1024, "more_body": True}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": f"/v1/tenants/mission-alpha/slots/{new_slot()}",
        "raw_path": b"",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/octet-stream"), length_header],
        "client": ("127.0.0.1", 5000),
        "server": ("relay", 80),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)  # type: ignore[arg-type]
    status = sent[0]["status"]
    assert isinstance(status, int)
    return status, received


async def test_declared_length_over_the_limit_is_refused_before_reading(
    make_app: AppFactory,
) -> None:
    status, received = await _endless_put(make_app(), (b"content-length", b"100000000"))
    assert status == 413
    assert received == 0


async def test_chunked_body_over_the_limit_stops_reading(make_app: AppFactory) -> None:
    app = make_app(body_limit=8192)
    status, received = await _endless_put(app, (b"transfer-encoding", b"chunked"))
    assert status == 413
    assert received == 9  # 8 KiB accepted, the 9th chunk crossed the limit


@pytest.mark.parametrize("slot", ["00" * 31, "00" * 33, "AB" * 32, "zz" * 32, "0x" + "00" * 31])
async def test_deposit_to_a_malformed_slot_is_400(
    http: httpx.AsyncClient, alpha: Tenant, slot: str
) -> None:
    r = await deposit(http, alpha.tenant_id, slot, new_cell())
    assert r.status_code == 400
    assert "64 lowercase hexadecimal" in error_of(r)


async def test_deposit_needs_octet_stream(http: httpx.AsyncClient, alpha: Tenant) -> None:
    r = await http.put(
        alpha.path(f"slots/{new_slot()}"),
        content=new_cell(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 415


@pytest.mark.parametrize("tenant", ["mission-nobody", "NO", "x" * 80])
async def test_deposit_to_an_unknown_tenant_is_404(http: httpx.AsyncClient, tenant: str) -> None:
    r = await deposit(http, tenant, new_slot(), new_cell())
    assert r.status_code == 404
    error_of(r)


async def test_deposit_beyond_quota_is_507(http: httpx.AsyncClient) -> None:
    small = await register(http, "mission-small", quota=2)
    for _ in range(2):
        assert (await deposit(http, small.tenant_id, new_slot(), new_cell())).status_code == 201
    r = await deposit(http, small.tenant_id, new_slot(), new_cell())
    assert r.status_code == 507
    assert "quota" in error_of(r)


# -- get, fetch, ack ----------------------------------------------------------


async def test_get_returns_the_exact_bytes(http: httpx.AsyncClient, alpha: Tenant) -> None:
    slot, cell = new_slot(), new_cell()
    await deposit(http, alpha.tenant_id, slot, cell)
    r = await http.get(alpha.path(f"slots/{slot}"), headers=alpha.auth)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == cell
    r = await http.get(alpha.path(f"slots/{new_slot()}"), headers=alpha.auth)
    assert r.status_code == 404
    error_of(r)


async def test_fetch_returns_present_cells_base64(http: httpx.AsyncClient, alpha: Tenant) -> None:
    cells = {new_slot(): new_cell() for _ in range(5)}
    for slot, cell in cells.items():
        await deposit(http, alpha.tenant_id, slot, cell)
    absent = new_slot()
    wanted = [*cells, absent, next(iter(cells))]
    r = await http.post(alpha.path("fetch"), json={"slots": wanted}, headers=alpha.auth)
    assert r.status_code == 200
    got = {k: base64.b64decode(v) for k, v in r.json()["cells"].items()}
    assert got == cells
    assert set(r.json()["log"]["cells"]) == set(cells)
    r = await http.post(alpha.path("fetch"), json={"slots": []}, headers=alpha.auth)
    assert r.json()["cells"] == {} and r.json()["log"]["cells"] == {}


async def test_ack_removes_and_counts(http: httpx.AsyncClient, alpha: Tenant) -> None:
    slots = [new_slot() for _ in range(3)]
    for slot in slots:
        await deposit(http, alpha.tenant_id, slot, new_cell())
    r = await http.post(
        alpha.path("ack"), json={"slots": [*slots[:2], new_slot()]}, headers=alpha.auth
    )
    assert r.status_code == 200 and r.json() == {"removed": 2}
    r = await http.post(alpha.path("ack"), json={"slots": slots[:2]}, headers=alpha.auth)
    assert r.json() == {"removed": 0}
    r = await http.post(alpha.path("fetch"), json={"slots": slots}, headers=alpha.auth)
    assert list(r.json()["cells"]) == [slots[2]]


@pytest.mark.parametrize("endpoint", ["fetch", "ack"])
async def test_batch_limit(http: httpx.AsyncClient, alpha: Tenant, endpoint: str) -> None:
    ok = await http.post(
        alpha.path(endpoint), json={"slots": [new_slot() for _ in range(256)]}, headers=alpha.auth
    )
    assert ok.status_code == 200
    r = await http.post(
        alpha.path(endpoint), json={"slots": [new_slot() for _ in range(257)]}, headers=alpha.auth
    )
    assert r.status_code == 400
    assert "at most 256" in error_of(r)


@pytest.mark.parametrize(
    "body",
    [
        {"slots": "abc"},
        {"slots": ["AB" * 32]},
        {"slots": [1]},
        {},
        {"slots": [], "x": 1},
        [],
        "slots",
    ],
)
@pytest.mark.parametrize("endpoint", ["fetch", "ack"])
async def test_batch_bodies_are_checked(
    http: httpx.AsyncClient, alpha: Tenant, endpoint: str, body: object
) -> None:
    r = await http.post(alpha.path(endpoint), json=body, headers=alpha.auth)
    assert r.status_code == 400
    error_of(r)


# -- authentication and tenant isolation --------------------------------------


async def test_tenant_isolation(http: httpx.AsyncClient, alpha: Tenant, beta: Tenant) -> None:
    slot, cell = new_slot(), new_cell()
    await deposit(http, beta.tenant_id, slot, cell)
    stolen = Tenant(beta.tenant_id, alpha.credential)  # alpha's credential on beta's paths
    r = await http.get(stolen.path(f"slots/{slot}"), headers=stolen.auth)
    assert r.status_code == 401
    r = await http.post(stolen.path("fetch"), json={"slots": [slot]}, headers=stolen.auth)
    assert r.status_code == 401
    r = await http.post(stolen.path("ack"), json={"slots": [slot]}, headers=stolen.auth)
    assert r.status_code == 401
    # Alpha's own paths do not see beta's slot either.
    r = await http.get(alpha.path(f"slots/{slot}"), headers=alpha.auth)
    assert r.status_code == 404
    r = await http.post(alpha.path("fetch"), json={"slots": [slot]}, headers=alpha.auth)
    assert r.json()["cells"] == {}
    r = await http.post(alpha.path("ack"), json={"slots": [slot]}, headers=alpha.auth)
    assert r.json() == {"removed": 0}
    # And beta still has it.
    r = await http.get(beta.path(f"slots/{slot}"), headers=beta.auth)
    assert r.content == cell


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "Bearer " + new_credential(),
        "Basic x",
        "Bearer",
        "Bearer not-base64!",
        "bearer " + "A" * 44,
    ],
    ids=["none", "another-credential", "basic", "bearer-alone", "not-base64", "lowercase"],
)
async def test_wrong_or_missing_credential_is_401(
    http: httpx.AsyncClient, alpha: Tenant, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    for method, path, body in [
        ("GET", alpha.path(f"slots/{new_slot()}"), None),
        ("POST", alpha.path("fetch"), {"slots": []}),
        ("POST", alpha.path("ack"), {"slots": []}),
    ]:
        r = await http.request(method, path, json=body, headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"


async def test_unknown_tenant_and_wrong_credential_look_the_same(
    http: httpx.AsyncClient, alpha: Tenant
) -> None:
    wrong = await http.post(
        alpha.path("fetch"),
        json={"slots": []},
        headers={"Authorization": f"Bearer {new_credential()}"},
    )
    ghost = Tenant("mission-ghost", new_credential())
    unknown = await http.post(ghost.path("fetch"), json={"slots": []}, headers=ghost.auth)
    assert (wrong.status_code, wrong.json(), dict(wrong.headers)) == (
        unknown.status_code,
        unknown.json(),
        dict(unknown.headers),
    )


async def test_padded_credential_is_accepted(http: httpx.AsyncClient, alpha: Tenant) -> None:
    r = await http.post(
        alpha.path("fetch"),
        json={"slots": []},
        headers={"Authorization": f"Bearer {alpha.credential}="},
    )
    assert r.status_code == 200


# -- info, probes, metrics, unknown routes ----------------------------------------


async def test_info(http: httpx.AsyncClient) -> None:
    r = await http.get("/v1/info")
    assert r.json() == {"cell_size": CELL, "version": __version__, "max_batch": 256}


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).json() == {"status": "ready"}


async def test_readyz_is_503_when_the_store_is_down(
    http: httpx.AsyncClient, store: MemoryRelayStore
) -> None:
    await store.close()
    r = await http.get("/readyz")
    assert r.status_code == 503
    error_of(r)


async def test_store_unavailable_during_deposit_is_503(
    http: httpx.AsyncClient, alpha: Tenant, store: MemoryRelayStore
) -> None:
    await store.close()
    r = await deposit(http, alpha.tenant_id, new_slot(), new_cell())
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    error_of(r)


async def test_unknown_route_and_method_are_json_errors(http: httpx.AsyncClient) -> None:
    r = await http.get("/v2/anything")
    assert r.status_code == 404 and "openapi" in error_of(r)
    r = await http.delete("/v1/info")
    assert r.status_code == 405
    error_of(r)


async def test_metrics_hold_no_tenant_slot_or_cell(http: httpx.AsyncClient, alpha: Tenant) -> None:
    slot, cell = new_slot(), new_cell()
    await deposit(http, alpha.tenant_id, slot, cell)
    await deposit(http, alpha.tenant_id, slot, new_cell())
    await http.post(alpha.path("fetch"), json={"slots": [slot]}, headers=alpha.auth)
    r = await http.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert 'backchannel_relay_deposits_total{outcome="created"} 1.0' in text
    assert 'backchannel_relay_deposits_total{outcome="conflict"} 1.0' in text
    assert 'backchannel_relay_requests_total{route="deposit",status="201"} 1.0' in text
    assert "backchannel_relay_cells_fetched_total 1.0" in text
    for secret in (slot, alpha.tenant_id, alpha.credential, hashlib.sha256(cell).hexdigest()):
        assert secret not in text


def _summed(text: str, metric: str) -> float:
    """The sum of ``metric`` over all its labels in a /metrics text."""
    lines = text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(metric + "{"))


async def test_every_request_to_a_slot_path_is_counted_once(
    http: httpx.AsyncClient, alpha: Tenant
) -> None:
    # PUT and GET take the fast path; HEAD (which the route accepts with GET)
    # and other methods go through routing. Each is one request in the metrics.
    slot, cell = new_slot(), new_cell()
    path = alpha.path(f"slots/{slot}")
    before = (await http.get("/metrics")).text
    sent = [
        await deposit(http, alpha.tenant_id, slot, cell),
        await http.get(path, headers=alpha.auth),
        await http.head(path),
        await http.head(path, headers=alpha.auth),
        await http.delete(path),
    ]
    assert [r.status_code for r in sent][:2] == [201, 200]
    after = (await http.get("/metrics")).text
    # The first scrape is counted once answered: it is in the second.
    for metric in ("backchannel_relay_requests_total", "backchannel_relay_request_seconds_count"):
        assert _summed(after, metric) - _summed(before, metric) == len(sent) + 1, metric


async def test_head_of_a_slot_answers_as_get_without_the_body(
    http: httpx.AsyncClient, alpha: Tenant, beta: Tenant
) -> None:
    # The route's 405 names HEAD among the methods it takes (Starlette adds it
    # to GET): HEAD reads the slot as GET does, the same status and headers.
    slot, cell = new_slot(), new_cell()
    path = alpha.path(f"slots/{slot}")
    assert (await deposit(http, alpha.tenant_id, slot, cell)).status_code == 201
    got = await http.get(path, headers=alpha.auth)
    head = await http.head(path, headers=alpha.auth)
    assert (head.status_code, head.content) == (200, b"")
    for name in ("content-type", "content-length", "cache-control"):
        assert head.headers[name] == got.headers[name], name
    assert head.headers["content-length"] == str(len(cell))
    # Counted as the read it is, not as a cell fetched.
    metrics = (await http.get("/metrics")).text
    assert 'backchannel_relay_requests_total{route="get_cell",status="200"} 2.0' in metrics
    assert "backchannel_relay_cells_fetched_total 1.0" in metrics
    # Refused as GET is, without the body: no credential, another tenant's, a
    # slot with nothing yet.
    for refused, status in (
        (await http.head(path), 401),
        (await http.head(path, headers=beta.auth), 401),
        (await http.head(alpha.path(f"slots/{new_slot()}"), headers=alpha.auth), 404),
    ):
        assert (refused.status_code, refused.content) == (status, b"")
        assert int(refused.headers["content-length"]) > 0  # what GET would have sent
    assert "allow" in (await http.delete(path)).headers


async def test_a_deposit_that_fails_is_answered_500_and_counted(
    app: Starlette, http: httpx.AsyncClient, alpha: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An operator alerts on 5xx in requests_total: a failure on the fast path
    # must be in it.
    async def broken(*args: object) -> object:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(app.state.service, "deposit", broken)
    before = (await http.get("/metrics")).text
    r = await deposit(http, alpha.tenant_id, new_slot(), new_cell())
    assert r.status_code == 500 and "the store broke" not in r.text
    after = (await http.get("/metrics")).text
    line = 'backchannel_relay_requests_total{route="deposit",status="500"}'
    counted = [float(x.rsplit(" ", 1)[1]) for x in after.splitlines() if x.startswith(line)]
    assert counted == [1.0], counted
    assert (
        _summed(after, "backchannel_relay_requests_total")
        - _summed(before, "backchannel_relay_requests_total")
        == 2
    )  # the deposit and the first scrape


# -- rate limits -------------------------------------------------------------


async def test_per_address_rate_limit(make_app: AppFactory, clock: Clock) -> None:
    async for http in running(make_app(ip_rate=1.0, ip_burst=5)):
        codes = [(await http.get("/healthz")).status_code for _ in range(7)]
        assert codes == [200] * 5 + [429] * 2
        r = await http.get("/v1/info")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        error_of(r)
        clock.now += 2  # two tokens back
        assert (await http.get("/healthz")).status_code == 200


async def test_per_tenant_rate_limit(make_app: AppFactory, clock: Clock) -> None:
    async for http in running(make_app(tenant_rate=1.0, tenant_burst=3)):
        a = await register(http, "mission-a")
        b = await register(http, "mission-b")
        codes = [
            (await deposit(http, a.tenant_id, new_slot(), new_cell())).status_code for _ in range(4)
        ]
        assert codes == [201, 201, 201, 429]
        # Deposits need no credential: whoever spent the tenant's deposit tokens,
        # its own devices' requests have tokens of their own, and a limit too.
        fetches = [
            (await http.post(a.path("fetch"), json={"slots": []}, headers=a.auth)).status_code
            for _ in range(4)
        ]
        assert fetches == [200, 200, 200, 429]
        # Another tenant is unaffected.
        assert (await deposit(http, b.tenant_id, new_slot(), new_cell())).status_code == 201
        clock.now += 1
        assert (await deposit(http, a.tenant_id, new_slot(), new_cell())).status_code == 201
        r = await http.post(a.path("fetch"), json={"slots": []}, headers=a.auth)
        assert r.status_code == 200


# -- logs ----------------------------------------------------------------------


async def test_logs_hold_no_slot_cell_or_credential(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture, store: MemoryRelayStore
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets_seen: list[str] = []
    async for http in running(make_app()):
        t = await register(http, "mission-log")
        secrets_seen.append(t.credential)
        for _ in range(3):
            slot, cell = new_slot(), new_cell()
            secrets_seen += [slot, hashlib.sha256(cell).hexdigest(), cell.hex()[:64]]
            await deposit(http, t.tenant_id, slot, cell)
            await deposit(http, t.tenant_id, slot, cell)
            await deposit(http, t.tenant_id, slot, new_cell())
            await deposit(http, t.tenant_id, slot, b"short")
            await http.get(t.path(f"slots/{slot}"), headers=t.auth)
            await http.post(t.path("fetch"), json={"slots": [slot]}, headers=t.auth)
            await http.post(t.path("ack"), json={"slots": [slot]}, headers=t.auth)
            await http.get(t.path(f"slots/{slot}"), headers={"Authorization": "Bearer x"})
        await store.close()  # store failures are logged too
        await deposit(http, t.tenant_id, new_slot(), new_cell())
        await store.open()
    # httpx's own INFO lines are the test client's log, not the relay's.
    relay_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    text = "\n".join(r.getMessage() for r in relay_records)
    assert "deposit" in text  # the access log did record the requests
    for secret in secrets_seen:
        assert secret not in text
