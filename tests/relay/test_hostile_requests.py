"""Requests built to break the relay's parsing get a clear 4xx, never a 500.

Each of these once reached an unhandled exception (a 500 and a traceback in the
operator's log, some without any credential), or refused a body the protocol
allows.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.batch import (
    INTAKE_ASK_LEN,
    MAX_QUERIES,
    FetchBatch,
    IntakeAsk,
    Query,
)
from backchannel.relay.requests import HTTPRefusal, receive_body
from backchannel.relay.settings import RelaySettings
from backchannel.store.sqlite import SQLiteRelayStore

from .conftest import AppFactory, Tenant, register, running

OCTET = {"Content-Type": "application/octet-stream"}
#: Arrays nested deeper than Python's recursion limit (1,000), in a body within
#: the smallest JSON limit (1 KiB, the intake fetch's).
DEEP = b"[" * 1020


@pytest.mark.parametrize(
    "method, path, auth",
    [
        ("POST", "/v1/tenants", "operator"),
        ("POST", "/v1/tenants/mission-nobody/credential", None),
        ("POST", "/v1/intake/mission-alpha/requests", None),
        ("POST", "/v1/tenants/mission-alpha/fetch", "tenant"),
        ("POST", "/v1/tenants/mission-alpha/ack", "tenant"),
        ("POST", "/v1/tenants/mission-alpha/intake/fetch", "tenant"),
    ],
)
async def test_json_nested_thousands_deep_is_a_400(
    http: httpx.AsyncClient, alpha: Tenant, method: str, path: str, auth: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if auth == "tenant":
        headers.update(alpha.auth)
    elif auth == "operator":
        from .conftest import OPERATOR_TOKEN

        headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
    r = await http.request(method, path, content=DEEP, headers=headers)
    assert r.status_code == 400, (r.status_code, r.text[:200])
    assert r.json() == {"error": "the request body is not valid JSON"}


def _receiver(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


@pytest.mark.parametrize(
    "length, status",
    [
        ("9" * 5000, 413),  # far over the limit, and over int()'s 4,300 digits
        ("1" + "0" * 5000, 413),
        ("0" * 5000 + "99999", 413),  # leading zeros, still over 4,096
    ],
)
async def test_a_content_length_of_thousands_of_digits_is_refused_cleanly(
    length: str, status: int
) -> None:
    with pytest.raises(HTTPRefusal) as refused:
        await receive_body(
            _receiver(b""), "application/octet-stream", length, 4096, "application/octet-stream"
        )
    assert refused.value.status == status


async def test_a_long_content_length_of_leading_zeros_reads_the_body() -> None:
    body = secrets.token_bytes(4096)
    length = "0" * 5000 + "4096"
    got = await receive_body(
        _receiver(body), "application/octet-stream", length, 4096, "application/octet-stream"
    )
    assert got == body


def _fetch_with_ask_after(after: int, is_open: bool) -> bytes:
    """A batch fetch whose intake ask names ``after``, which the encoder refuses
    past 2^63 - 1: the number is written into the bytes as a client could."""
    body = FetchBatch(0, 0, (), (), IntakeAsk(0, 10, is_open)).encode()
    ask = len(body) - INTAKE_ASK_LEN
    return body[: ask + 1] + after.to_bytes(8, "big") + body[ask + 9 :]


def test_an_intake_ask_past_the_largest_number_does_not_encode_or_decode() -> None:
    with pytest.raises(LocalProtocolError):
        FetchBatch(0, 0, (), (), IntakeAsk(2**63, 10, None)).encode()
    assert FetchBatch.decode(_fetch_with_ask_after(2**63 - 1, True)).intake == IntakeAsk(
        2**63 - 1, 10, True
    )
    for after in (2**63, 2**64 - 1):
        with pytest.raises(DecodeError):
            FetchBatch.decode(_fetch_with_ask_after(after, True))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_an_intake_ask_past_the_largest_number_is_a_400_and_changes_nothing(
    make_app: AppFactory, tmp_path: Path, kind: str
) -> None:
    app = make_app()
    if kind == "sqlite":
        from backchannel.relay.app import create_app

        settings: RelaySettings = app.state.service.settings
        backend = SQLiteRelayStore(str(tmp_path / "relay.db"))
        app = create_app(settings, backend)
    async for http in running(app):
        alpha = await register(http, "mission-alpha")
        assert (await http.get("/v1/intake/mission-alpha/pow")).status_code == 404  # closed
        for after in (2**63, 2**64 - 1):
            r = await http.post(
                alpha.path("batch/fetch"),
                content=_fetch_with_ask_after(after, True),  # and asks to open the intake
                headers={**OCTET, **alpha.auth},
            )
            assert r.status_code == 400, (r.status_code, r.text[:200])
        assert (await http.get("/v1/intake/mission-alpha/pow")).status_code == 404  # still


@pytest.mark.parametrize("compact", [False, True])
async def test_the_largest_fetch_the_protocol_allows_is_within_the_limit(
    http: httpx.AsyncClient, alpha: Tenant, settings: RelaySettings, compact: bool
) -> None:
    slots = tuple(secrets.token_bytes(32) for _ in range(settings.max_batch))
    queries = tuple(Query.none() for _ in range(MAX_QUERIES))
    batch = FetchBatch(0, 0, slots, queries, IntakeAsk(0, 10, None), compact=compact)
    body = batch.encode()
    assert len(body) == settings.batch_fetch_limit
    r = await http.post(alpha.path("batch/fetch"), content=body, headers={**OCTET, **alpha.auth})
    assert r.status_code == 200, r.text[:200]
