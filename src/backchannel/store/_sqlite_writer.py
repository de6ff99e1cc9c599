"""The SQLite store's writer: group commit, its SQL on the event loop, its ``fsync`` on a thread.

A write is a :class:`~backchannel.store._sqlite_jobs.Job`. One task on the
store's event loop takes every job waiting and runs them in one transaction
on the only write connection, right there on the loop: ``BEGIN IMMEDIATE``,
each job under its savepoint, the log's append. Only the ``COMMIT``, which
carries the ``fsync``, goes to a thread of its own; the jobs that arrive
meanwhile make the next group. A caller's future resolves once its
transaction is on disk, so many concurrent deposits share one ``fsync``.

Why the loop: the :mod:`sqlite3` module lets go of the interpreter's lock
around every SQLite call, so a writer thread beside a busy event loop paid a
hand-over of that lock, and back, for each statement of each deposit
(docs/benchmarks.md, "The writer's SQL on the event loop").

The loop never waits for a lock: its connection has no busy timeout, and a
group whose ``BEGIN`` meets another connection's write lock (another
process, an operator's tool) runs whole on the thread, which waits the
configured timeout. A write made from another thread than the loop's is
handed to the loop. Used by :mod:`backchannel.store.sqlite` only.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar, cast

from backchannel.errors import StoreUnavailable
from backchannel.store import _common, _log
from backchannel.store import _sqlite_conn as _conn
from backchannel.store import _sqlite_jobs as _jobs
from backchannel.store._sqlite_errors import translate
from backchannel.store._sqlite_log import _read_head
from backchannel.store.relay_store import BatchTree

T = TypeVar("T")


class _Staged:
    """A transaction run up to its ``COMMIT``: each job's outcome and the log's append."""

    __slots__ = ("appended", "batch", "outcomes")

    def __init__(
        self,
        outcomes: list[tuple[_jobs.Job, Any, BaseException | None]],
        batch: _jobs.Batch | None,
        appended: tuple[BatchTree, _log.Append] | None,
    ) -> None:
        self.outcomes = outcomes
        self.batch = batch
        self.appended = appended


class SQLiteWriter:
    """The writer half of :class:`~backchannel.store.sqlite.SQLiteRelayStore`."""

    _path: str
    _busy_timeout_ms: int
    _max_db_bytes: int | None
    _max_batch: int
    _log_interval: float
    _logging: bool
    _accepting: bool
    _cache: _log.LogCache | None
    _transactions: int
    _writes: int

    def _writer_init(self) -> None:
        self._wconn: sqlite3.Connection | None = None
        #: The one thread that runs the COMMITs (and a group that must wait for a lock).
        self._committer: cf.ThreadPoolExecutor | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._pending: collections.deque[_jobs.Job] = collections.deque()
        self._wake: asyncio.Future[None] | None = None
        self._stopping = False
        self._batch: _jobs.Batch | None = None
        #: The head this writer committed last.
        self._last: _log.HeadState | None = None

    @property
    def _queued(self) -> int:
        return len(self._pending)

    # -- lifecycle ---------------------------------------------------------

    def _connect_writer(self) -> sqlite3.Connection:
        return _conn.connect_writer(self._path, self._busy_timeout_ms, self._max_db_bytes)

    async def _start_writer(self) -> None:
        """Open the write connection (on the thread: it may wait for a lock) and start the task."""
        loop = asyncio.get_running_loop()
        committer = cf.ThreadPoolExecutor(1, thread_name_prefix="backchannel-sqlite-writer")
        try:
            conn = await loop.run_in_executor(committer, self._connect_writer)
        except sqlite3.Error as exc:
            committer.shutdown(wait=False)
            raise translate(exc) from None
        except BaseException:
            committer.shutdown(wait=False)
            raise
        conn.execute("PRAGMA busy_timeout = 0")  # the loop never waits for a lock
        self._wconn, self._committer, self._writer_loop = conn, committer, loop
        self._pending = collections.deque()
        self._stopping = False
        self._writer_task = loop.create_task(
            self._writer_main(conn), name="backchannel-sqlite-writer"
        )

    async def _stop_writer(self) -> None:
        """Finish every write already submitted, then close the connection."""
        task, conn, committer = self._writer_task, self._wconn, self._committer
        if task is not None and not task.done():  # done: its loop ended, nothing to finish
            self._stopping = True
            self._poke()
            with contextlib.suppress(Exception):
                await task
        self._writer_task = self._wconn = self._committer = None
        if conn is not None and committer is not None:

            def finish() -> None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.close()

            await asyncio.get_running_loop().run_in_executor(committer, finish)
        if committer is not None:
            await asyncio.to_thread(committer.shutdown, True)
        self._writer_loop = None

    # -- submitting --------------------------------------------------------

    async def _write(self, work: Callable[[sqlite3.Connection], T], single: bool = False) -> T:
        """Run ``work`` in the next group commit. ``single``: it writes with at
        most one statement, so a refusal or a failed statement leaves nothing
        behind without a savepoint (SQLite undoes a failed statement whole)."""
        writer_loop = self._writer_loop
        if not self._accepting or writer_loop is None:
            raise _common.not_open()
        loop = asyncio.get_running_loop()
        job = _jobs.Job(work, loop, single)
        if loop is writer_loop:
            self._submit(job)
        else:
            try:
                writer_loop.call_soon_threadsafe(self._submit, job)
            except RuntimeError:  # the store's own loop is closed
                raise StoreUnavailable(
                    "the relay store's event loop has stopped; open the store again"
                ) from None
        return cast(T, await job.future)

    def _submit(self, job: _jobs.Job) -> None:
        task = self._writer_task
        if task is None or task.done():  # closed, or its loop ended, after the job was handed over
            reason = (
                "the relay store was closed before this write ran"
                if task is None
                else "the relay store's writer has stopped; open the store again"
            )
            job.fail(StoreUnavailable(reason))
            _jobs.deliver([job], self._writer_loop)
            return
        self._pending.append(job)
        self._poke()

    def _poke(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # -- the writer task ---------------------------------------------------

    async def _writer_main(self, conn: sqlite3.Connection) -> None:
        loop = asyncio.get_running_loop()
        last_commit = float("-inf")
        pending = self._pending
        while True:
            if not pending:
                if self._stopping:
                    return
                self._wake = loop.create_future()
                try:
                    await self._wake
                finally:
                    self._wake = None
                continue
            # Pacing: wait for the interval since the last commit to pass,
            # gathering what arrives meanwhile into this group.
            wait = last_commit + self._log_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            group = [pending.popleft() for _ in range(min(len(pending), self._max_batch))]
            await self._run_group(conn, group)
            last_commit = loop.time()

    async def _run_group(self, conn: sqlite3.Connection, group: list[_jobs.Job]) -> None:
        # A caller cancelled before we started is dropped; a job already
        # started commits even if its caller is cancelled meanwhile (its
        # outcome then goes nowhere), as a retry with the same cell expects.
        jobs = [job for job in group if not job.future.cancelled()]
        try:
            while jobs:
                jobs = await self._commit_on_loop(conn, jobs)
        except BaseException as exc:  # a bug, or the loop shutting down: nobody left waiting
            _rollback(conn)
            failure = StoreUnavailable("the relay store's writer failed; restart the relay")
            for job in group:
                if not job.settled:
                    job.fail(failure)
            if not isinstance(exc, Exception):
                raise
        finally:
            _jobs.deliver(group, self._writer_loop)

    async def _commit_on_loop(
        self, conn: sqlite3.Connection, jobs: list[_jobs.Job]
    ) -> list[_jobs.Job]:
        """One transaction with its SQL here and its COMMIT on the thread; the jobs to run again."""
        began = self._begin(conn, jobs, wait=False)
        if began is None:  # another connection holds the lock: wait for it on the thread
            return await self._on_thread(self._commit_waiting, conn, jobs)
        if not began:
            return []
        staged = self._stage(conn, jobs)
        if isinstance(staged, list):
            return staged
        return self._committed(conn, staged, await self._on_thread(self._commit_now, conn))

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        committer = self._committer
        assert committer is not None  # the task runs only while the store is open
        running = committer.submit(fn, *args)
        try:
            return await asyncio.wrap_future(running)
        except asyncio.CancelledError:
            # The thread may hold the connection: nothing touches it until it is done.
            cf.wait([running])
            raise

    def _commit_waiting(self, conn: sqlite3.Connection, jobs: list[_jobs.Job]) -> list[_jobs.Job]:
        """The whole transaction on the thread, waiting up to the busy timeout for the lock."""
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        try:
            if not self._begin(conn, jobs, wait=True):
                return []
            staged = self._stage(conn, jobs)
            if isinstance(staged, list):
                return staged
            return self._committed(conn, staged, self._commit_now(conn))
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    # -- one transaction, step by step ----------------------------------------

    def _begin(self, conn: sqlite3.Connection, jobs: list[_jobs.Job], wait: bool) -> bool | None:
        """``BEGIN IMMEDIATE`` and the log side of the batch: True if begun,
        False if it failed (the jobs failed with it), None if the lock is
        taken and ``wait`` is False (nothing done)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._batch = self._begin_batch(conn) if self._logging else None
        except sqlite3.Error as exc:
            if not conn.in_transaction and not wait and _conn.is_busy(exc):
                return None
            _rollback(conn)
            _jobs.fail_all(jobs, translate(exc))
            return False
        return True

    def _stage(self, conn: sqlite3.Connection, jobs: list[_jobs.Job]) -> _Staged | list[_jobs.Job]:
        """Run the jobs and append the batch's leaf, inside the open transaction.

        Returns what the COMMIT will make durable, or the jobs to run again
        (none if they all failed).
        """
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
                    _jobs.rollback_savepoint(conn)
                outcomes.append((job, None, translate(exc)))
            except Exception as exc:  # a refusal such as SlotConflict; nothing written
                if not single:
                    _jobs.rollback_savepoint(conn)
                outcomes.append((job, None, exc))
            else:
                if not single:
                    conn.execute("RELEASE job")
                outcomes.append((job, result, None))
        batch, self._batch = self._batch, None
        try:
            appended = self._append(conn, batch) if batch is not None else None
        except _jobs.StaleHead:
            # Another process appended since our last commit, so the positions
            # handed out are wrong. Nothing is acknowledged yet: undo it all
            # and run the same jobs again from the head row.
            _rollback(conn)
            self._last = None
            return jobs
        except sqlite3.Error as exc:
            _rollback(conn)
            _jobs.fail_all(jobs, translate(exc))
            return []
        return _Staged(outcomes, batch, appended)

    def _committed(
        self, conn: sqlite3.Connection, staged: _Staged, error: sqlite3.Error | None
    ) -> list[_jobs.Job]:
        """Settle the jobs once their COMMIT returned (``error`` if it failed)."""
        if error is not None:
            _rollback(conn)
            _jobs.fail_all([job for job, _, _ in staged.outcomes], translate(error))
            return []
        appended, batch = staged.appended, staged.batch
        if appended is not None and batch is not None and self._cache is not None:
            tree, step = appended
            self._last = step.state
            self._cache.committed(tree, step)
            batch.appended = appended  # before any depositor reads it (_jobs.InBatch)
        self._transactions += 1
        self._writes += len(staged.outcomes)
        for job, result, exc in staged.outcomes:
            if exc is None:
                job.finish(result)
            else:
                job.fail(exc)
        return []

    def _commit_now(self, conn: sqlite3.Connection) -> sqlite3.Error | None:
        """COMMIT (the ``fsync``, on the thread); the error if it failed."""
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            return exc
        return None

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


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
