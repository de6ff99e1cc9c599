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
