"""End to end through a real relay: compose, co-sign, seal, deposit, fetch, joint open.

Four officers (two missions of two) in this process, a relay in a subprocess
(uvicorn, embedded SQLite, durable deposits), real HTTP on 127.0.0.1, rounds
as fast as possible. One message = the whole path a message takes: the author
seals and asks for a co-signature, the co-signer approves, the runner deposits,
both recipient officers fetch, one asks for the other's share, the other
approves, the message is opened and read; the receipt rides back.

Back to back, the same count of messages goes through several times in a
row (``PIPELINED_RUNS``): one run moves by 10 to 20 % with the machine, so the
figure is their median, with every run beside it.

``python -m bench.e2e [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backchannel.client import demo
from backchannel.client.keystore import KdfParams
from backchannel.client.service import Client
from backchannel.protocol.payload import note
from backchannel.protocol.states import SendState
from bench.relay import HOST, _free_port, _server, relay_command

# Keystore cost is paid once per officer at start-up; it is not what we measure.
KDF = KdfParams(memory_kib=8 * 1024, time_cost=1, parallelism=1)
TEXT = "Proposal: working-level talks in Geneva next month. " * 20
#: Back to back, how many drafts the desk lets await their co-signature at once.
AHEAD = 4
#: Back-to-back runs, one after the other on the same devices; the figure is their median.
PIPELINED_RUNS = 5


async def _rounds_until(devices: tuple[Client, ...], done: Callable[[], bool]) -> int:
    """Rounds in step (each device deposits, fetches, checks) until ``done()``; how many."""
    for n in range(1, 65):
        await demo.lockstep(devices, lambda: True, limit=1)
        if done():
            return n
    raise AssertionError("the message did not get through in 64 rounds")


async def _one_message(devices: tuple[Client, ...]) -> dict[str, int]:
    """One message the whole way, officers acting as soon as their desks show it.

    Returns the rounds each leg took: co-sign request to the co-signer, approval
    to delivery at the peer, delivery to the joint open (share request and
    share), and the approval to the open.
    """
    ri, han, smith, jones = devices
    ri.compose(ri.channel_for("Washington").channel_id, note(TEXT))
    to_cosigner = await _rounds_until(devices, lambda: bool(han.cosign_requests()))
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    before = len(smith.inbox())
    delivered = await _rounds_until(
        devices, lambda: len(smith.inbox()) > before and len(jones.inbox()) > before
    )
    item = smith.inbox()[-1]
    smith.request_open(item.message_id)
    asked = await _rounds_until(devices, lambda: bool(jones.share_requests()))
    [share] = jones.share_requests()
    jones.approve_share(share.request_id)
    opened = await _rounds_until(
        devices,
        lambda: bool(next(i for i in smith.inbox() if i.message_id == item.message_id).payload),
    )
    assert smith.read(item.message_id).text == TEXT
    return {
        "to_cosigner": to_cosigner,
        "approval_to_delivery": delivered,
        "delivery_to_open": asked + opened,
        "approval_to_open": delivered + asked + opened,
    }


async def _pipelined(devices: tuple[Client, ...], count: int) -> tuple[int, float]:
    """``count`` messages back to back: (rounds, seconds).

    The desk keeps ``AHEAD`` drafts awaiting their co-signature, drafting as
    many as that takes at the end of each round (each chains on the one before
    it), and
    every officer acts on what his desk shows at the end of each round.
    """
    ri, han, smith, jones = devices
    channel = ri.channel_for("Washington").channel_id
    before = {i.message_id for i in smith.inbox()}
    asked: set[bytes] = set()
    opened: set[bytes] = set()
    drafted = rounds = 0
    start = time.perf_counter()
    while len(opened) < count:
        sealed = [d for d in ri.drafts() if d.outgoing.state is SendState.SEALED]
        for _ in range(min(AHEAD - len(sealed), count - drafted)):
            ri.compose(channel, note(TEXT))
            drafted += 1
        await demo.lockstep(devices, lambda: True, limit=1)
        rounds += 1
        for req in han.cosign_requests():
            han.approve_cosign(req.request_id)
        for item in smith.inbox():
            if item.message_id in before:
                continue
            if item.payload:
                opened.add(item.message_id)
            elif item.message_id not in asked:
                smith.request_open(item.message_id)
                asked.add(item.message_id)
        for share in jones.share_requests():
            jones.approve_share(share.request_id)
        if rounds > 16 * count + 64:
            raise AssertionError("the pipeline stalled")
    return rounds, time.perf_counter() - start


async def _measure(url: str, workdir: Path, count: int, runs: int) -> dict[str, Any]:
    ny = await demo.found(
        workdir, "New York", ("Ri", "Han"), url, demo.default_relay_factory, "bench", KDF
    )
    dc = await demo.found(
        workdir, "Washington", ("Smith", "Jones"), url, demo.default_relay_factory, "bench", KDF
    )
    await demo.pair(ny, dc)
    devices = (*ny, *dc)
    async with contextlib.AsyncExitStack() as stack:
        # Each device keeps its relay connection from round to round, as
        # `backchannel run` does.
        for d in devices:
            await stack.enter_async_context(d.relay_session())
        await _one_message(devices)  # warm-up (the first message also starts a key epoch)
        legs: list[dict[str, int]] = []
        start = time.perf_counter()
        for _ in range(count):
            legs.append(await _one_message(devices))
        elapsed = time.perf_counter() - start
        piped = [await _pipelined(devices, count) for _ in range(runs)]
    rounds = sum(sum(v for k, v in leg.items() if k != "approval_to_open") for leg in legs)
    for c in devices:
        c.home.close()
    return {
        "messages": count,
        "messages_per_s": count / elapsed,
        "ms_per_message": 1000 * elapsed / count,
        "rounds_per_s": rounds / elapsed,
        "rounds_approval_to_open": max(leg["approval_to_open"] for leg in legs),
        "rounds_approval_to_delivery": max(leg["approval_to_delivery"] for leg in legs),
        "rounds_to_cosigner": max(leg["to_cosigner"] for leg in legs),
        "pipelined_messages_per_s": statistics.median(count / s for _, s in piped),
        "pipelined_rounds_per_message": statistics.median(r / count for r, _ in piped),
        "pipelined_rounds_per_s": statistics.median(r / s for r, s in piped),
        "pipelined_runs_messages_per_s": [round(count / s, 2) for _, s in piped],
        "pipelined_runs_rounds_per_message": [r / count for r, _ in piped],
    }


def run(quick: bool = False) -> dict[str, Any]:
    count = 10 if quick else 40
    runs = 2 if quick else PIPELINED_RUNS
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        db = f"sqlite:///{tmp}/relay.db"
        cmd = relay_command(db, port, "--data-dir", tmp, "--open-registration")
        with _server(cmd, port, "/healthz"):
            result = asyncio.run(
                _measure(f"http://{HOST}:{port}", Path(tmp) / "homes", count, runs)
            )
    return {"sqlite": result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    result = run(args.quick)
    r = result["sqlite"]
    print(f"{'e2e messages/s (SQLite relay)':<36} {r['messages_per_s']:>10.2f}")
    print(f"{'e2e ms/message':<36} {r['ms_per_message']:>10.1f}")
    print(f"{'e2e rounds/s (four devices in step)':<36} {r['rounds_per_s']:>10.1f}")
    print(f"{'rounds, approval to joint open':<36} {r['rounds_approval_to_open']:>10}")
    print(f"{'e2e messages/s, back to back':<36} {r['pipelined_messages_per_s']:>10.2f}")
    runs = ", ".join(f"{v:.1f}" for v in r["pipelined_runs_messages_per_s"])
    print(f"{'  each run (the figure: their median)':<36} {runs:>10}")
    print(f"{'rounds per message, back to back':<36} {r['pipelined_rounds_per_message']:>10.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
