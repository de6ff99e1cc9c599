"""The PostgreSQL store's connections: durable commits, the schema, the shared relay key."""

from __future__ import annotations

from typing import Any

import psycopg

from backchannel.errors import StoreUnavailable
from backchannel.store import _log, _migrations


async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Per new connection: make commits durable even if the server default is not."""
    cur = await conn.execute("SHOW synchronous_commit")
    row = await cur.fetchone()
    if row is not None and row[0] == "off":
        await conn.execute("SET synchronous_commit = on")


async def apply_migrations(conn: psycopg.AsyncConnection[Any]) -> None:
    """Apply pending migrations, each in its own transaction under an advisory lock."""
    migrations = _migrations.load("postgres")
    while True:
        async with conn.transaction():
            # Serialises concurrent openers of the same schema; others wait here.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('backchannel.migrate'),"
                " hashtext(coalesce(current_schema(), '')))"
            )
            cur = await conn.execute(
                "SELECT current_schema(), EXISTS (SELECT 1 FROM pg_tables"
                " WHERE schemaname = current_schema() AND tablename = 'schema_version')"
            )
            row = await cur.fetchone()
            if row is None or row[0] is None:
                raise StoreUnavailable(
                    "the search_path names no existing schema; create the schema or fix the "
                    "DSN options"
                )
            if not row[1]:
                await conn.execute(
                    "CREATE TABLE schema_version (version integer NOT NULL PRIMARY KEY,"
                    " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            version_row = await cur.fetchone()
            current = 0 if version_row is None else int(version_row[0])
            if current > len(migrations):
                raise StoreUnavailable(
                    "the relay database was written by a newer Backchannel; upgrade the relay"
                )
            if current == len(migrations):
                return
            migration = migrations[current]
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )


async def drop_head_ahead(conn: psycopg.AsyncConnection[Any]) -> int | None:
    """Forget a stored signed head of more leaves than the log holds; its size, if one was.

    Only a log put back under a relay that kept serving (a restore that should
    have been refused) leaves one: served, it would speak for leaves that do
    not exist. Clients that saw it will report the rewind, which is what
    happened.
    """
    cur = await conn.execute(
        "UPDATE log_head SET signed = NULL, signed_size = -1"
        " WHERE id = 1 AND signed_size > size RETURNING size"
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def load_or_create_key(conn: psycopg.AsyncConnection[Any]) -> Any:
    """The relay key shared by every process on this database, created by the first."""
    ed, ml = _log.new_key_seeds()
    await conn.execute(
        "INSERT INTO relay_key (id, ed25519_seed, mldsa65_seed) VALUES (1, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (ed, ml),
    )
    cur = await conn.execute("SELECT ed25519_seed, mldsa65_seed FROM relay_key WHERE id = 1")
    row = await cur.fetchone()
    if row is None:
        raise StoreUnavailable("the relay key row vanished; check the database")
    return _log.key_from_seeds(bytes(row[0]), bytes(row[1]))
