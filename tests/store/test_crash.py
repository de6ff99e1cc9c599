"""Kill a depositing process with SIGKILL; nothing it acknowledged may be lost.

SIGKILL leaves no chance to flush or clean up, so this checks the commit
protocol (acknowledge only after COMMIT, WAL recovery of complete commits) at
the process level. It does not cut power: that part rests on
``synchronous=FULL`` (see ``backchannel.store.sqlite``).
"""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import backchannel
from backchannel.protocol.misbehaviour import (
    open_signed_head,
    relay_key_from_bytes,
    verify_cell_receipt,
)
from backchannel.store.sqlite import SQLiteRelayStore

from .helpers import cell_for_slot

WORKER = Path(__file__).with_name("crash_worker.py")


def _run_and_kill(db: Path, seed: str, kill_after: int) -> tuple[list[bytes], list[bytes]]:
    """Start the worker, SIGKILL it after ``kill_after`` acks.

    Returns every acked slot and every signed head handed out before the kill.
    """
    src = str(Path(backchannel.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(WORKER.parent)])}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(db), seed],
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
                # minus the "ready" line and the signed heads
                acked = buffer.count(b"\n") - 1 - buffer.count(b"h ")
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, errors = proc.communicate(timeout=10)
    if stalled:
        pytest.fail("crash worker stalled or died early: " + errors.decode(errors="replace"))
    buffer += rest
    lines = buffer.split(b"\n")[:-1]  # a cut-off last line was never fully acknowledged
    assert lines[0] == b"ready"
    assert proc.returncode == -signal.SIGKILL
    heads = [bytes.fromhex(line[2:].decode()) for line in lines[1:] if line.startswith(b"h ")]
    slots = [bytes.fromhex(line.decode()) for line in lines[1:] if not line.startswith(b"h ")]
    return slots, heads


async def _check_log(store: SQLiteRelayStore, acked: list[bytes], before: list[bytes]) -> None:
    """Every acked cell is proved under the head after restart, which extends every old head."""
    key = relay_key_from_bytes(store.log_public_key())
    head = open_signed_head(await store.signed_head(), key)
    logged = await store.fetch_logged("crash", acked)
    positions = []
    for s in acked:
        leaf_index, position = logged[s].leaf_index, logged[s].batch_position
        assert leaf_index is not None and position is not None
        positions.append((leaf_index, position))
    proofs = await store.cell_proofs(positions, head.size)
    leaves = {i: await store.log_leaf(i) for i in {p.leaf_index for p in proofs}}
    for s, proof in zip(acked, proofs, strict=True):
        verify_cell_receipt(
            tenant_id="crash",
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


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [100, 300, 700, 1500, 3000])
async def test_sigkill_mid_flight_loses_nothing_acknowledged(
    tmp_path: Path, kill_after: int
) -> None:
    db = tmp_path / "relay.db"
    acked, heads_before = _run_and_kill(db, seed=f"run-{kill_after}", kill_after=kill_after)
    assert len(acked) >= kill_after
    assert len(set(acked)) == len(acked)
    assert heads_before

    store = SQLiteRelayStore(db)
    await store.open()
    try:
        found = await store.fetch("crash", acked)
        assert len(found) == len(acked)
        assert all(found[s] == cell_for_slot(s) for s in acked)
        stored = await store.count_cells("crash")
        assert stored >= len(acked)  # deposits committed but not yet printed may exist too
        await _check_log(store, acked, heads_before)
    finally:
        await store.close()

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT slot, cell FROM cells WHERE tenant_id = 'crash'").fetchall()
        assert len(rows) == stored == len({bytes(s) for s, _ in rows})
        assert all(bytes(c) == cell_for_slot(bytes(s)) for s, c in rows)
    finally:
        conn.close()
