"""``relay serve --workers N``: several processes on one port, one log, nothing lost.

A relay runs with three workers on PostgreSQL. Many clients deposit at once
(each connection lands on whichever worker the kernel picks); one worker is
killed with SIGKILL in the middle and the supervisor starts it again. Then:
every acknowledged cell is there byte for byte, once; every deposit answer's
proof holds against the head it came with; every head handed out is
consistent with the final one, all signed by one key.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from pathlib import Path

import httpx
import pytest

from backchannel.errors import ConfigError
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.misbehaviour import open_signed_head, verify_cell_receipt
from backchannel.relay.settings import resolve_settings
from backchannel.store.factory import relay_store_from_url

from .procs import OPERATOR, RelayProcess, check_heads, log_key, started_workers, worker_pids

WORKERS = 3
CLIENTS = 8
CELLS_PER_CLIENT = 32
TENANT = "mission-workers"


def _cpu_seconds(pid: int) -> float:
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _client(
    base: str, acked: dict[str, tuple[bytes, dict[str, object]]], interrupted: set[str]
) -> None:
    # A fresh connection per few requests, so connections spread over the workers.
    for _ in range(CELLS_PER_CLIENT // 4):
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for _ in range(4):
                slot, cell = secrets.token_hex(32), secrets.token_bytes(4096)
                for _attempt in range(20):
                    try:
                        r = await http.put(
                            f"/v1/tenants/{TENANT}/slots/{slot}",
                            content=cell,
                            headers={"Content-Type": "application/octet-stream"},
                        )
                    except httpx.TransportError:
                        interrupted.add(slot)
                        await asyncio.sleep(0.1)  # the killed worker's connection
                        continue
                    if r.status_code in (200, 201):
                        acked[slot] = (cell, r.json()["log"])
                        break
                    assert r.status_code == 503, r.text
                    await asyncio.sleep(0.1)


async def _load_and_kill(
    relay: RelayProcess,
) -> tuple[dict[str, tuple[bytes, dict[str, object]]], set[str]]:
    """The cells acknowledged, and the slots whose deposit was cut off at least once."""
    acked: dict[str, tuple[bytes, dict[str, object]]] = {}
    interrupted: set[str] = set()
    clients = [
        asyncio.create_task(_client(relay.base_url, acked, interrupted)) for _ in range(CLIENTS)
    ]
    while len(acked) < CLIENTS * CELLS_PER_CLIENT // 3:
        await asyncio.sleep(0.02)
    victim = worker_pids(relay.pid)[0]
    os.kill(victim, signal.SIGKILL)
    await asyncio.gather(*clients)
    return acked, interrupted


@pytest.mark.postgres
def test_workers_share_one_port_and_one_log_and_lose_nothing(pg_url: str) -> None:
    env = {"BACKCHANNEL_RELAY_WORKERS": str(WORKERS)}
    with RelayProcess(pg_url, env) as relay:
        before = started_workers(relay.pid, WORKERS)
        cpu_before = {pid: _cpu_seconds(pid) for pid in before}
        r = httpx.post(
            relay.base_url + "/v1/tenants",
            json={"tenant_id": TENANT, "credential": secrets.token_urlsafe(32)},
            headers={"Authorization": f"Bearer {OPERATOR}"},
        )
        assert r.status_code == 201, r.text
        acked, interrupted = asyncio.run(_load_and_kill(relay))
        assert len(acked) == CLIENTS * CELLS_PER_CLIENT
        # The supervisor started the killed worker again.
        deadline = time.monotonic() + 20
        while len(worker_pids(relay.pid)) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.1)
        after = sorted(worker_pids(relay.pid))
        assert len(after) == WORKERS and after != before

        # The load reached more than one worker: the two that were not killed both worked.
        survivors = set(before) & set(after)
        assert len(survivors) == WORKERS - 1
        for pid in survivors:
            assert _cpu_seconds(pid) - cpu_before[pid] > 0.02, pid
        # Metrics are the relay's as a whole, whichever worker answers the scrape.
        totals = set()
        for _ in range(10):
            text = httpx.get(relay.base_url + "/metrics").text  # a new connection each time
            for line in text.splitlines():
                if line.startswith('backchannel_relay_deposits_total{outcome="created"}'):
                    totals.add(float(line.split()[-1]))
        # Every scrape gives the same total. It counts each acknowledged cell once,
        # except that a worker killed between its commit and its counter leaves
        # that cell uncounted (the client's retry then finds it stored, a
        # duplicate): only a deposit cut off by the kill may be missing.
        assert len(totals) == 1, totals
        created = totals.pop()
        assert len(acked) - len(interrupted) <= created <= len(acked), (created, len(interrupted))

        key = log_key(relay.base_url)
        places = set()
        heads: dict[int, TreeHead] = {}
        leaves: dict[int, str] = {}
        for slot, (cell, log) in acked.items():
            head = open_signed_head(bytes.fromhex(str(log["signed_head"])), key)
            heads[head.size] = head
            leaf_index, position = log["leaf_index"], log["batch_position"]
            assert isinstance(leaf_index, int) and isinstance(position, int)
            if leaf_index not in leaves:
                answer = httpx.get(f"{relay.base_url}/v1/log/leaves/{leaf_index}")
                leaves[leaf_index] = answer.json()["leaf"]
            leaf = leaves[leaf_index]
            verify_cell_receipt(
                tenant_id=TENANT,
                slot=bytes.fromhex(slot),
                cell=cell,
                leaf=bytes.fromhex(leaf),
                batch_position=position,
                batch_proof=[bytes.fromhex(h) for h in log["batch_proof"]],  # type: ignore[attr-defined]
                inclusion_proof=[bytes.fromhex(h) for h in log["inclusion_proof"]],  # type: ignore[attr-defined]
                head=head,
            )
            places.add((leaf_index, position))
        assert len(places) == len(acked)  # no two cells at one place in the log
        check_heads(relay.base_url, key, heads.values())
    asyncio.run(_stored_exactly(pg_url, acked))


async def _stored_exactly(url: str, acked: dict[str, tuple[bytes, dict[str, object]]]) -> None:
    store = relay_store_from_url(url)
    await store.open()
    try:
        slots = [bytes.fromhex(s) for s in acked]
        got = await store.fetch(TENANT, slots)
        assert {s.hex(): c for s, c in got.items()} == {s: c for s, (c, _) in acked.items()}
        assert await store.count_cells() == len(acked)  # nothing else, nothing twice
    finally:
        await store.close()


def test_several_workers_need_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="several workers need PostgreSQL"):
        resolve_settings({"db_url": str(tmp_path / "relay.db"), "workers": 2}, env={})
    with pytest.raises(ConfigError, match="workers must be 1 to 64"):
        resolve_settings({"workers": 0}, env={})
