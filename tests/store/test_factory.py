"""relay_store_from_url: one URL per backend, clear refusals otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.errors import ConfigError
from backchannel.store.factory import relay_store_from_url, sqlite_path, sqlite_url
from backchannel.store.memory import MemoryRelayStore
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.sqlite import SQLiteRelayStore

from .helpers import CRED, cell, slot


async def test_memory_url() -> None:
    store = relay_store_from_url("memory://")
    assert isinstance(store, MemoryRelayStore)


async def test_absolute_sqlite_url_creates_that_file(tmp_path: Path) -> None:
    path = tmp_path / "abs.db"
    store = relay_store_from_url(f"sqlite://{path}")  # sqlite:// + /abs/path
    assert isinstance(store, SQLiteRelayStore)
    await store.open()
    await store.create_tenant("a", CRED, 1, now=0)
    await store.deposit("a", slot(1), cell(1), now=0)
    await store.close()
    assert path.is_file()


async def test_relative_sqlite_url_is_under_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    store = relay_store_from_url("sqlite://data/rel.db")
    await store.open()
    await store.close()
    assert (tmp_path / "data" / "rel.db").is_file()


def test_postgres_url_is_not_connected_yet() -> None:
    for url in ("postgresql://u@127.0.0.1:1/db", "postgres://u@127.0.0.1:1/db"):
        assert isinstance(relay_store_from_url(url), PostgresRelayStore)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:hunter2@127.0.0.1/db",
        "redis://127.0.0.1",
        "relay.db",
        "",
        "sqlite://",
        "sqlite:///",
        "sqlite:///tmp/x.db?mode=ro",
        "memory://somewhere",
    ],
)
def test_bad_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        relay_store_from_url(url)
    assert "hunter2" not in str(caught.value)


async def test_cell_size_reaches_the_store(tmp_path: Path) -> None:
    store = relay_store_from_url(f"sqlite://{tmp_path / 'big.db'}", cell_size=8192)
    await store.open()
    try:
        await store.create_tenant("a", CRED, 2, now=0)
        assert (await store.deposit("a", slot(1), cell(1) * 2, now=0)).created
        with pytest.raises(ConfigError):
            await store.deposit("a", slot(2), cell(2), now=0)
    finally:
        await store.close()


@pytest.mark.parametrize("name", ["plain.db", "with space.db", "odd?#%41.db", "ünïcode.db"])
def test_sqlite_url_of_a_path_opens_that_file(tmp_path: Path, name: str) -> None:
    url = sqlite_url(tmp_path / name)
    assert url.startswith("sqlite:///")
    assert sqlite_path(url) == str(tmp_path / name)
    store = relay_store_from_url(url)
    assert isinstance(store, SQLiteRelayStore)


def test_sqlite_url_makes_a_relative_path_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_url("relay.db") == f"sqlite://{tmp_path / 'relay.db'}"


def test_sqlite_path_is_none_for_other_schemes() -> None:
    for url in ("memory://", "postgresql://u@127.0.0.1/db", "relay.db", ""):
        assert sqlite_path(url) is None
