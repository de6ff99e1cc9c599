"""A vault whose disk fails on cue: a full disk at a chosen statement, or a death at a commit.

:class:`FaultyConnection` stands in for a :class:`~backchannel.client.vault.Vault`'s
SQLite connection and passes every call through, except the statement chosen
to fail: it raises the error SQLite raises when the disk is full
(``SQLITE_FULL``), before the statement runs, as SQLite undoes a statement
that fails. :func:`install` puts one into an open vault; :func:`patch_open`
puts one into every vault opened afterwards in this process (the command
line opens its own).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backchannel.client.vault import Vault

#: (SQL, parameters) -> whether this statement fails.
Rule = Callable[[str, Sequence[Any]], bool]


def disk_full() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = sqlite3.SQLITE_FULL
    exc.sqlite_errorname = "SQLITE_FULL"
    return exc


class FaultyConnection:
    """An SQLite connection whose ``fail_at``-th statement (counted from 1, undoing
    statements aside), or each statement ``fail_when`` picks, finds the disk full;
    with ``kill_at_commit`` the process SIGKILLs itself at that COMMIT, before it
    runs or, with ``kill_after``, right after."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.count = 0
        self.commits = 0
        self.failures = 0
        self.fail_at: int | None = None
        self.fail_when: Rule | None = None
        self.kill_at_commit: int | None = None
        self.kill_after = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _before(self, sql: str, params: Sequence[Any]) -> None:
        if sql.startswith(("ROLLBACK", "RELEASE", "PRAGMA")):
            return  # undoing, and the connection's settings, always go through
        self.count += 1
        if sql == "COMMIT":
            self.commits += 1
            if self.commits == self.kill_at_commit and not self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        if self.count == self.fail_at or (
            self.fail_when is not None and self.fail_when(sql, params)
        ):
            self.failures += 1
            raise disk_full()

    def _after(self, sql: str) -> None:
        if sql == "COMMIT" and self.commits == self.kill_at_commit and self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        self._before(sql, params)
        cursor = self._conn.execute(sql, params)
        self._after(sql)
        return cursor

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        self._before(sql, ())
        return self._conn.executemany(sql, rows)


def install(vault: Vault) -> FaultyConnection:
    """Put a :class:`FaultyConnection` under an open vault; it fails nothing until told."""
    faulty = FaultyConnection(vault._conn)
    vault._conn = faulty  # type: ignore[assignment]
    return faulty


@contextmanager
def patch_open(setup: Callable[[FaultyConnection], None]) -> Iterator[list[FaultyConnection]]:
    """Every vault opened inside the block gets a :class:`FaultyConnection`, set up by
    ``setup`` once the vault is open; the list holds them in order."""
    made: list[FaultyConnection] = []
    real_open = Vault.open.__func__  # type: ignore[attr-defined]

    def faulty_open(cls: type[Vault], path: Path, key: bytes) -> Vault:
        vault: Vault = real_open(cls, path, key)
        faulty = install(vault)
        setup(faulty)
        made.append(faulty)
        return vault

    Vault.open = classmethod(faulty_open)  # type: ignore[method-assign, assignment]
    try:
        yield made
    finally:
        Vault.open = classmethod(real_open)  # type: ignore[method-assign, assignment]


__all__ = ["FaultyConnection", "Rule", "disk_full", "install", "patch_open"]
