"""Fixtures for the relay tests: an in-process app over the memory store."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore

OPERATOR_TOKEN = "operator-token-for-tests"
CELL = 4096


class Clock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def new_credential() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def new_slot() -> str:
    return secrets.token_hex(32)


def new_cell(size: int = CELL) -> bytes:
    return secrets.token_bytes(size)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the test PostgreSQL database (skips, saying why, without one)."""
    from .procs import fresh_pg_schema, postgres_reachable

    reason = postgres_reachable()
    if reason:
        pytest.skip(reason)
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path) -> RelaySettings:
    return RelaySettings(
        data_dir=tmp_path,
        operator_token=OPERATOR_TOKEN,
        ip_rate=0,
        tenant_rate=0,
        expire_interval_seconds=3600,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryRelayStore:
    return MemoryRelayStore()


AppFactory = Callable[..., Starlette]


@pytest.fixture
def make_app(settings: RelaySettings, store: MemoryRelayStore, clock: Clock) -> AppFactory:
    def make(**changes: object) -> Starlette:
        return create_app(replace(settings, **changes), store, clock=clock)  # type: ignore[arg-type]

    return make


@pytest.fixture
def app(make_app: AppFactory) -> Starlette:
    return make_app()


async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            yield client


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running(app):
        yield client


class Tenant:
    def __init__(self, tenant_id: str, credential: str) -> None:
        self.tenant_id = tenant_id
        self.credential = credential

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}

    def path(self, rest: str) -> str:
        return f"/v1/tenants/{self.tenant_id}/{rest}"


async def register(http: httpx.AsyncClient, tenant_id: str, quota: int | None = None) -> Tenant:
    credential = new_credential()
    body: dict[str, object] = {"tenant_id": tenant_id, "credential": credential}
    if quota is not None:
        body["quota_cells"] = quota
    r = await http.post(
        "/v1/tenants", json=body, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    assert r.status_code == 201, r.text
    return Tenant(tenant_id, credential)


async def deposit(http: httpx.AsyncClient, tenant: str, slot: str, cell: bytes) -> httpx.Response:
    return await http.put(
        f"/v1/tenants/{tenant}/slots/{slot}",
        content=cell,
        headers={"Content-Type": "application/octet-stream"},
    )


@pytest.fixture
async def alpha(http: httpx.AsyncClient) -> Tenant:
    return await register(http, "mission-alpha")


@pytest.fixture
async def beta(http: httpx.AsyncClient) -> Tenant:
    return await register(http, "mission-beta")
