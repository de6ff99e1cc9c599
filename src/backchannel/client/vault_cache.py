"""What an open vault keeps in memory between reads (``docs/keystore.md``).

A round reads the same records many times over. The vault keeps what it last
read or wrote, opened: single records, listed tables and queues (kept in step
with each write, not read again), and beside a record the object the caller
decoded from it. The vault drops it all when another connection has
committed, when a transaction is undone, when it is closed, and past
:data:`CACHE_BYTES`; a record written or deleted drops its decoded object.

No I/O and no locking here: :class:`~backchannel.client.vault.Vault` calls
it under its own lock.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Final, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

#: At most this many bytes of opened values are kept between reads.
CACHE_BYTES: Final = 16 * 1024 * 1024


class ReadCache:
    """Opened records, tables and queues of one vault connection."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, bytes], bytes | None] = {}
        self.tables: dict[str, list[tuple[bytes, bytes]]] = {}
        self.queues: dict[str, list[tuple[int, bytes]]] = {}
        self._decoded: dict[tuple[str, bytes], tuple[object, bytes, object]] = {}
        self._bytes = 0
        self._data_version = -1
        #: Writes to each table since the last :meth:`forget`.
        self._writes: dict[str, int] = {}
        #: How many times everything was dropped (another connection's commit among them).
        self._epoch = 0

    def forget(self) -> None:
        self._epoch += 1
        self._writes.clear()
        self.records.clear()
        self.tables.clear()
        self.queues.clear()
        self._decoded.clear()
        self._bytes = 0

    def check(self, data_version: int) -> None:
        """Drop everything if another connection has committed since it was kept."""
        if data_version != self._data_version:
            self.forget()
            self._data_version = data_version

    def _grow(self, size: int) -> None:
        self._bytes += size
        if self._bytes > CACHE_BYTES:
            self.forget()
            self._bytes = size

    def fits(self, size: int) -> bool:
        return self._bytes + size <= CACHE_BYTES

    # -- generations -----------------------------------------------------------------

    def wrote(self, table: str) -> None:
        """This connection wrote to ``table``."""
        self._writes[table] = self._writes.get(table, 0) + 1

    def generation(self, tables: tuple[str, ...]) -> tuple[int, ...]:
        """A value that changes whenever any of ``tables`` may have: a write
        through this connection, a commit by another, a transaction undone."""
        return (self._epoch, *(self._writes.get(t, 0) for t in tables))

    # -- records and tables --------------------------------------------------------

    def remember(self, table: str, key: bytes, value: bytes | None) -> None:
        """``value`` is now what ``key`` holds in ``table`` (None: nothing)."""
        self._decoded.pop((table, key), None)
        rows = self.tables.get(table)
        if rows is not None:  # kept in step, sorted by key
            i = bisect.bisect_left(rows, (key,))
            if i < len(rows) and rows[i][0] == key:
                if value is None:
                    del rows[i]
                else:
                    rows[i] = (key, value)
            elif value is not None:
                rows.insert(i, (key, value))
        self._grow(len(value or b""))
        self.records[(table, key)] = value

    def keep_table(self, table: str, rows: list[tuple[bytes, bytes]]) -> None:
        size = sum(len(v) for _, v in rows)
        if self.fits(size):
            self.tables[table] = list(rows)
            self._bytes += size

    # -- queues --------------------------------------------------------------------

    def keep_queue(self, queue: str, entries: list[tuple[int, bytes]]) -> None:
        size = sum(len(v) for _, v in entries)
        if self.fits(size):
            self.queues[queue] = list(entries)
            self._bytes += size

    def appended(self, queue: str, entry_id: int, value: bytes) -> None:
        entries = self.queues.get(queue)
        if entries is not None:  # ids grow: the new entry is the last
            entries.append((entry_id, value))
            self._grow(len(value))

    def done(self, queue: str, entry_id: int) -> None:
        self._decoded.pop(_entry(queue, entry_id), None)
        entries = self.queues.get(queue)
        if entries is not None:
            i = bisect.bisect_left(entries, (entry_id,))
            if i < len(entries) and entries[i][0] == entry_id:
                del entries[i]

    # -- decoded objects -----------------------------------------------------------

    def decoded(
        self, table: str, key: bytes, raw: bytes, kind: T, decode: Callable[[T, bytes], R]
    ) -> R:
        """``decode(kind, raw)``, kept beside the record until it changes."""
        hit = self._decoded.get((table, key))
        if hit is not None and hit[0] is kind and hit[1] == raw:
            return cast(R, hit[2])
        value = decode(kind, raw)
        self._decoded[(table, key)] = (kind, raw, value)
        return value

    def decoded_entry(
        self, queue: str, entry_id: int, raw: bytes, kind: T, decode: Callable[[T, bytes], R]
    ) -> R:
        table, key = _entry(queue, entry_id)
        return self.decoded(table, key, raw, kind, decode)

    def holds_decoded(self, table: str, key: bytes) -> bool:
        return (table, key) in self._decoded

    def holds_decoded_entry(self, queue: str, entry_id: int) -> bool:
        return _entry(queue, entry_id) in self._decoded


def _entry(queue: str, entry_id: int) -> tuple[str, bytes]:
    """Where a queue entry's decoded object is kept (no table name has a colon)."""
    return "queue:" + queue, entry_id.to_bytes(8, "big")
