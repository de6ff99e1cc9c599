"""The embedded relay store: one SQLite file, durable group commit.

Writes go through the only write connection in group commits
(:mod:`backchannel.store._sqlite_writer`): every write waiting goes into one
transaction, its SQL on the event loop and its ``COMMIT`` (the ``fsync``) on
a thread, and each caller's future resolves only once that transaction is on
disk, so a deposit returns durable and many concurrent deposits share one
``fsync``. Reads run on the event loop's own connection (:meth:`_read`). The
loop never waits for a lock or an ``fsync``: those go to threads.

The connections, their pragmas and the schema: :mod:`backchannel.store._sqlite_conn`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from backchannel.crypto.signing import SigningKey
from backchannel.errors import (
    ConfigError,
)
from backchannel.protocol.constants import CELL_SIZE
from backchannel.store import _common, _log, _log_key
from backchannel.store import _sqlite_conn as _conn
from backchannel.store._sqlite_deposit import SQLiteDeposits
from backchannel.store._sqlite_errors import translate
from backchannel.store._sqlite_intake import SQLiteIntake
from backchannel.store._sqlite_log import SQLiteLogReads, _chunks
from backchannel.store._sqlite_tenants import SQLiteTenants
from backchannel.store._sqlite_writer import SQLiteWriter

T = TypeVar("T")
_logger = logging.getLogger(__name__)

#: Most batches whose member hashes one expiry transaction deletes.
_MEMBER_LEAVES_CHUNK = 256
#: Most free pages one step of expiry gives back to the filesystem. Each may
#: move a page from the end of the file into a hole (and rewrite the page that
#: points to it): 128 pages hold the writer about as long as deleting
#: ``EXPIRE_STEP_ROWS`` rows does (docs/storage.md, "Space").
VACUUM_STEP_PAGES = 128
#: Most free pages one ``expire`` call gives back (128 MiB of 4 KiB pages), so
#: every round ends within seconds; a larger freelist, after a burst, shrinks
#: over the next rounds.
VACUUM_PAGES_PER_EXPIRE = 256 * VACUUM_STEP_PAGES


class SQLiteRelayStore(SQLiteWriter, SQLiteDeposits, SQLiteLogReads, SQLiteIntake, SQLiteTenants):
    """:class:`~backchannel.store.relay_store.RelayStore` on one SQLite file.

    ``path`` is the database file; its directory must exist. Reads run on the
    event loop's own connection (see :meth:`_read`); ``readers`` is the size of
    the pool that takes a read meeting a lock, or made off the loop's thread;
    ``max_batch`` bounds one group commit;
    ``max_db_bytes`` caps the file size (reaching it acts like a full disk).
    ``key_path`` is the relay's signing key file (default ``relay-key`` beside
    the database; created on first open). ``log=False`` keeps no log (benchmarks).
    ``log_interval`` (seconds) paces commits: a commit waits until that long
    after the previous one, so the log gains at most one leaf per interval
    (bounded storage growth, at the price of up to that much deposit latency).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readers: int = 4,
        busy_timeout_ms: int = 5000,
        max_batch: int = 1024,
        max_db_bytes: int | None = None,
        cell_size: int = CELL_SIZE,
        key_path: str | os.PathLike[str] | None = None,
        log: bool = True,
        log_interval: float = 0.0,
    ) -> None:
        if log_interval < 0:
            raise ConfigError("log_interval must be >= 0 seconds")
        if readers < 1 or max_batch < 1 or busy_timeout_ms < 0:
            raise ConfigError("readers and max_batch must be >= 1, busy_timeout_ms >= 0")
        if max_db_bytes is not None and max_db_bytes <= 0:
            raise ConfigError("max_db_bytes must be positive when given")
        self._path = os.fspath(path)
        self._readers = readers
        self._busy_timeout_ms = busy_timeout_ms
        self._max_batch = max_batch
        self._max_db_bytes = max_db_bytes
        self._cell_size = _common.check_cell_size(cell_size)
        self._writer_init()
        self._executor: cf.ThreadPoolExecutor | None = None
        self._read_conns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_read_conns: list[sqlite3.Connection] = []
        #: The event loop's read connection and the thread that opened it.
        self._loop_conn: sqlite3.Connection | None = None
        self._loop_thread = 0
        self._accepting = False
        self._transactions = 0
        self._writes = 0
        self._logging = log
        self._log_interval = float(log_interval)
        self._key_path = (
            os.fspath(key_path)
            if key_path is not None
            else os.path.join(os.path.dirname(os.path.abspath(self._path)), "relay-key")
        )
        self._cache: _log.LogCache | None = None

    @property
    def stats(self) -> _common.GroupCommitStats:
        """How many writes shared each ``fsync`` so far (group commit at work)."""
        return _common.GroupCommitStats(self._transactions, self._writes, self._queued)

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Open the file (creating it if absent), apply migrations, start the writer.

        Opening an open store does nothing; opening one whose writer stopped
        with its event loop (an ``asyncio.run`` that returned without
        :meth:`close`) releases what it held and opens it on this loop.
        """
        task = self._writer_task
        if task is not None:
            if not task.done():
                return
            await self._shutdown()
        await self._start_writer()
        if self._logging and self._cache is None:
            # Only once the database is known good: a refused file leaves no key behind.
            try:
                key = await asyncio.to_thread(_log.load_or_create_key_file, self._key_path)
                await asyncio.to_thread(self._check_key, key)
            except BaseException:
                await self._shutdown()
                raise
            self._cache = _log.LogCache(key)
        self._executor = cf.ThreadPoolExecutor(
            max_workers=self._readers, thread_name_prefix="backchannel-sqlite-reader"
        )
        try:
            loop = asyncio.get_running_loop()
            for _ in range(self._readers):
                conn = await loop.run_in_executor(self._executor, self._connect_reader)
                self._all_read_conns.append(conn)
                self._read_conns.put(conn)
            # No busy wait on the loop: a read that meets a lock goes to the pool.
            self._loop_conn = _conn.connect_reader(self._path, 0)
            self._loop_thread = threading.get_ident()
            mode = int(self._loop_conn.execute("PRAGMA auto_vacuum").fetchone()[0])
        except BaseException:
            await self._shutdown()
            raise
        if mode != _conn.AUTO_VACUUM_INCREMENTAL:
            _logger.warning(
                "the relay database was made before space was given back: it reuses"
                " freed pages but never shrinks; see docs/storage.md, 'Space', for the"
                " one-time VACUUM"
            )
        self._accepting = True

    def _check_key(self, key: SigningKey) -> None:
        """The key must be the one that signed this database's log (:func:`check_key_signs`)."""
        conn = _conn.connect_reader(self._path, 5000)
        try:
            row = conn.execute("SELECT signed FROM log_head WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from None
        finally:
            conn.close()
        signed = None if row is None or row[0] is None else bytes(row[0])
        _log_key.check_key_signs(key, signed, self._key_path)

    async def close(self) -> None:
        """Finish every write already submitted, then release the file."""
        if self._writer_task is None:
            return
        self._accepting = False
        await self._shutdown()

    async def _shutdown(self) -> None:
        executor, self._executor = self._executor, None
        await self._stop_writer()
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True)
        for conn in self._all_read_conns:
            conn.close()
        self._all_read_conns.clear()
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        self._read_conns = queue.SimpleQueue()

    # -- connections -------------------------------------------------------

    def _connect_reader(self) -> sqlite3.Connection:
        return _conn.connect_reader(self._path, self._busy_timeout_ms)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` (a read: a few index lookups) in one snapshot.

        Right here on the event loop's connection: a read of pages the
        writer has just written takes 10 to 20 µs, while handing it to a
        pool thread costs about 200 µs of CPU in wake-ups and hand-overs of
        the GIL, which the read's own Python holds anyway (docs/benchmarks.md,
        "Reads on the event loop"). A read that meets a lock (no busy wait
        here), or one made off the loop's thread, goes to the pool instead.
        """
        executor = self._executor
        if not self._accepting or executor is None:
            raise _common.not_open()
        conn = self._loop_conn
        if conn is not None and threading.get_ident() == self._loop_thread:
            try:
                return _run_on(conn, work, on_loop=True)
            except _Busy:
                pass
        return await asyncio.get_running_loop().run_in_executor(executor, self._run_read, work)

    def _run_read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._read_conns.get()
        try:
            return _run_on(conn, work)
        finally:
            self._read_conns.put(conn)

    # -- the RelayStore interface -----------------------------------------

    async def fetch(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, bytes]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        if not wanted:
            return {}

        def work(conn: sqlite3.Connection) -> dict[bytes, bytes]:
            found: dict[bytes, bytes] = {}
            conn.execute("BEGIN")  # one snapshot across the chunks
            try:
                for chunk in _chunks(wanted):
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        "SELECT slot, cell FROM cells WHERE tenant_id = ?"  # noqa: S608
                        f" AND slot IN ({marks}) AND length(cell) > 0",
                        (tenant_id, *chunk),
                    )
                    found.update((bytes(slot), bytes(cell)) for slot, cell in rows)
            finally:
                conn.execute("COMMIT")
            return {slot: found[slot] for slot in wanted if slot in found}

        return await self._read(work)

    async def ack(self, tenant_id: str, slots: Sequence[bytes], now: int) -> int:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        if not wanted:
            return 0

        def work(conn: sqlite3.Connection) -> int:
            removed = 0
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                # The slot stays, spent, until retention: slots are write-once.
                cursor = conn.execute(
                    "UPDATE cells SET cell = x'' WHERE tenant_id = ?"  # noqa: S608
                    f" AND slot IN ({marks}) AND length(cell) > 0",
                    (tenant_id, *chunk),
                )
                removed += cursor.rowcount
            return removed

        return await self._write(work)

    async def expire(self, now: int, retention_seconds: int) -> int:
        _common.check_expiry(retention_seconds)
        cutoff = now - retention_seconds

        def work(conn: sqlite3.Connection) -> tuple[int, int]:
            # A cell's age counts from its batch's time (its leaf's), which
            # never goes backwards, so it outlives its leaf by the retention.
            # One statement: the whole step runs in SQLite, not in Python
            # holding the interpreter lock that the event loop needs.
            rows = conn.execute(
                "DELETE FROM cells WHERE rowid IN (SELECT c.rowid FROM cells c"
                " LEFT JOIN log_leaves l ON l.leaf_index = c.leaf_index"
                " WHERE c.deposited_at <= ? AND (l.time IS NULL OR l.time <= ?) LIMIT ?)"
                " RETURNING length(cell) > 0",
                (cutoff, cutoff, _common.EXPIRE_STEP_ROWS),
            ).fetchall()
            return len(rows), sum(1 for (live,) in rows if live)

        def forget_members(conn: sqlite3.Connection) -> bool:
            # Members of whole batches past retention, a few batches at a time.
            # Leaf times never decrease with the index, so the batches past
            # retention are a prefix: look only just above the oldest kept.
            low = int(conn.execute("SELECT members_from FROM log_head WHERE id = 1").fetchone()[0])
            top = low + _MEMBER_LEAVES_CHUNK - 1
            high = conn.execute(
                "SELECT max(leaf_index) FROM log_leaves"
                " WHERE leaf_index BETWEEN ? AND ? AND time <= ?",
                (low, top, cutoff),
            ).fetchone()[0]
            if high is None:
                return False
            # The rows are written again without their members, not updated:
            # SQLite merges half-empty pages when rows are deleted, never when
            # an UPDATE shrinks them, so each leaf would keep the page space
            # its members took, for ever (a page per leaf for large batches).
            kept = conn.execute(
                "SELECT leaf_index, leaf, time, nodes FROM log_leaves"
                " WHERE leaf_index BETWEEN ? AND ?",
                (low, high),
            ).fetchall()
            conn.execute("DELETE FROM log_leaves WHERE leaf_index BETWEEN ? AND ?", (low, high))
            conn.executemany(
                "INSERT INTO log_leaves (leaf_index, leaf, time, nodes) VALUES (?, ?, ?, ?)", kept
            )
            conn.execute("UPDATE log_head SET members_from = ? WHERE id = 1", (int(high) + 1,))
            return bool(int(high) == top)

        removed = 0

        async def step() -> bool:
            nonlocal removed
            count, cells = await self._write(work)
            removed += cells
            return count == _common.EXPIRE_STEP_ROWS

        await _common.in_steps(step)
        if self._logging:
            await _common.in_steps(lambda: self._write(forget_members))
        await self._give_back_space()
        return removed

    async def _give_back_space(self) -> None:
        """Return free pages to the filesystem, in steps like expiry's own.

        Here only, after expiry: a deposit reuses free pages, so the pages an
        ``ack`` frees stay in the file until the next expiry round, and no
        deposit or acknowledgement ever moves a page. A file without
        ``auto_vacuum = INCREMENTAL`` (made before it was the default) keeps
        its free pages for reuse, and this does nothing.
        """
        budget = VACUUM_PAGES_PER_EXPIRE

        def give_back(conn: sqlite3.Connection) -> bool:
            nonlocal budget
            mode = int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
            if mode != _conn.AUTO_VACUUM_INCREMENTAL:
                return False
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            pages = min(free, budget, VACUUM_STEP_PAGES)
            # The pragma frees one page per step, and the sqlite3 module steps
            # it once (it has no result columns): one call, one page.
            for _ in range(pages):
                conn.execute("PRAGMA incremental_vacuum(1)")
            budget -= pages
            return pages > 0 and budget > 0 and free > pages

        await _common.in_steps(lambda: self._write(give_back))

    async def count_cells(self, tenant_id: str | None = None) -> int:
        if tenant_id is not None:
            _common.check_tenant_id(tenant_id)

        def work(conn: sqlite3.Connection) -> int:
            if tenant_id is None:
                row = conn.execute("SELECT coalesce(sum(cell_count), 0) FROM tenants").fetchone()
            else:
                row = conn.execute(
                    "SELECT cell_count FROM tenants WHERE tenant_id = ?", (tenant_id,)
                ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._read(work)


class _Busy(Exception):
    """A read on the event loop's connection met a lock: the pool takes it."""


def _run_on(
    conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], on_loop: bool = False
) -> T:
    try:
        return work(conn)
    except BaseException as exc:
        if conn.in_transaction:  # never keep an old snapshot open
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            if on_loop and _conn.is_busy(exc):
                raise _Busy from None
            raise translate(exc) from None
        raise
