"""RelayClient against the in-process relay, and against scripted failures."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from backchannel.client.relay_client import (
    RelayClient,
    RelayRefusal,
    RetryPolicy,
    new_credential,
)
from backchannel.errors import RelayRefused, RelayUnavailable

from .conftest import OPERATOR_TOKEN, new_cell

SLOT = bytes(range(32))


def _client(
    app: Starlette, tenant: str | None = None, credential: str | None = None
) -> RelayClient:
    return RelayClient("http://relay", tenant, credential, transport=httpx.ASGITransport(app=app))


async def test_full_round_trip(app: Starlette) -> None:
    credential = new_credential()
    async with app.router.lifespan_context(app), _client(app, "mission-c", credential) as c:
        info = await c.info()
        assert (info.cell_size, info.max_batch) == (4096, 256)
        assert (
            await c.register_tenant(
                "mission-c", credential, quota_cells=50, operator_token=OPERATOR_TOKEN
            )
            == 50
        )
        cell = new_cell()
        receipt = await c.deposit("mission-c", SLOT, cell)
        assert receipt.created
        assert not (await c.deposit("mission-c", SLOT, cell)).created
        assert await c.get(SLOT) == cell
        assert await c.get(bytes(32)) is None
        assert await c.fetch([SLOT, bytes(32)]) == {SLOT: cell}
        assert await c.ack([SLOT]) == 1
        assert await c.fetch([SLOT]) == {}


async def test_refusals_carry_status_and_no_slot(app: Starlette) -> None:
    credential = new_credential()
    async with app.router.lifespan_context(app), _client(app, "mission-d", credential) as c:
        await c.register_tenant("mission-d", credential, operator_token=OPERATOR_TOKEN)
        await c.deposit("mission-d", SLOT, new_cell())
        with pytest.raises(RelayRefusal) as conflict:
            await c.deposit("mission-d", SLOT, new_cell())
        assert conflict.value.status == 409
        with pytest.raises(RelayRefusal) as size:
            await c.deposit("mission-d", SLOT, b"short")
        assert size.value.status == 400 and "4096" in str(size.value)
        with pytest.raises(RelayRefused) as taken:
            await c.register_tenant("mission-d", credential, operator_token=OPERATOR_TOKEN)
        for err in (conflict.value, size.value, taken.value):
            text = str(err)
            assert SLOT.hex() not in text and credential not in text and "\n" not in text
    async with app.router.lifespan_context(app), _client(app, "mission-d", new_credential()) as c:
        with pytest.raises(RelayRefusal) as unauthorized:
            await c.fetch([SLOT])
        assert unauthorized.value.status == 401


def _scripted(responses: list[Callable[[httpx.Request], httpx.Response]]) -> httpx.MockTransport:
    calls = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        return next(calls)(request)

    return httpx.MockTransport(handler)


def _refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _answer(
    status: int, body: object | None = None, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body, headers=headers)


def _retrying(
    transport: httpx.AsyncBaseTransport, attempts: int = 4
) -> tuple[RelayClient, list[float]]:
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    client = RelayClient(
        "http://relay",
        transport=transport,
        retry=RetryPolicy(attempts, 0.1, 1.0),
        rng=random.Random(7),
        sleep=sleep,
    )
    return client, delays


async def test_retries_connection_errors_and_5xx_then_succeeds() -> None:
    cell = new_cell()
    ok = {"cell_id": hashlib.sha256(cell).hexdigest(), "created": True}
    client, delays = _retrying(
        _scripted(
            [
                _refuse_connection,
                _answer(503, {"error": "busy"}, {"Retry-After": "1"}),
                _answer(500, {"error": "x"}),
                _answer(201, ok),
            ]
        )
    )
    async with client:
        receipt = await client.deposit("mission", SLOT, cell)
    assert receipt.created
    assert len(delays) == 3
    assert delays[1] >= 1.0  # Retry-After honoured
    assert all(0 <= d <= 1.0 for d in delays)


async def test_gives_up_after_bounded_attempts() -> None:
    client, delays = _retrying(_scripted([_refuse_connection] * 4))
    async with client:
        with pytest.raises(RelayUnavailable) as err:
            await client.info()
    assert len(delays) == 3
    assert "unreachable" in str(err.value)
    client, _ = _retrying(_scripted([_answer(503, {"error": "down"})] * 4))
    async with client:
        with pytest.raises(RelayUnavailable):
            await client.info()


async def test_client_errors_are_not_retried() -> None:
    client, delays = _retrying(_scripted([_answer(409, {"error": "a different cell\nhere"})]))
    async with client:
        with pytest.raises(RelayRefusal) as err:
            await client.deposit("mission", SLOT, new_cell())
    assert delays == [] and err.value.status == 409
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "body", [{"cell_id": "00" * 32, "created": True}, {"cell_id": "zz"}, [], "text"]
)
async def test_a_lying_or_broken_relay_is_refused(body: object) -> None:
    client, _ = _retrying(_scripted([_answer(201, body)]))
    async with client:
        with pytest.raises(RelayRefused):
            await client.deposit("mission", SLOT, new_cell())


async def test_malformed_fetch_answer_is_refused() -> None:
    client = RelayClient(
        "http://relay",
        "mission",
        new_credential(),
        transport=_scripted([_answer(200, {"cells": {"zz": "!!"}})]),
    )
    async with client:
        with pytest.raises(RelayRefused):
            await client.fetch([SLOT])


async def test_tenant_calls_need_a_credential() -> None:
    async with RelayClient("http://relay", transport=_scripted([])) as client:
        with pytest.raises(RelayRefused):
            await client.fetch([SLOT])
