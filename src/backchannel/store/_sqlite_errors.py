"""Translation of :mod:`sqlite3` errors into the Backchannel error tree.

SQLite's own messages never contain bound values, but we still replace them:
each message below says what happened and what the operator should do next.
Only SQLite's symbolic error name is kept, for the operator's diagnosis.
"""

from __future__ import annotations

import sqlite3

from backchannel.errors import StoreUnavailable

_FULL = (
    "the relay database cannot grow (disk full or size limit reached); nothing was stored: "
    "free disk space or raise the limit, then retry"
)
_BUSY = (
    "the relay database is locked by another process; nothing was stored: "
    "retry later, or stop the process that holds the lock"
)
_CANTOPEN = (
    "the relay database cannot be opened or written; "
    "check that its directory exists and that the relay may write to it"
)
_CORRUPT = (
    "the relay database file is damaged or is not a Backchannel database; "
    "it was left untouched: restore it from a backup or point the relay at another file"
)
_IOERR = "a disk I/O error hit the relay database; check the disk and its free space, then retry"

_BY_CODE: dict[int, str] = {
    sqlite3.SQLITE_FULL: _FULL,
    sqlite3.SQLITE_BUSY: _BUSY,
    sqlite3.SQLITE_LOCKED: _BUSY,
    sqlite3.SQLITE_CANTOPEN: _CANTOPEN,
    sqlite3.SQLITE_READONLY: _CANTOPEN,
    sqlite3.SQLITE_PERM: _CANTOPEN,
    sqlite3.SQLITE_AUTH: _CANTOPEN,
    sqlite3.SQLITE_CORRUPT: _CORRUPT,
    sqlite3.SQLITE_NOTADB: _CORRUPT,
    sqlite3.SQLITE_IOERR: _IOERR,
}


def translate(exc: sqlite3.Error) -> StoreUnavailable:
    """A :class:`StoreUnavailable` for ``exc``; raise it ``from None``."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    if isinstance(code, int):
        message = _BY_CODE.get(code & 0xFF)
        if message is not None:
            return StoreUnavailable(f"{message} [{name}]")
    return StoreUnavailable(
        f"the relay database failed [{name}]; check the relay's disk and logs, then restart it"
    )
