"""Batch deposits to ``relay serve --workers N``: one worker killed mid-load.

A relay runs with three workers on PostgreSQL. Clients send batch deposits
(``POST /v1/batch/deposit``) of several cells to several tenants, opening a new
connection every few batches so that the batches spread over the workers; one
worker is killed with SIGKILL in the middle (another one later, up to twice,
while that cut off no batch) and the supervisor starts it again. A batch
whose answer the kill cut off is not sent again at once: once the load is
over, the store must hold each of them whole, in one log leaf, or not at all;
the same batch sent again must then find it so. In the end:

* every cell is stored once, at its slot, byte for byte, at the log place its
  first answer gave (and nothing else is stored);
* every answer proves all its cells against its own head, and a batch's
  cells all sit in one leaf (one commit: a batch is all or nothing);
* each client's heads, whichever worker gave them, are proved consistent one
  after the other by the answers' own consistency proofs, and every head is
  consistent with the final one; every head is signed by the one log key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from backchannel.crypto.signing import VerifyKey
from backchannel.protocol.batch import DepositBatch, DepositBatchAnswer, DepositCell
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.misbehaviour import SignedHead, relay_key_bytes
from backchannel.store.factory import relay_store_from_url

from .procs import RelayProcess, check_heads, log_key, register, started_workers, worker_pids
from .test_batch import check_place
from .test_crash import _batch_read_back, _count_tenant

WORKERS = 3
TENANTS = ("mission-batch-a", "mission-batch-b", "mission-batch-c")
CLIENTS = 8
BATCHES_PER_CLIENT = 16
#: Cells per batch (a worker's writer never splits one between two commits,
#: whatever else is in flight: tests/store/test_postgres.py).
CELLS_PER_BATCH = 6
BATCHES_PER_CONNECTION = 4

#: (tenant, slot, cell) of each cell of a batch.
Batch = tuple[tuple[str, bytes, bytes], ...]


@dataclass
class Load:
    """What the clients saw."""

    key: VerifyKey
    #: slot -> (leaf index, batch position) its first acknowledgement gave.
    acked: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    #: Batches whose answer never came (the connection's worker was killed).
    interrupted: list[Batch] = field(default_factory=list)
    #: The client ports of the connections with a batch in flight.
    in_flight: set[int] = field(default_factory=set)
    #: Every head handed out, by size.
    heads: dict[int, TreeHead] = field(default_factory=dict)
    batches_acked: int = 0

    def check(self, batch: Batch, answer: DepositBatchAnswer, known: TreeHead | None) -> TreeHead:
        """Check one answer against the client's last head ``known``; its head."""
        log = answer.log
        signed = SignedHead.decode(log.signed_head)
        signed.verify(self.key)  # one key, whichever worker answered
        if log.key:
            assert log.key == relay_key_bytes(self.key)
        head = signed.head
        if known is not None:
            # A worker's head never goes behind what another worker showed this client.
            assert head.size >= known.size, (known.size, head.size)
            if head.size > known.size:
                known.check_consistent(head, log.consistency)
            else:
                assert head == known
        places = answer.places()
        assert len(answer.results) == len(batch)
        for (tenant, slot, cell), result, place in zip(batch, answer.results, places, strict=True):
            assert result.status in (200, 201), result.status
            assert result.cell_id == hashlib.sha256(cell).digest()
            assert place is not None
            check_place(log, self.key, tenant, slot, cell, place)
        # One commit: all new in one leaf, or (sent again) all held in one leaf.
        assert len({r.status for r in answer.results}) == 1, [r.status for r in answer.results]
        assert len({p.leaf_index for p in places if p is not None}) == 1
        for (_, slot, _), place in zip(batch, places, strict=True):
            assert place is not None
            self.acked.setdefault(slot, (place.leaf_index, place.batch_position))
        self.heads[head.size] = head
        self.batches_acked += 1
        return head


async def _deposit(http: httpx.AsyncClient, batch: Batch, known: TreeHead | None) -> httpx.Response:
    body = DepositBatch(
        0 if known is None else known.size, tuple(DepositCell(*c) for c in batch)
    ).encode()
    r = await http.post(
        "/v1/batch/deposit",
        content=body,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    return r


async def _client(base: str, batches: list[Batch], load: Load) -> None:
    known: TreeHead | None = None
    for i in range(0, len(batches), BATCHES_PER_CONNECTION):
        # A fresh connection every few batches, so the batches spread over the workers.
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            port = None  # the connection's own port, once an answer came on it
            for batch in batches[i : i + BATCHES_PER_CONNECTION]:
                if port is not None:
                    load.in_flight.add(port)
                try:
                    r = await _deposit(http, batch, known)
                except httpx.TransportError:
                    load.interrupted.append(batch)  # committed whole, or not at all
                    port = None
                    await asyncio.sleep(0.1)
                    continue
                finally:
                    if port is not None:
                        load.in_flight.discard(port)
                try:
                    port = r.extensions["network_stream"].get_extra_info("client_addr")[1]
                except OSError:  # the connection is closed already
                    port = None
                known = load.check(batch, DepositBatchAnswer.decode(r.content), known)


def _peers(pid: int, port: int) -> set[int]:
    """The ports of the clients process ``pid`` holds a connection to ``port`` from."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    peers = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                peers.add(int(remote.rsplit(":", 1)[1], 16))
    return peers


async def _kill_busiest(relay: RelayProcess, load: Load) -> None:
    """SIGKILL the worker that holds the most batches in flight right now (commits
    are paced, so they wait there a while), or any worker after ten seconds."""
    deadline = time.monotonic() + 10
    while True:
        peers = {pid: _peers(pid, relay.port) for pid in worker_pids(relay.pid)}
        await asyncio.sleep(0.002)  # the clients take the answers that came meanwhile
        busy = {pid: ports & load.in_flight for pid, ports in peers.items()}
        victim = max(busy, key=lambda pid: len(busy[pid]))
        if busy[victim] or time.monotonic() > deadline:
            break
    os.kill(victim, signal.SIGKILL)


async def _load_and_kill(relay: RelayProcess, batches: list[list[Batch]], load: Load) -> None:
    clients = [asyncio.create_task(_client(relay.base_url, mine, load)) for mine in batches]
    total = CLIENTS * BATCHES_PER_CLIENT
    # A batch answered in the instant between the choice and the kill is not cut
    # off: on a loaded machine that can happen to every batch a worker held. So a
    # worker is killed at a quarter of the load, and again at a half and at three
    # quarters while no batch has been cut off yet.
    for quarter in (1, 2, 3):
        while load.batches_acked < total * quarter // 4 and not all(c.done() for c in clients):
            for client in clients:
                if client.done():
                    client.result()  # a client's failed check ends the test here
            await asyncio.sleep(0.01)
        if all(c.done() for c in clients):
            break
        await _kill_busiest(relay, load)
        await asyncio.sleep(0.5)  # the clients see their connections cut
        if load.interrupted:
            break
    await asyncio.gather(*clients)


async def _logged(url: str, cells: list[tuple[str, bytes, bytes]]) -> dict[bytes, tuple[int, int]]:
    """Each of ``cells`` the store holds with these bytes: its (leaf index, batch position)."""
    store = relay_store_from_url(url)
    await store.open()
    try:
        out = {}
        for tenant in TENANTS:
            wanted = {slot: cell for t, slot, cell in cells if t == tenant}
            for slot, logged in (await store.fetch_logged(tenant, list(wanted))).items():
                assert logged.cell == wanted[slot]
                assert logged.leaf_index is not None and logged.batch_position is not None
                out[slot] = (logged.leaf_index, logged.batch_position)
        return out
    finally:
        await store.close()


async def _again(base: str, batches: list[Batch], load: Load) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for batch in batches:
            r = await _deposit(http, batch, None)
            load.check(batch, DepositBatchAnswer.decode(r.content), None)


@pytest.mark.postgres
def test_batch_deposits_to_workers_lose_nothing_and_split_no_batch(pg_url: str) -> None:
    credentials = {
        t: base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode() for t in TENANTS
    }
    batches = [
        [
            tuple(
                (
                    TENANTS[(b + k) % len(TENANTS)],
                    secrets.token_bytes(32),
                    secrets.token_bytes(4096),
                )
                for k in range(CELLS_PER_BATCH)
            )
            for b in range(BATCHES_PER_CLIENT)
        ]
        for _ in range(CLIENTS)
    ]
    cells = [c for mine in batches for batch in mine for c in batch]
    # Commits paced as in production: several clients' batches share a commit,
    # and a batch waits a while in its worker.
    env = {"BACKCHANNEL_RELAY_WORKERS": str(WORKERS), "BACKCHANNEL_RELAY_LOG_INTERVAL_MS": "50"}
    with RelayProcess(pg_url, env) as relay:
        before = started_workers(relay.pid, WORKERS)
        for tenant, credential in credentials.items():
            asyncio.run(register(relay.base_url, tenant, credential))
        load = Load(log_key(relay.base_url))

        asyncio.run(_load_and_kill(relay, batches, load))
        deadline = time.monotonic() + 20
        while len(worker_pids(relay.pid)) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.1)
        after = sorted(worker_pids(relay.pid))
        assert len(after) == WORKERS and after != before  # one killed, and started again
        assert load.interrupted, "the kill cut off no batch"

        # The batches cut off: each is in the store whole, in one leaf, or not at all.
        cut = [c for batch in load.interrupted for c in batch]
        held = asyncio.run(_logged(pg_url, cut))
        for batch in load.interrupted:
            present = [held[slot] for _, slot, _ in batch if slot in held]
            assert len(present) in (0, len(batch)), f"{len(present)} of {len(batch)} cells stored"
            assert len({leaf for leaf, _ in present}) <= 1
        # Sent again, each finds itself so: all held already, at those places, or all new.
        asyncio.run(_again(relay.base_url, load.interrupted, load))
        for _, slot, _ in cut:
            if slot in held:
                assert load.acked[slot] == held[slot]
        assert len(load.acked) == len(cells)

        # One log: every head extends into the final one, signed by the one key.
        check_heads(relay.base_url, load.key, load.heads.values())
        # Read back through the relay, each cell proved under one verified head.
        found = asyncio.run(_batch_read_back(relay, credentials, cells))
        assert found == {slot: cell for _, slot, cell in cells}

    # Each cell once, at its slot, at the place its first answer gave; nothing else.
    assert asyncio.run(_logged(pg_url, cells)) == load.acked
    assert len(set(load.acked.values())) == len(cells)  # no two cells at one place in the log
    for tenant in TENANTS:
        expected = sum(1 for t, _, _ in cells if t == tenant)
        assert asyncio.run(_count_tenant(pg_url, tenant)) == expected
    print(
        f"\n{load.batches_acked} batch answers, {len(load.interrupted)} batches cut off "
        f"({sum(1 for b in load.interrupted if b[0][1] in held)} of them committed), "
        f"{len(load.heads)} heads"
    )
