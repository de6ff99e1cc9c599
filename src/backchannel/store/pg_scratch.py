"""Scratch PostgreSQL schemas: one fresh, empty schema per test or benchmark run.

The relay's PostgreSQL store keeps its tables in the connection's
``search_path``, so a schema of its own isolates one run from every other on
the same server. Tests and benchmarks share this one helper; the relay itself
never calls it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
from psycopg import sql


def unreachable_reason(dsn: str) -> str | None:
    """None when the server at ``dsn`` answers, else one line saying why not."""
    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means "skip", with the reason
        text = str(exc).strip()
        first_line = text.splitlines()[0] if text else type(exc).__name__
        where = psycopg.conninfo.conninfo_to_dict(dsn)
        return (
            f"PostgreSQL not reachable at {where.get('host')}:{where.get('port', 5432)}"
            f" ({type(exc).__name__}: {first_line})"
        )
    return None


def dsn_with_schema(dsn: str, schema: str) -> str:
    """``dsn`` with its ``search_path`` set to ``schema``."""
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options={quote(f'-csearch_path={schema}', safe='')}"


@contextmanager
def scratch_schema(dsn: str, prefix: str) -> Iterator[str]:
    """Create an empty schema ``<prefix><random>``; yield a DSN using it; drop it after."""
    schema = prefix + secrets.token_hex(6)
    ident = sql.Identifier(schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    try:
        yield dsn_with_schema(dsn, schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))
