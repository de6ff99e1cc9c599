"""Versioned schema migrations, read from the SQL files shipped with the package.

Files live in ``migrations/<dialect>/NNNN_name.sql``. Each is applied in its own
transaction together with the row that records it in ``schema_version``; the
backends hold the write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory
lock) while they do, so concurrent openers apply each migration once.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load(dialect: str) -> tuple[Migration, ...]:
    """All migrations of ``dialect`` ("sqlite" or "postgres"), in version order."""
    folder = resources.files("backchannel.store").joinpath("migrations", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        # A packaging error, not a user error: the shipped files are inconsistent.
        raise RuntimeError(f"{dialect} migrations are not numbered 1..n: {versions}")
    return tuple(found)


def split_sqlite(script: str) -> list[str]:
    """Split a SQLite script into complete statements (trigger bodies included).

    ``executescript`` would commit any open transaction first, so migrations run
    statement by statement inside a transaction of our own.
    """
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise RuntimeError("a SQLite migration ends with an incomplete statement")
    return statements
