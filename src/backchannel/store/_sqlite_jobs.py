"""The SQLite writer's units of work, and how their outcomes reach the callers.

A :class:`Job` is one caller's work for the next group commit; a
:class:`Batch` is the log side of one write transaction and an
:class:`InBatch` a deposit's place in it until the batch is appended.
:func:`deliver` hands a commit's outcomes back to the callers' event loops,
one wake-up per loop and commit. Used by :mod:`backchannel.store.sqlite` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any

from backchannel.protocol.misbehaviour import LogLeaf
from backchannel.store import _log
from backchannel.store.relay_store import BatchTree, DepositResult, LogReceipt

Work = Callable[[sqlite3.Connection], Any]


class Batch:
    """The log side of one write transaction: the cells it creates, in order."""

    __slots__ = ("appended", "checked", "members", "now", "state")

    def __init__(self, state: _log.HeadState, checked: bool) -> None:
        self.state = state
        #: False while ``state`` is this writer's memory of its last commit,
        #: not yet checked against the head row (the append checks it).
        self.checked = checked
        #: The leaf hashes of the cell entries, in commit order.
        self.members: list[bytes] = []
        self.now = 0
        #: The batch tree and the append, once committed.
        self.appended: tuple[BatchTree, _log.Append] | None = None

    @property
    def leaf_index(self) -> int:
        return self.state.size


class InBatch:
    """A deposit's place in the batch being committed, until the batch is appended.

    The writer only marks the batch appended; each depositor then builds its
    own :class:`DepositResult` (batch size, receipt) on its side, so the
    writer does no per-cell work after the commit.
    """

    __slots__ = ("batch", "cell_id", "created", "position")

    def __init__(self, batch: Batch, cell_id: bytes, created: bool, position: int) -> None:
        self.batch = batch
        self.cell_id = cell_id
        self.created = created
        self.position = position

    def result(self) -> DepositResult:
        leaf_index = self.batch.leaf_index
        appended = self.batch.appended
        if appended is None:  # not reached: a batch with a cell in it appends
            return DepositResult(self.cell_id, self.created, leaf_index, self.position)
        tree, step = appended
        receipt = (
            LogReceipt(tree, self.position, step.head, step.inclusion_proof)
            if self.created
            else None
        )
        size = len(tree.members)
        return DepositResult(self.cell_id, self.created, leaf_index, self.position, size, receipt)


class StaleHead(Exception):
    """The head row moved since this writer's last commit (another process appended)."""


class Job:
    """One unit of work for the writer, and its caller's future on the caller's loop.

    The writer records the outcome (``finish`` / ``fail``) and, once per
    commit, hands every outcome back (:func:`deliver`): on the writer's own
    loop directly, to any other loop with one ``call_soon_threadsafe``.
    """

    __slots__ = ("error", "future", "loop", "result", "settled", "single", "work")

    def __init__(self, work: Work, loop: asyncio.AbstractEventLoop, single: bool) -> None:
        self.work = work
        self.single = single
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.result: Any = None
        self.error: BaseException | None = None
        self.settled = False

    def finish(self, result: Any) -> None:
        self.result, self.settled = result, True

    def fail(self, error: BaseException) -> None:
        self.error, self.settled = error, True


def deliver(jobs: list[Job], here: asyncio.AbstractEventLoop | None) -> None:
    """Hand the settled jobs' outcomes to their loops: right away on ``here``
    (the loop this runs on), with one wake-up per other loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Job]] = {}
    for job in jobs:
        if job.settled:
            by_loop.setdefault(job.loop, []).append(job)
    for loop, done in by_loop.items():
        if loop is here:
            settle(done)
            continue
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, done)


def settle(jobs: list[Job]) -> None:
    """Resolve the callers' futures (on their loop); a cancelled caller is skipped."""
    for job in jobs:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


def retry_result(
    conn: sqlite3.Connection,
    cell_id: bytes,
    leaf_index: int | None,
    position: int | None,
    batch: Batch | None,
) -> DepositResult | InBatch:
    """An idempotent retry: the cell's original place in the log."""
    if leaf_index is None or position is None:
        return DepositResult(cell_id, created=False)
    if batch is not None and leaf_index == batch.leaf_index:
        return InBatch(batch, cell_id, False, int(position))  # size known at commit
    row = conn.execute("SELECT leaf FROM log_leaves WHERE leaf_index = ?", (leaf_index,)).fetchone()
    size = LogLeaf.decode(bytes(row[0])).batch_size if row is not None else None
    return DepositResult(cell_id, False, int(leaf_index), int(position), size)


def fail_all(jobs: list[Job], error: BaseException) -> None:
    for job in jobs:
        job.fail(error)


def rollback_savepoint(conn: sqlite3.Connection) -> None:
    conn.execute("ROLLBACK TO job")
    conn.execute("RELEASE job")
