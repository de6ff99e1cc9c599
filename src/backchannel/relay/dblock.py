"""One relay at a time on an SQLite database, and no restore under a running one.

A relay keeps its log's head in memory and goes on from it: a second relay
serving the same file, or a restore that puts an older file in place while
one serves, makes it sign heads that contradict each other (a fork and a
rewind under its own key, which every client keeps as proof of a lie). So
``relay serve`` holds an exclusive lock on ``<database>-lock`` for as long as
it runs, and ``relay restore`` takes the same lock, without waiting, before
it touches anything. The kernel releases the lock when the process ends, a
killed one included, so nothing is ever left to clean up by hand.

``relay backup`` takes no lock: it reads the live database through SQLite's
online backup, which is safe while the relay serves.

PostgreSQL is served by many processes at once (``--workers``, several
machines), all on one log under its head's row lock; there every relay
process holds a *shared* session-level advisory lock on the relay's schema
for as long as it serves, and ``relay restore`` takes it exclusively, without
waiting. (A relay whose connection to PostgreSQL breaks loses its lock with
it; it goes on serving through its pool, so stop every relay before a
restore, as the operations guide says.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from backchannel.errors import ConfigError

#: Beside the database, as SQLite's own ``-wal`` and ``-shm`` files are.
SUFFIX = "-lock"


class RelayBusy(ConfigError):
    """Another process holds the database's lock; the message says which kind of act."""


def lock_path(db_path: str) -> str:
    return os.path.abspath(db_path) + SUFFIX


@contextlib.contextmanager
def holding(db_path: str, busy: str) -> Iterator[None]:
    """Hold the database's lock for the block, or raise :class:`RelayBusy` with ``busy``.

    Never waits: a running relay holds the lock for as long as it serves.
    """
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise ConfigError(f"cannot open the relay's lock file {path}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RelayBusy(busy) from None
        yield
    finally:
        os.close(fd)  # releases the lock


#: The advisory lock's first key ("BCKR"); the second is the hash of the search path
#: the relay's URL sets (so one lock per relay schema).
_PG_LOCK_CLASS = 0x42434B52


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("postgresql", "postgres")


@contextlib.contextmanager
def holding_pg(url: str, busy: str, *, shared: bool) -> Iterator[None]:
    """Hold the relay schema's advisory lock (``shared`` for a relay that serves,
    else exclusive) for the block, or raise :class:`RelayBusy` with ``busy``."""
    import psycopg

    from backchannel.errors import StoreUnavailable

    kind = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as e:  # never the URL: it may hold a password
        raise StoreUnavailable(
            f"cannot reach the PostgreSQL database ({type(e).__name__})"
        ) from None
    try:
        row = conn.execute(
            # The search path, not current_schema(): that is NULL until the
            # relay has made the schema the URL names, and so is a lock on it.
            f"SELECT {kind}(%s, hashtext(current_setting('search_path')))",
            (_PG_LOCK_CLASS,),
        ).fetchone()
        if not (row and row[0]):
            raise RelayBusy(busy)
        yield
    finally:
        conn.close()  # releases the lock
