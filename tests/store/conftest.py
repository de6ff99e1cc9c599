"""Fixtures for the relay store suite: one behavioural suite, every backend.

PostgreSQL tests run against a real server (``BACKCHANNEL_TEST_PG_DSN``, by
default ``postgresql://postgres@127.0.0.1:5432/test``). Every test gets its own
randomly named schema, selected through ``search_path`` in the connection
options and dropped afterwards, so concurrent runs never collide. With no
server, those tests are skipped and say why.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import backchannel  # noqa: F401
except ImportError:  # not installed into the venv yet (``make`` does): use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))


from backchannel.store import pg_scratch
from backchannel.store.memory import MemoryRelayStore
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.relay_store import RelayStore
from backchannel.store.sqlite import SQLiteRelayStore

PG_DSN = os.environ.get("BACKCHANNEL_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def pg_unreachable_reason() -> str | None:
    """None when the test server answers, else the reason to skip."""
    reason = pg_scratch.unreachable_reason(PG_DSN)
    return None if reason is None else f"{reason}; these tests need a real server"


def require_pg() -> None:
    reason = pg_unreachable_reason()
    if reason is not None:
        pytest.skip(reason)


def dsn_with_schema(schema: str) -> str:
    return pg_scratch.dsn_with_schema(PG_DSN, schema)


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh empty schema for one test; yields a DSN that uses it; drops it after."""
    require_pg()
    with pg_scratch.scratch_schema(PG_DSN, f"bc_test_{os.getpid()}_") as dsn:
        yield dsn


@dataclass
class StoreMaker:
    """Makes stores of one backend over one shared storage location.

    ``make()`` twice gives two stores on the same database, as two relay
    processes (or one relay before and after a restart) would see it. The memory
    backend has no storage outside its object, so it always returns that object.
    """

    backend: str
    make: Callable[[], RelayStore]
    location: str = ""

    @property
    def shares_storage(self) -> bool:
        return self.backend != "memory"

    @asynccontextmanager
    async def two(self) -> AsyncIterator[tuple[RelayStore, RelayStore]]:
        """Two open stores on the one database (skips the memory backend)."""
        if not self.shares_storage:
            pytest.skip("the memory store lives inside one object; there is nothing to share")
        first, second = self.make(), self.make()
        await first.open()
        await second.open()
        try:
            yield first, second
        finally:
            await first.close()
            await second.close()


BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def maker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    backend: str = request.param
    if backend == "memory":
        only = MemoryRelayStore()
        yield StoreMaker(backend, lambda: only)
    elif backend == "sqlite":
        path = str(tmp_path / "relay.db")
        yield StoreMaker(backend, lambda: SQLiteRelayStore(path), path)
    else:
        with pg_schema() as dsn:
            yield StoreMaker(backend, lambda: PostgresRelayStore(dsn), dsn)


@pytest.fixture
async def store(maker: StoreMaker) -> AsyncIterator[RelayStore]:
    opened = maker.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A DSN on a fresh schema of its own (PostgreSQL-only tests)."""
    with pg_schema() as dsn:
        yield dsn
