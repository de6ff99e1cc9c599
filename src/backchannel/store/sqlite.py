"""The embedded relay store: one SQLite file, durable group commit.

Writes go through one thread that owns the only write connection. It takes
every request waiting in its queue, applies them all in one transaction (one
``fsync``) and only then resolves each caller's future, so a deposit returns
only once its transaction is on disk and many concurrent deposits share one
``fsync``. Reads run on a small pool of separate connections in worker threads;
neither path ever blocks the event loop.

Pragmas, and why each is safe
-----------------------------
``journal_mode=WAL``
    Commits append to the write-ahead log; readers keep reading the last
    committed state while the writer works, so fetches never wait for deposits.
    After a crash SQLite replays only complete, checksummed commits from the
    log, so a half-written transaction simply vanishes. WAL needs shared memory
    between connections: keep the database on a local filesystem, not NFS/SMB.
``synchronous=FULL``
    In WAL mode SQLite then ``fsync``\\ s the log at every commit. With the
    default ``NORMAL`` a power loss could undo the last commits, which would
    lose deposits we already acknowledged. Group commit pays for the ``fsync``.
``fullfsync=ON``
    On macOS a plain ``fsync`` does not flush the drive's cache; this makes
    SQLite use ``F_FULLFSYNC``. Ignored elsewhere.
``busy_timeout``
    Another process (a backup, a second relay, an admin tool) may hold the lock
    briefly; we wait up to this long, then report :class:`StoreUnavailable`
    rather than hang. Nothing is acknowledged in that case.
``foreign_keys=ON``
    A cell can never belong to a tenant that does not exist.
``journal_size_limit``
    After a burst, the log file is truncated back to this size at checkpoints
    instead of keeping its peak size on disk. Only affects the file size.
``max_page_count`` (only with ``max_db_bytes``)
    A hard ceiling on the database size. Reaching it behaves exactly like a full
    disk: the transaction is rolled back and nothing in it is acknowledged.
``query_only=ON`` (read connections)
    The read pool cannot write even by mistake.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from backchannel.crypto.notesig import Ed25519NoteKey
from backchannel.crypto.primitives import HASH_LEN
from backchannel.errors import (
    ConfigError,
    QuotaExceeded,
    SlotConflict,
    StoreUnavailable,
    TenantExists,
    UnknownTenant,
)
from backchannel.protocol import merkle
from backchannel.protocol.constants import CELL_SIZE
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.misbehaviour import LogLeaf, cell_entry
from backchannel.store import _common, _log, _migrations
from backchannel.store import _sqlite_jobs as _jobs
from backchannel.store._sqlite_errors import translate
from backchannel.store.relay_store import (
    BatchTree,
    CellProof,
    DepositResult,
    LoggedCell,
    TenantRecord,
    leaf_hash,
)

T = TypeVar("T")

#: ``PRAGMA application_id`` of our database files ("BCHR").
APPLICATION_ID = 0x42434852
#: Most rows one ``expire`` transaction deletes, so deposits interleave with it.
_EXPIRE_CHUNK = 5000
#: Most slots in one SQL ``IN (...)`` list.
_IN_CHUNK = 500
#: Most batches whose member hashes one expiry transaction deletes.
_MEMBER_LEAVES_CHUNK = 256


class SQLiteRelayStore(_log.LogSigning):
    """:class:`~backchannel.store.relay_store.RelayStore` on one SQLite file.

    ``path`` is the database file; its directory must exist. ``readers`` is the
    size of the read pool; ``max_batch`` bounds one group commit;
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
        self._queue: queue.SimpleQueue[_jobs.Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._executor: cf.ThreadPoolExecutor | None = None
        self._read_conns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_read_conns: list[sqlite3.Connection] = []
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
        self._batch: _jobs.Batch | None = None
        #: The head this writer committed last (writer thread only).
        self._last: _log.HeadState | None = None

    @property
    def stats(self) -> _common.GroupCommitStats:
        """How many writes shared each ``fsync`` so far (group commit at work)."""
        return _common.GroupCommitStats(self._transactions, self._writes, self._queue.qsize())

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        """Open the file (creating it if absent), apply migrations, start threads."""
        if self._writer is not None:
            return
        ready: cf.Future[None] = cf.Future()
        self._queue = queue.SimpleQueue()
        writer = threading.Thread(
            target=self._writer_main, args=(ready,), name="backchannel-sqlite-writer", daemon=True
        )
        writer.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(writer.join)
            raise
        self._writer = writer
        if self._logging and self._cache is None:
            # Only once the database is known good: a refused file leaves no key behind.
            try:
                key = await asyncio.to_thread(_log.load_or_create_key_file, self._key_path)
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
        except BaseException:
            await self._shutdown()
            raise
        self._accepting = True

    async def close(self) -> None:
        """Finish every write already submitted, then release the file."""
        if self._writer is None:
            return
        self._accepting = False
        await self._shutdown()

    async def _shutdown(self) -> None:
        writer, executor = self._writer, self._executor
        self._writer = self._executor = None
        if writer is not None:
            self._queue.put(None)
            await asyncio.to_thread(writer.join)
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True)
        for conn in self._all_read_conns:
            conn.close()
        self._all_read_conns.clear()
        self._read_conns = queue.SimpleQueue()

    # -- connections -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            # Only reads until the file is known to be ours: a damaged file or
            # another application's database is refused before we write to it
            # (even switching the journal mode rewrites the header).
            _check_ours(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise StoreUnavailable(
                    "the relay database cannot use write-ahead logging here; "
                    "move it to a local filesystem"
                )
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA fullfsync = ON")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            # Slots are random, so each insert lands at a random place in the
            # (tenant, slot) index; 64 MiB of page cache keeps that index's
            # pages resident up to millions of cells (it is ~55 bytes a cell).
            conn.execute("PRAGMA cache_size = -65536")
            _apply_migrations(conn)
            if self._max_db_bytes is not None:
                page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
                pages = max(1, self._max_db_bytes // page_size)
                conn.execute(f"PRAGMA max_page_count = {pages}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        try:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise translate(exc) from None
        return conn

    # -- the writer thread ---------------------------------------------------

    def _writer_main(self, ready: cf.Future[None]) -> None:
        try:
            conn = self._connect_writer()
        except sqlite3.Error as exc:
            ready.set_exception(translate(exc))
            return
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            stop = False
            last_commit = 0.0
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                # Pacing: wait for the interval since the last commit to pass,
                # gathering what arrives meanwhile into this batch.
                due = last_commit + self._log_interval
                while len(batch) < self._max_batch:
                    wait = due - time.monotonic()
                    try:
                        job = (
                            self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                        )
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._run_batch(conn, batch)
                last_commit = time.monotonic()
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_jobs.Job]) -> None:
        # A caller cancelled before we started is dropped; a job already
        # started commits even if its caller is cancelled meanwhile (its
        # outcome then goes nowhere), as a retry with the same cell expects.
        # (Read across threads: a flag set under the GIL.)
        pending = [job for job in batch if not job.future.cancelled()]
        try:
            while pending:
                pending = self._commit(conn, pending)
        except BaseException as exc:  # a bug: never leave a caller waiting
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            failure = StoreUnavailable("the relay store's writer failed; restart the relay")
            for job in batch:
                if not job.settled:
                    job.fail(failure)
            if not isinstance(exc, Exception):
                raise
        finally:
            _jobs.deliver(batch)

    def _commit(self, conn: sqlite3.Connection, jobs: list[_jobs.Job]) -> list[_jobs.Job]:
        """Run ``jobs`` in one transaction; return the jobs to run again, if any."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._batch = self._begin_batch(conn) if self._logging else None
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            _fail(jobs, translate(exc))
            return []
        outcomes: list[tuple[_jobs.Job, Any, BaseException | None]] = []
        for index, job in enumerate(jobs):
            single = job.single
            if not single:
                conn.execute("SAVEPOINT job")
            try:
                result = job.work(conn)
            except sqlite3.Error as exc:
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (disk full, I/O
                    # error): the earlier jobs' work is gone, so run them again.
                    job.fail(translate(exc))
                    return [done for done, _, _ in outcomes] + jobs[index + 1 :]
                if not single:
                    _rollback_savepoint(conn)
                outcomes.append((job, None, translate(exc)))
            except Exception as exc:  # a refusal such as SlotConflict; nothing written
                if not single:
                    _rollback_savepoint(conn)
                outcomes.append((job, None, exc))
            else:
                if not single:
                    conn.execute("RELEASE job")
                outcomes.append((job, result, None))
        batch, self._batch = self._batch, None
        try:
            appended = self._append(conn, batch) if batch is not None else None
            conn.execute("COMMIT")
        except _jobs.StaleHead:
            # Another process appended since our last commit, so the positions
            # handed out are wrong. Nothing is acknowledged yet: undo it all
            # and run the same jobs again from the head row.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._last = None
            return jobs
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            _fail(jobs, translate(exc))
            return []
        if appended is not None and batch is not None and self._cache is not None:
            tree, step = appended
            self._last = step.state
            self._cache.committed(tree, step)
            batch.appended = appended  # before any depositor reads it (_jobs.InBatch)
        self._transactions += 1
        self._writes += len(outcomes)
        for job, result, error in outcomes:
            if error is None:
                job.finish(result)
            else:
                job.fail(error)
        return []

    def _begin_batch(self, conn: sqlite3.Connection) -> _jobs.Batch:
        """The log side of a new transaction, from the committed head.

        Usually the state this writer committed last, taken on trust here and
        checked by the append (``UPDATE log_head ... WHERE size = ?``, or a
        lookup when nothing is appended): another process may have appended
        meanwhile, and then the transaction is run again. Otherwise the head
        row, read under the write lock. One size has one state (the log only
        grows), so comparing sizes suffices.
        """
        cached = self._last
        if cached is not None:
            return _jobs.Batch(cached, checked=False)
        state = _read_head(conn)
        self._last = state
        return _jobs.Batch(state, checked=True)

    def _append(
        self, conn: sqlite3.Connection, batch: _jobs.Batch
    ) -> tuple[BatchTree, _log.Append] | None:
        """Append the batch's leaf inside the open transaction (nothing if it stored no cell).

        The head row, then one row of ``log_leaves`` (leaf, nodes, members).
        Raises :class:`_jobs.StaleHead` if the head row is not the one the batch
        started from.
        """
        if not batch.members:
            if not batch.checked:
                row = conn.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
                if row is None or int(row[0]) != batch.state.size:
                    raise _jobs.StaleHead
            return None
        tree = BatchTree(batch.members)
        step = _log.append_batch(batch.state, tree.root(), len(tree.members), batch.now)
        signer = self._cache
        signed = signer.latest if signer is not None else None
        signed_size = signer.latest_size if signed is not None and signer is not None else -1
        updated = conn.execute(
            "UPDATE log_head SET size = ?, frontier = ?, time = ?,"
            " signed = CASE WHEN ? > signed_size THEN ? ELSE signed END,"
            " signed_size = max(signed_size, ?) WHERE id = 1 AND size = ?",
            (
                step.state.size,
                step.state.frontier_bytes(),
                step.time,
                signed_size,
                signed,
                signed_size,
                batch.state.size,
            ),
        )
        if updated.rowcount != 1:
            raise _jobs.StaleHead
        conn.execute(
            "INSERT INTO log_leaves (leaf_index, leaf, time, nodes, members)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                step.leaf_index,
                step.leaf,
                step.time,
                b"".join([h for _, _, h in step.nodes]),
                b"".join(tree.members),
            ),
        )
        return tree, step

    async def _write(self, work: Callable[[sqlite3.Connection], T], single: bool = False) -> T:
        """Run ``work`` in the next group commit. ``single``: it writes with at
        most one statement, so a refusal or a failed statement leaves nothing
        behind without a savepoint (SQLite undoes a failed statement whole)."""
        if not self._accepting:
            raise _common.not_open()
        job = _jobs.Job(work, asyncio.get_running_loop(), single)
        self._queue.put(job)
        return cast(T, await job.future)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        executor = self._executor
        if not self._accepting or executor is None:
            raise _common.not_open()
        return await asyncio.get_running_loop().run_in_executor(executor, self._run_read, work)

    def _run_read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._read_conns.get()
        try:
            return work(conn)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise translate(exc) from None
        finally:
            self._read_conns.put(conn)

    # -- the RelayStore interface -----------------------------------------

    async def create_tenant(
        self, tenant_id: str, credential_hash: bytes, quota_cells: int, now: int
    ) -> TenantRecord:
        _common.check_new_tenant(tenant_id, credential_hash, quota_cells)

        def work(conn: sqlite3.Connection) -> TenantRecord:
            taken = conn.execute("SELECT 1 FROM tenants WHERE tenant_id = ?", (tenant_id,))
            if taken.fetchone() is not None:
                raise TenantExists("that tenant id is already registered; choose another")
            conn.execute(
                "INSERT INTO tenants (tenant_id, credential_hash, quota_cells, created_at)"
                " VALUES (?, ?, ?, ?)",
                (tenant_id, credential_hash, quota_cells, now),
            )
            return TenantRecord(tenant_id, credential_hash, quota_cells, now)

        return await self._write(work)

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        _common.check_tenant_id(tenant_id)

        def work(conn: sqlite3.Connection) -> TenantRecord | None:
            row = conn.execute(
                "SELECT credential_hash, quota_cells, created_at FROM tenants WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchone()
            if row is None:
                return None
            return TenantRecord(tenant_id, bytes(row[0]), int(row[1]), int(row[2]))

        return await self._read(work)

    async def deposit(self, tenant_id: str, slot: bytes, cell: bytes, now: int) -> DepositResult:
        _common.check_tenant_id(tenant_id)
        _common.check_slot(slot)
        _common.check_cell(cell, self._cell_size)
        cell_id = _common.cell_id_of(cell)
        # The cell's leaf in its batch tree, hashed here rather than on the writer thread.
        member = leaf_hash(cell_entry(tenant_id, slot, cell_id)) if self._logging else b""

        def work(conn: sqlite3.Connection) -> DepositResult | _jobs.InBatch:
            # One statement reads the tenant's quota and whatever holds the slot.
            row = conn.execute(
                "SELECT t.quota_cells, t.cell_count, c.cell_id, c.leaf_index, c.batch_position"
                " FROM tenants AS t LEFT JOIN cells AS c ON c.tenant_id = t.tenant_id"
                " AND c.slot = ? WHERE t.tenant_id = ?",
                (slot, tenant_id),
            ).fetchone()
            if row is None:
                raise UnknownTenant("no such tenant is registered on this relay")
            if row[2] is not None:
                if bytes(row[2]) == cell_id:
                    return _retry_result(conn, cell_id, row[3], row[4], self._batch)
                raise SlotConflict("a different cell already occupies that slot")
            if row[1] >= row[0]:
                raise QuotaExceeded("the tenant's cell quota is used up; fetch and ack, then retry")
            batch = self._batch
            if batch is None:
                conn.execute(
                    "INSERT INTO cells (tenant_id, slot, cell_id, cell, deposited_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (tenant_id, slot, cell_id, cell, now),
                )
                return DepositResult(cell_id, created=True)
            position = len(batch.members)
            conn.execute(
                "INSERT INTO cells (tenant_id, slot, cell_id, cell, deposited_at,"
                " leaf_index, batch_position) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tenant_id, slot, cell_id, cell, now, batch.leaf_index, position),
            )
            batch.members.append(member)
            batch.now = max(batch.now, now)
            return _jobs.InBatch(batch, cell_id, True, position)

        # One INSERT at most (its trigger included, atomic as a statement):
        # no savepoint needed around it.
        result = await self._write(work, single=True)
        return result.result() if isinstance(result, _jobs.InBatch) else result

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
            rows = conn.execute(
                "SELECT c.rowid, length(c.cell) > 0 FROM cells c"
                " LEFT JOIN log_leaves l ON l.leaf_index = c.leaf_index"
                " WHERE c.deposited_at <= ? AND (l.time IS NULL OR l.time <= ?) LIMIT ?",
                (cutoff, cutoff, _EXPIRE_CHUNK),
            ).fetchall()
            conn.executemany("DELETE FROM cells WHERE rowid = ?", [(r[0],) for r in rows])
            return len(rows), sum(1 for r in rows if r[1])

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
            conn.execute(
                "UPDATE log_leaves SET members = NULL WHERE leaf_index BETWEEN ? AND ?",
                (low, high),
            )
            conn.execute("UPDATE log_head SET members_from = ? WHERE id = 1", (int(high) + 1,))
            return bool(int(high) == top)

        removed = 0
        while True:
            count, cells = await self._write(work)
            removed += cells
            if count < _EXPIRE_CHUNK:
                break
        if self._logging:
            while await self._write(forget_members):
                pass
        return removed

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

    # -- the log ----------------------------------------------------------------

    def _need_log(self) -> _log.LogCache:
        if not self._logging or self._cache is None:
            raise StoreUnavailable("this relay store keeps no log")
        return self._cache

    async def fetch_logged(self, tenant_id: str, slots: Sequence[bytes]) -> dict[bytes, LoggedCell]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        if not wanted:
            return {}

        def work(conn: sqlite3.Connection) -> dict[bytes, LoggedCell]:
            found: dict[bytes, LoggedCell] = {}
            conn.execute("BEGIN")
            try:
                for chunk in _chunks(wanted):
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        "SELECT slot, cell, leaf_index, batch_position FROM cells"  # noqa: S608
                        f" WHERE tenant_id = ? AND slot IN ({marks}) AND length(cell) > 0",
                        (tenant_id, *chunk),
                    )
                    for slot, cell, leaf, pos in rows:
                        found[bytes(slot)] = LoggedCell(bytes(cell), leaf, pos)
            finally:
                conn.execute("COMMIT")
            return {slot: found[slot] for slot in wanted if slot in found}

        return await self._read(work)

    async def fetch_proved(
        self, tenant_id: str, slots: Sequence[bytes]
    ) -> tuple[bytes, dict[bytes, bytes], dict[bytes, CellProof]]:
        _common.check_tenant_id(tenant_id)
        wanted = _common.check_slots(slots)
        cache = self._need_log()

        def work(
            conn: sqlite3.Connection,
        ) -> tuple[_log.HeadState, dict[bytes, bytes], dict[bytes, CellProof]]:
            rows: dict[bytes, tuple[bytes, int | None, int | None]] = {}
            spent: dict[bytes, bytes] = {}
            conn.execute("BEGIN")  # one snapshot: the head and the cells agree
            try:
                state = _read_head(conn)
                for chunk in _chunks(wanted):
                    marks = ",".join("?" * len(chunk))
                    for slot, cell, leaf, pos in conn.execute(
                        "SELECT slot, cell, leaf_index, batch_position FROM cells"  # noqa: S608
                        f" WHERE tenant_id = ? AND slot IN ({marks})",
                        (tenant_id, *chunk),
                    ):
                        if cell:
                            rows[bytes(slot)] = (bytes(cell), leaf, pos)
                        else:
                            spent[bytes(slot)] = b""
                found, proofs = _log.prove_cells(
                    cache,
                    state.size,
                    rows,
                    lambda coords: _nodes(conn, state.size, coords),
                    lambda leaf: _members(conn, leaf),
                )
            finally:
                conn.execute("COMMIT")
            found = {**found, **spent}
            return state, {s: found[s] for s in wanted if s in found}, proofs

        state, cells, proofs = await self._read(work)
        return cache.compact_exact(state.head()), cells, proofs

    async def log_head(self) -> TreeHead:
        self._need_log()
        return (await self._read(_read_head)).head()

    async def _signed_state(self) -> tuple[_log.HeadState, int, bytes | None]:
        def work(conn: sqlite3.Connection) -> tuple[_log.HeadState, int, bytes | None]:
            row = conn.execute(
                "SELECT size, frontier, time, signed_size, signed FROM log_head WHERE id = 1"
            ).fetchone()
            state = _log.HeadState.from_row(int(row[0]), bytes(row[1]), int(row[2]))
            return state, int(row[3]), None if row[4] is None else bytes(row[4])

        return await self._read(work)

    async def _current_state(self) -> _log.HeadState:
        cache = self._need_log()
        state, signed_size, stored = await self._signed_state()
        if stored is not None:
            cache.remember(stored, signed_size)  # e.g. after a restart
        return state

    async def signed_head(self) -> bytes:
        cache = self._need_log()
        return await cache.signed_for(await self._current_state())

    async def compact_head(self) -> bytes:
        cache = self._need_log()
        return cache.compact_for(await self._current_state())

    async def log_receipt(self, leaf_index: int, position: int) -> tuple[bytes, CellProof]:
        cache = self._need_log()
        return await cache.receipt(leaf_index, position, self._current_state, self.cell_proofs)

    async def log_leaf(self, index: int) -> bytes:
        self._need_log()

        def work(conn: sqlite3.Connection) -> bytes:
            row = conn.execute(
                "SELECT leaf FROM log_leaves WHERE leaf_index = ?", (index,)
            ).fetchone()
            if row is None:
                raise LookupError("no such leaf in the log")
            return bytes(row[0])

        return await self._read(work)

    async def batch_proof(self, leaf_index: int, position: int) -> list[bytes]:
        self._need_log()
        members = await self._read(lambda conn: _members(conn, leaf_index))
        if not 0 <= position < len(members):
            raise LookupError("no such batch member in the log (expired or never stored)")
        return BatchTree(members).proof(position)

    async def inclusion_proof(self, leaf_index: int, tree_size: int) -> list[bytes]:
        self._need_log()

        def work(conn: sqlite3.Connection) -> list[bytes]:
            _log.check_leaf(leaf_index, tree_size, _read_head(conn).size)
            wanted = _log.plan_nodes(tree_size, [_log.inclusion_work(leaf_index, tree_size)])
            return merkle.inclusion_proof(_nodes(conn, tree_size, wanted), leaf_index, tree_size)

        return await self._read(work)

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        self._need_log()

        def work(conn: sqlite3.Connection) -> list[bytes]:
            _log.check_sizes(old_size, new_size, _read_head(conn).size)
            wanted = _log.plan_nodes(new_size, [_log.consistency_work(old_size, new_size)])
            return merkle.consistency_proof(_nodes(conn, new_size, wanted), old_size, new_size)

        return await self._read(work)

    async def cell_proofs(
        self, positions: Sequence[tuple[int, int]], tree_size: int
    ) -> list[CellProof]:
        cache = self._need_log()
        cached = _log.from_memory(cache, positions, tree_size)
        if cached is not None:
            return cached

        def work(conn: sqlite3.Connection) -> list[CellProof]:
            current = _read_head(conn).size
            wanted = _log.plan_cell_proofs(positions, tree_size, current)
            reader = _nodes(conn, tree_size, wanted)
            cache.add_nodes(reader.nodes)  # immutable: later receipts need no read
            return _log.cell_proofs(positions, tree_size, reader, lambda i: _members(conn, i))

        return await self._read(work)

    def log_public_key(self) -> bytes:
        return self._need_log().public_key()

    def checkpoint_key(self) -> Ed25519NoteKey:
        return self._need_log().checkpoint_key()

    def bind_checkpoint_key(self, origin: str) -> bytes:
        return self._need_log().bind_checkpoint_key(origin)

    def _log_cache(self) -> _log.LogCache:
        return self._need_log()


def _read_head(conn: sqlite3.Connection) -> _log.HeadState:
    row = conn.execute("SELECT size, frontier, time FROM log_head WHERE id = 1").fetchone()
    if row is None:
        raise StoreUnavailable("the relay log's head row is missing; restore from a backup")
    return _log.HeadState.from_row(int(row[0]), bytes(row[1]), int(row[2]))


def _retry_result(
    conn: sqlite3.Connection,
    cell_id: bytes,
    leaf_index: int | None,
    position: int | None,
    batch: _jobs.Batch | None,
) -> DepositResult | _jobs.InBatch:
    """An idempotent retry: the cell's original place in the log."""
    if leaf_index is None or position is None:
        return DepositResult(cell_id, created=False)
    if batch is not None and leaf_index == batch.leaf_index:
        return _jobs.InBatch(batch, cell_id, False, int(position))  # size known at commit
    row = conn.execute("SELECT leaf FROM log_leaves WHERE leaf_index = ?", (leaf_index,)).fetchone()
    size = LogLeaf.decode(bytes(row[0])).batch_size if row is not None else None
    return DepositResult(cell_id, False, int(leaf_index), int(position), size)


def _nodes(conn: sqlite3.Connection, size: int, wanted: set[tuple[int, int]]) -> _log.DictReader:
    """Fetch the planned nodes: one primary-key lookup per leaf row, O(log n) in all.

    Node ``(level, idx)`` is stored in the row of the leaf that completed it,
    ``((idx + 1) << level) - 1``, at offset ``32 * level`` of its ``nodes``.
    """
    rows: dict[int, list[tuple[int, int]]] = {}
    for level, idx in wanted:
        rows.setdefault(((idx + 1) << level) - 1, []).append((level, idx))
    found: dict[tuple[int, int], bytes] = {}
    for leaf_index, coords in rows.items():
        row = conn.execute(
            "SELECT nodes FROM log_leaves WHERE leaf_index = ?", (leaf_index,)
        ).fetchone()
        if row is None:
            continue
        nodes = bytes(row[0])
        for level, idx in coords:
            h = nodes[HASH_LEN * level : HASH_LEN * (level + 1)]
            if len(h) == HASH_LEN:
                found[(level, idx)] = h
    return _log.DictReader(size, found)


def _members(conn: sqlite3.Connection, leaf_index: int) -> list[bytes]:
    row = conn.execute(
        "SELECT members FROM log_leaves WHERE leaf_index = ?", (leaf_index,)
    ).fetchone()
    return [] if row is None or row[0] is None else _log.split_hashes(bytes(row[0]))


def _chunks(slots: list[bytes]) -> list[list[bytes]]:
    return [slots[i : i + _IN_CHUNK] for i in range(0, len(slots), _IN_CHUNK)]


def _fail(jobs: list[_jobs.Job], error: BaseException) -> None:
    for job in jobs:
        job.fail(error)


def _rollback_savepoint(conn: sqlite3.Connection) -> None:
    conn.execute("ROLLBACK TO job")
    conn.execute("RELEASE job")


def _check_ours(conn: sqlite3.Connection) -> None:
    """Refuse a database that another application created (reads only)."""
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    if app_id not in (0, APPLICATION_ID) or (tables and "schema_version" not in tables):
        raise StoreUnavailable(
            "that file is an SQLite database of another application; it was left "
            "untouched: point the relay at a new or a Backchannel database file"
        )


def _apply_migrations(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date, one transaction per migration."""
    migrations = _migrations.load("sqlite")
    conn.execute("BEGIN IMMEDIATE")
    try:
        _check_ours(conn)  # again, now under the write lock
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "schema_version" not in tables:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(
                "CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = int(
                conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            )
            if current > len(migrations):
                raise StoreUnavailable(
                    "the relay database was written by a newer Backchannel; upgrade the relay"
                )
            if current < migration.version:
                for statement in _migrations.split_sqlite(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at)"
                    " VALUES (?, ?, CAST(strftime('%s', 'now') AS INTEGER))",
                    (migration.version, migration.name),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
