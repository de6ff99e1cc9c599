"""A test per migration and backend: applies on an empty database, re-opening is
idempotent, the version is recorded, a newer database is refused."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import psycopg
import pytest

from backchannel.errors import StoreUnavailable
from backchannel.protocol import merkle
from backchannel.protocol.misbehaviour import LogLeaf, cell_entry
from backchannel.store import _migrations
from backchannel.store.postgres import PostgresRelayStore
from backchannel.store.relay_store import BatchTree
from backchannel.store.sqlite import SQLiteRelayStore

from .helpers import CRED, cell, slot
from .test_log import check_all_cells

SQLITE = _migrations.load("sqlite")
POSTGRES = _migrations.load("postgres")
#: Objects each migration creates, checked by name (a column as ``table.column``).
SQLITE_OBJECTS = {
    1: {"tenants", "cells", "cells_deposited_at", "cells_count_insert"},
    2: {"log_head", "log_nodes", "log_leaves", "log_members"},
    3: {"log_leaves", "log_nodes", "log_members"},
    4: {"cells_count_delete", "cells_count_spend"},
    5: {"intake_tenants", "intake_requests", "intake_requests_received"},
    6: {"log_checkpoint"},
    7: {"tenants.rotation_version", "tenants.rotation_seq", "tenants.rotation_roster"},
    8: {"intake_tenants.fetched_seq"},
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
    3: {"bc_cells_deleted"},
    4: {"intake_tenants", "intake_requests", "intake_requests_received"},
    5: {"log_checkpoint"},
    6: {"tenants.rotation_version", "tenants.rotation_seq", "tenants.rotation_roster"},
    7: {"intake_tenants.fetched_seq"},
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
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            rows = conn.execute("SELECT name FROM pragma_table_info(?)", (table,))
            names |= {f"{table}.{r[0]}" for r in rows}
        return names
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


def _locked() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database is locked")
    exc.sqlite_errorcode = sqlite3.SQLITE_BUSY
    return exc


async def test_sqlite_open_retries_a_lock_answered_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While another opener switches a new file to WAL SQLite may answer BUSY
    # without waiting; opening tries again within the busy timeout.
    from backchannel.store import _sqlite_conn

    real = _sqlite_conn._connect_writer_once
    tries = []

    def flaky(*args: object) -> sqlite3.Connection:
        tries.append(1)
        if len(tries) < 3:
            raise _locked()
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_sqlite_conn, "_connect_writer_once", flaky)
    store = SQLiteRelayStore(tmp_path / "relay.db")
    await store.open()
    await store.close()
    assert len(tries) == 3
    assert _sqlite_versions(tmp_path / "relay.db") == [(m.version, m.name) for m in SQLITE]


async def test_sqlite_open_gives_up_on_a_lock_held_past_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backchannel.store import _sqlite_conn

    def held(*args: object) -> sqlite3.Connection:
        raise _locked()

    monkeypatch.setattr(_sqlite_conn, "_connect_writer_once", held)
    store = SQLiteRelayStore(tmp_path / "relay.db", busy_timeout_ms=100)
    with pytest.raises(StoreUnavailable, match="locked"):
        await store.open()


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
            " UNION SELECT table_name || '.' || column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
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


def _version_2_database(path: Path, sizes: list[int], expired: int) -> list[bytes]:
    """A database at version 2 whose log has one batch of ``sizes[i]`` cells per leaf.

    Written in 0002's layout (a row per node, leaves and members apart) as
    that version's store wrote it; the first ``expired`` batches are past
    retention (cells and members gone). Returns the leaves.
    """
    conn = sqlite3.connect(path)
    leaves: list[bytes] = []
    with conn:
        conn.execute("PRAGMA application_id = 1111705682")
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        for migration in SQLITE[:2]:
            for statement in _migrations.split_sqlite(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version VALUES (?, ?, 0)", (migration.version, migration.name)
            )
        conn.execute(
            "INSERT INTO tenants (tenant_id, credential_hash, quota_cells, created_at)"
            " VALUES ('a', ?, 1000, 0)",
            (CRED,),
        )
        frontier = merkle.Frontier()
        number = 0
        for index, size in enumerate(sizes):
            when = 100 + index
            entries = []
            for position in range(size):
                cell_id = hashlib.sha256(cell(number)).digest()
                entries.append(merkle.leaf_hash(cell_entry("a", slot(number), cell_id)))
                if index >= expired:
                    conn.execute(
                        "INSERT INTO cells (tenant_id, slot, cell_id, cell, deposited_at,"
                        " leaf_index, batch_position) VALUES ('a', ?, ?, ?, ?, ?, ?)",
                        (slot(number), cell_id, cell(number), when, index, position),
                    )
                    conn.execute(
                        "INSERT INTO log_members (leaf_index, hashes) VALUES (?, ?)"
                        " ON CONFLICT (leaf_index) DO UPDATE SET hashes = ?",
                        (index, b"".join(entries), b"".join(entries)),
                    )
                number += 1
            leaf = LogLeaf(index, size, BatchTree(entries).root(), when).encode()
            leaves.append(leaf)
            h = merkle.leaf_hash(leaf)
            conn.execute("INSERT INTO log_nodes VALUES (0, ?, ?)", (index, h))
            hashes, level, i = list(frontier.hashes), 0, index
            while i & 1:
                h = merkle.node_hash(hashes.pop(), h)
                level, i = level + 1, i >> 1
                conn.execute("INSERT INTO log_nodes VALUES (?, ?, ?)", (level, i, h))
            frontier = frontier.append(merkle.leaf_hash(leaf))
            conn.execute("INSERT INTO log_leaves VALUES (?, ?, ?)", (index, leaf, when))
        conn.execute(
            "UPDATE log_head SET size = ?, frontier = ?, time = ? WHERE id = 1",
            (frontier.size, b"".join(frontier.hashes), 100 + len(sizes) - 1),
        )
    conn.close()
    return leaves


async def test_sqlite_0003_moves_nodes_and_members_into_leaf_rows(tmp_path: Path) -> None:
    """A log written in 0002's layout serves the same leaves and proofs after 0003."""
    path = tmp_path / "relay.db"
    sizes = [index % 3 + 1 for index in range(37)]
    expired = 5
    leaves = _version_2_database(path, sizes, expired)
    conn = sqlite3.connect(path)
    old_nodes = set(conn.execute("SELECT level, idx, hash FROM log_nodes").fetchall())
    old_members = conn.execute("SELECT * FROM log_members ORDER BY leaf_index").fetchall()
    conn.close()
    n = len(leaves)
    kept = list(range(sum(sizes[:expired]), sum(sizes)))

    store = SQLiteRelayStore(path)
    await store.open()
    try:
        head = await store.log_head()
        assert (head.size, head.root) == (n, merkle.root(leaves))
        for index, leaf in enumerate(leaves):
            assert await store.log_leaf(index) == leaf
            for size in (index + 1, n):
                proof = await store.inclusion_proof(index, size)
                merkle.verify_inclusion(
                    merkle.leaf_hash(leaf), index, size, proof, merkle.root(leaves[:size])
                )
        for old in range(1, n):
            proof = await store.consistency_proof(old, n)
            merkle.verify_consistency(old, n, merkle.root(leaves[:old]), head.root, proof)
        for index in range(expired):
            with pytest.raises(LookupError):
                await store.batch_proof(index, 0)
        await check_all_cells(store, "a", kept)
        # A new batch appends after the migrated ones.
        result = await store.deposit("a", slot(1000), cell(1000), now=500)
        assert (result.leaf_index, result.batch_position, result.batch_size) == (n, 0, 1)
        await check_all_cells(store, "a", [*kept, 1000])
        # Expiry continues from the oldest batch that kept its members.
        assert await store.expire(now=100 + expired + 2, retention_seconds=0) > 0
        for index in range(expired + 3):
            with pytest.raises(LookupError):
                await store.batch_proof(index, 0)
        assert await store.batch_proof(expired + 3, 0) is not None
    finally:
        await store.close()
    assert _sqlite_versions(path) == [(m.version, m.name) for m in SQLITE]
    # The old tables' columns stay readable as views.
    conn = sqlite3.connect(path)
    try:
        nodes = set(conn.execute("SELECT level, idx, hash FROM log_nodes").fetchall())
        assert old_nodes <= nodes and len(nodes) == 2 * (n + 1) - bin(n + 1).count("1")
        members = conn.execute("SELECT * FROM log_members ORDER BY leaf_index").fetchall()
        assert members[0][0] == expired + 3 and members[: len(old_members) - 3] == old_members[3:]
    finally:
        conn.close()
