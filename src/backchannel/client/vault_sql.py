"""The vault's SQLite connection: opened with durable settings, its errors in words.

:mod:`backchannel.client.vault` keeps the records; here is what it asks of
SQLite and how a failure of SQLite or the disk is told to the officer (one
line, never SQLite's own message).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Final

from backchannel.errors import BackchannelError, CorruptKeystore, StoreError, StoreUnavailable

#: ``PRAGMA application_id`` of a vault file ("BCKV").
APPLICATION_ID: Final = 0x42434B56


def damaged(what: str) -> CorruptKeystore:
    return CorruptKeystore(f"the vault {what}; restore the home directory from a backup")


def disk_full() -> StoreUnavailable:
    return StoreUnavailable(
        "the disk holding the vault is full; free space and retry "
        "(this step was not saved; earlier records are intact)"
    )


#: Free bytes under which a failure to open the vault is taken for a full disk:
#: SQLite says only "disk I/O error" when it cannot even make its ``-shm`` file.
_NEARLY_FULL: Final = 64 * 1024


def translate(exc: sqlite3.Error) -> BackchannelError:
    """One-line Backchannel error for an ``sqlite3`` error (its message is not shown)."""
    code = getattr(exc, "sqlite_errorcode", -1) & 0xFF
    if code == sqlite3.SQLITE_FULL:
        return disk_full()
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreUnavailable(
            "the vault is in use by another Backchannel process; close it and retry"
        )
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_FORMAT):
        return damaged("database is damaged or is not a Backchannel vault")
    if code in (
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_AUTH,
    ):
        return StoreUnavailable(
            "the vault cannot be opened for writing; check the home directory's "
            "permissions and that its disk is not read-only"
        )
    if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PROTOCOL):
        return StoreUnavailable(
            "the disk or system failed while using the vault; check the disk and retry"
        )
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    return StoreError(f"the vault database failed ({name}); retry, and report it if it persists")


def strerror(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno is not None else type(exc).__name__


class _Sql:
    """Translates an ``sqlite3`` error leaving the block (:func:`translate`).

    A class rather than a generator: a device's round enters it thousands of
    times."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, tp: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, sqlite3.Error):
            raise translate(exc) from exc


_SQL: Final = _Sql()


def sql() -> _Sql:
    return _SQL


def connect(path: Path, existing: bool = False) -> sqlite3.Connection:
    """Connect to a file (never create one), set durable pragmas. An ``existing`` one must
    be writable (SQLite would open it read-only, making ``-shm`` so) and a vault."""
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if existing and file.exists() and not os.access(file, os.R_OK | os.W_OK):
            where = f"{file.name} cannot be written; check the permissions of {path.parent}"
            raise StoreUnavailable(f"the vault's file {where}")
    try:
        return _connect(path, existing)
    except StoreUnavailable:
        if _free(path.parent) < _NEARLY_FULL:
            raise disk_full() from None
        raise


def _free(directory: Path) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return _NEARLY_FULL  # unknown: the error as SQLite gave it


def _connect(path: Path, existing: bool) -> sqlite3.Connection:
    uri = path.resolve().as_uri() + "?mode=rw"
    with sql():
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 2000")
            conn.execute("PRAGMA trusted_schema = OFF")
            if existing and conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                raise damaged("file is not a Backchannel vault (wrong file?)")
            if existing and conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
                # Every page's structure, before anything is written: a damaged
                # page that no read happens to meet would otherwise take writes.
                raise damaged("database is damaged")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailable(
                    "the vault's disk does not support SQLite's WAL mode; use a local disk"
                )
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA secure_delete = ON")
        except BaseException:
            conn.close()
            raise
    return conn
