"""Kill a depositing process with SIGKILL; nothing it acknowledged may be lost.

SIGKILL leaves no chance to flush or clean up, so this checks the commit
protocol (acknowledge only after COMMIT, recovery of complete commits) at the
process level, on SQLite and on PostgreSQL, for single deposits and for
``deposit_many`` batches: every acknowledged cell is there once, byte for byte,
proved in the log under the head after the kill, which extends every head
handed out before it; a batch is stored whole, in one log leaf, or not at all,
acknowledged or not. It does not cut power: that part rests on
``synchronous=FULL`` (see ``backchannel.store.sqlite``) and PostgreSQL's
``synchronous_commit``.
"""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import backchannel
from backchannel.protocol.misbehaviour import (
    open_signed_head,
    relay_key_from_bytes,
    verify_cell_receipt,
)
from backchannel.store.factory import relay_store_from_url
from backchannel.store.relay_store import RelayStore
from backchannel.store.sqlite import SQLiteRelayStore

from .conftest import pg_schema
from .helpers import cell_for_slot

WORKER = Path(__file__).with_name("crash_worker.py")

#: One call of the worker: the (tenant, slot) of each cell it deposits.
Call = tuple[tuple[str, bytes], ...]
#: A stored row: tenant, slot, cell, leaf index, batch position.
Row = tuple[str, bytes, bytes, int | None, int | None]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, or the URL of a fresh PostgreSQL schema (skipped, saying why, without one)."""
    if request.param == "sqlite":
        yield str(tmp_path / "relay.db")
    else:
        with pg_schema() as dsn:
            yield dsn


def _call(text: bytes) -> Call:
    out = []
    for named in text.decode().split():
        tenant, slot = named.split(":")
        out.append((tenant, bytes.fromhex(slot)))
    return tuple(out)


def _run_and_kill(
    db: str, seed: str, kill_after: int, mode: str
) -> tuple[list[Call], list[Call], list[bytes]]:
    """Start the worker, SIGKILL it after ``kill_after`` acknowledged calls.

    Returns the calls acknowledged, the calls tried, and every signed head
    handed out before the kill.
    """
    src = str(Path(backchannel.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(WORKER.parent)])}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), db, seed, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    buffer = b""
    acked = 0
    stalled = False
    deadline = time.monotonic() + 30
    try:
        while acked < kill_after:
            if time.monotonic() > deadline or proc.poll() is not None:
                stalled = True
                break
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                buffer += os.read(proc.stdout.fileno(), 65536)
                acked = buffer[: buffer.rfind(b"\n") + 1].count(b"\na ")  # complete lines only
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, errors = proc.communicate(timeout=10)
    if stalled:
        pytest.fail("crash worker stalled or died early: " + errors.decode(errors="replace"))
    buffer += rest
    lines = buffer.split(b"\n")[:-1]  # a cut-off last line was never fully written
    assert lines[0] == b"ready"
    assert proc.returncode == -signal.SIGKILL
    heads = [bytes.fromhex(line[2:].decode()) for line in lines if line.startswith(b"h ")]
    tried = [_call(line[2:]) for line in lines if line.startswith(b"t ")]
    calls = [_call(line[2:]) for line in lines if line.startswith(b"a ")]
    return calls, tried, heads


def _rows(db: str) -> list[Row]:
    """Every cell row in the database, read past the store (SQLite: checked for integrity)."""
    query = "SELECT tenant_id, slot, cell, leaf_index, batch_position FROM cells"
    if db.startswith("postgresql://"):
        with psycopg.connect(db) as pg:
            raw = pg.execute(query).fetchall()
    else:
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            raw = conn.execute(query).fetchall()
        finally:
            conn.close()
    return [(t, bytes(s), bytes(c), leaf, position) for t, s, c, leaf, position in raw]


async def _check_log(
    store: RelayStore, acked: list[tuple[str, bytes]], before: list[bytes]
) -> None:
    """Every acked cell is proved under the head after restart, which extends every old head."""
    key = relay_key_from_bytes(store.log_public_key())
    head = open_signed_head(await store.signed_head(), key)
    positions = []
    for tenant in {t for t, _ in acked}:
        slots = [s for t, s in acked if t == tenant]
        logged = await store.fetch_logged(tenant, slots)
        for s in slots:
            leaf_index, position = logged[s].leaf_index, logged[s].batch_position
            assert leaf_index is not None and position is not None
            positions.append((tenant, s, leaf_index, position))
    proofs = await store.cell_proofs([(leaf, pos) for _, _, leaf, pos in positions], head.size)
    leaves = {i: await store.log_leaf(i) for i in {p.leaf_index for p in proofs}}
    for (tenant, s, _, _), proof in zip(positions, proofs, strict=True):
        verify_cell_receipt(
            tenant_id=tenant,
            slot=s,
            cell=cell_for_slot(s),
            leaf=leaves[proof.leaf_index],
            batch_position=proof.batch_position,
            batch_proof=proof.batch_proof,
            inclusion_proof=proof.inclusion_proof,
            head=head,
        )
    for raw in before:
        old = open_signed_head(raw, key)
        assert 0 < old.size <= head.size
        old.check_consistent(head, await store.consistency_proof(old.size, head.size))


async def _kill_and_check(db: str, mode: str, kill_after: int) -> None:
    calls, tried, heads_before = _run_and_kill(db, f"run-{mode}-{kill_after}", kill_after, mode)
    acked = [cell for call in calls for cell in call]
    assert len(calls) >= kill_after
    assert len(set(acked)) == len(acked)
    assert set(calls) <= set(tried)
    assert heads_before

    store = relay_store_from_url(db) if "://" in db else SQLiteRelayStore(db)
    await store.open()
    try:
        for tenant in {t for t, _ in acked}:
            slots = [s for t, s in acked if t == tenant]
            found = await store.fetch(tenant, slots)
            assert len(found) == len(slots), f"{len(slots) - len(found)} acknowledged cells lost"
            assert all(found[s] == cell_for_slot(s) for s in slots)
        rows = _rows(db)
        tenants = {t for call in tried for t, _ in call}
        stored = sum([await store.count_cells(t) for t in tenants])
        await _check_log(store, acked, heads_before)
    finally:
        await store.close()

    held = {(t, s): (c, leaf, position) for t, s, c, leaf, position in rows}
    assert len(held) == len(rows) == stored  # nothing twice; the counts agree with the rows
    assert all(c == cell_for_slot(s) for (_, s), (c, _, _) in held.items())
    assert set(held) <= {cell for call in tried for cell in call}, "rows never deposited"
    # Each call is stored whole, in one leaf (one commit), or not at all: those
    # acknowledged (all of them) and those cut off by the kill alike.
    places: set[tuple[int | None, int | None]] = set()
    for call in tried:
        present = [held[cell] for cell in call if cell in held]
        assert len(present) in (0, len(call)), f"{len(present)} of a call's {len(call)} cells"
        if present:
            assert len({leaf for _, leaf, _ in present}) == 1, "one call's cells in several leaves"
        places.update((leaf, position) for _, leaf, position in present)
    assert len(places) == len(rows)  # no two cells at one place in the log
    print(
        f"\n{mode}: acknowledged {len(calls)} calls, tried {len(tried)}, stored {stored} cells "
        f"({stored - len(acked)} committed but unacknowledged)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [100, 300, 700, 1500, 3000])
async def test_sigkill_mid_flight_loses_nothing_acknowledged(db: str, kill_after: int) -> None:
    await _kill_and_check(db, "deposit", kill_after)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [50, 200, 600])
async def test_sigkill_mid_deposit_many_loses_nothing_and_splits_no_batch(
    db: str, kill_after: int
) -> None:
    await _kill_and_check(db, "deposit_many", kill_after)
