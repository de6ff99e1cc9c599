"""What the stores' call groups (tenants, intake, log reads) need from the store
they are mixed into: one declaration per backend, not one per group."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")


class SQLiteCalls:
    """The SQLite store supplies its writer (group commit) and its readers."""

    async def _write(self, work: Callable[[sqlite3.Connection], T], single: bool = False) -> T:
        raise NotImplementedError

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError


class PostgresCalls:
    """The PostgreSQL store supplies one transaction on a pooled connection."""

    async def _run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        raise NotImplementedError
