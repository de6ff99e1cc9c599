"""A test per migration and backend: applies on an empty database, re-opening is
idempotent, the version is recorded, a newer database is refused."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg
import pytest

from backchannel.errors import StoreUnavailable
from backchannel.store import _migrations
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.sqlite import SQLiteRelayStore

from .helpers import CRED, cell, slot

SQLITE = _migrations.load("sqlite")
POSTGRES = _migrations.load("postgres")
#: Objects each migration creates, checked by name.
SQLITE_OBJECTS = {
    1: {"tenants", "cells", "cells_deposited_at", "cells_count_insert"},
    2: {"log_head", "log_nodes", "log_leaves", "log_members"},
}
POSTGRES_OBJECTS = {
    1: {"tenants", "cells", "cells_deposited_at", "bc_deposit"},
    2: {
        "log_head",
        "log_nodes",
        "log_leaves",
        "log_members",
        "relay_key",
        "bc_deposit_logged",
    },
}


def test_every_migration_has_a_test_entry() -> None:
    assert [m.version for m in SQLITE] == sorted(SQLITE_OBJECTS)
    assert [m.version for m in POSTGRES] == sorted(POSTGRES_OBJECTS)


def test_sqlite_splitter_keeps_trigger_bodies_whole() -> None:
    statements = _migrations.split_sqlite(SQLITE[0].sql)
    triggers = [s for s in statements if s.startswith("CREATE TRIGGER")]
    assert len(triggers) == 2
    assert all(t.rstrip().endswith("END;") for t in triggers)
    assert all(sqlite3.complete_statement(s) for s in statements)


def _sqlite_versions(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
    finally:
        conn.close()


def _sqlite_objects(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


@pytest.mark.parametrize("migration", SQLITE, ids=lambda m: f"{m.version:04d}_{m.name}")
async def test_sqlite_migration(tmp_path: Path, migration: _migrations.Migration) -> None:
    path = tmp_path / "relay.db"
    store = SQLiteRelayStore(path)
    await store.open()
    await store.create_tenant("a", CRED, 5, now=0)
    await store.deposit("a", slot(1), cell(1), now=1)
    await store.close()
    assert (migration.version, migration.name) in _sqlite_versions(path)
    assert SQLITE_OBJECTS[migration.version] <= _sqlite_objects(path)

    again = SQLiteRelayStore(path)  # idempotent: nothing re-applied, data kept
    await again.open()
    try:
        assert await again.fetch("a", [slot(1)]) == {slot(1): cell(1)}
    finally:
        await again.close()
    assert _sqlite_versions(path) == [(m.version, m.name) for m in SQLITE]


async def test_sqlite_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = SQLiteRelayStore(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 'future', 0)", (len(SQLITE) + 1,))
    conn.close()
    with pytest.raises(StoreUnavailable, match="newer Backchannel"):
        await SQLiteRelayStore(path).open()


async def test_sqlite_concurrent_first_opens_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    stores = [SQLiteRelayStore(path) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    await asyncio.gather(*(s.close() for s in stores))
    assert _sqlite_versions(path) == [(m.version, m.name) for m in SQLITE]


def _pg_versions(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT version, name FROM schema_version ORDER BY version")
        return [(int(v), str(n)) for v, n in rows.fetchall()]


def _pg_objects(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema()"
            " UNION SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = current_schema()"
        )
        return {str(r[0]) for r in rows.fetchall()}


@pytest.mark.postgres
@pytest.mark.parametrize("migration", POSTGRES, ids=lambda m: f"{m.version:04d}_{m.name}")
async def test_postgres_migration(pg_dsn: str, migration: _migrations.Migration) -> None:
    assert _pg_objects(pg_dsn) == set()  # an empty schema
    store = PostgresRelayStore(pg_dsn)
    await store.open()
    await store.create_tenant("a", CRED, 5, now=0)
    await store.deposit("a", slot(1), cell(1), now=1)
    await store.close()
    assert (migration.version, migration.name) in _pg_versions(pg_dsn)
    assert POSTGRES_OBJECTS[migration.version] <= _pg_objects(pg_dsn)

    again = PostgresRelayStore(pg_dsn)
    await again.open()
    try:
        assert await again.fetch("a", [slot(1)]) == {slot(1): cell(1)}
    finally:
        await again.close()
    assert _pg_versions(pg_dsn) == [(m.version, m.name) for m in POSTGRES]


@pytest.mark.postgres
async def test_postgres_concurrent_first_opens_apply_once(pg_dsn: str) -> None:
    stores = [PostgresRelayStore(pg_dsn, pool_size=2) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    await asyncio.gather(*(s.close() for s in stores))
    assert _pg_versions(pg_dsn) == [(m.version, m.name) for m in POSTGRES]


@pytest.mark.postgres
async def test_postgres_newer_schema_is_refused(pg_dsn: str) -> None:
    store = PostgresRelayStore(pg_dsn)
    await store.open()
    await store.close()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "INSERT INTO schema_version (version, name) VALUES (%s, 'future')", (len(POSTGRES) + 1,)
        )
    with pytest.raises(StoreUnavailable, match="newer Backchannel"):
        await PostgresRelayStore(pg_dsn).open()


async def test_sqlite_0002_logs_cells_stored_before_it_as_unlogged(tmp_path: Path) -> None:
    """A database at version 1 with cells gains the log; old cells have no position."""
    path = tmp_path / "relay.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("PRAGMA application_id = 1111705682")
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        for statement in _migrations.split_sqlite(SQLITE[0].sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1, ?, 0)", (SQLITE[0].name,))
        conn.execute(
            "INSERT INTO tenants (tenant_id, credential_hash, quota_cells, created_at)"
            " VALUES ('a', ?, 5, 0)",
            (CRED,),
        )
        conn.execute(
            "INSERT INTO cells (tenant_id, slot, cell_id, cell, deposited_at)"
            " VALUES ('a', ?, ?, ?, 1)",
            (slot(1), b"\x00" * 32, cell(1)),
        )
    conn.close()
    store = SQLiteRelayStore(path)
    await store.open()
    try:
        logged = await store.fetch_logged("a", [slot(1)])
        assert logged[slot(1)].leaf_index is None
        assert (await store.log_head()).size == 0
        result = await store.deposit("a", slot(2), cell(2), now=2)
        assert (result.leaf_index, result.batch_position, result.batch_size) == (0, 0, 1)
    finally:
        await store.close()
    assert _sqlite_versions(path) == [(m.version, m.name) for m in SQLITE]
