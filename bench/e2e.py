"""End to end through a real relay: compose, co-sign, seal, deposit, fetch, joint open.

Four officers (two missions of two) in this process, a relay in a subprocess
(uvicorn, embedded SQLite, durable deposits), real HTTP on 127.0.0.1, rounds
as fast as possible. One message = the whole path a message takes: the author
seals and asks for a co-signature, the co-signer approves, the runner deposits,
both recipient officers fetch, one asks for the other's share, the other
approves, the message is opened and read; the receipt rides back.

``python -m bench.e2e [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from backchannel.client import demo
from backchannel.client.keystore import KdfParams
from backchannel.client.service import Client
from backchannel.protocol.payload import note
from bench.relay import HOST, _free_port, _server, relay_command

# Keystore cost is paid once per officer at start-up; it is not what we measure.
KDF = KdfParams(memory_kib=8 * 1024, time_cost=1, parallelism=1)
TEXT = "Proposal: working-level talks in Geneva next month. " * 20


async def _one_message(ri: Client, han: Client, smith: Client, jones: Client) -> None:
    ri.compose(ri.channel_for("Washington").channel_id, note(TEXT))
    await ri.sync(0)
    await han.sync(0)
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    await han.sync(0)
    before = len(smith.inbox())
    for _ in range(8):  # one round per cell: a message with an epoch announcement takes two
        await ri.sync(1)
        await smith.sync(1)
        await jones.sync(1)
        if len(smith.inbox()) > before:
            break
    item = smith.inbox()[-1]
    smith.request_open(item.message_id)
    await smith.sync(0)
    await jones.sync(0)
    [share] = jones.share_requests()
    jones.approve_share(share.request_id)
    await jones.sync(0)
    await smith.sync(0)
    assert smith.read(item.message_id).text == TEXT


async def _measure(url: str, workdir: Path, count: int) -> dict[str, float]:
    ny = await demo.found(
        workdir, "New York", ("Ri", "Han"), url, demo.default_relay_factory, "bench", KDF
    )
    dc = await demo.found(
        workdir, "Washington", ("Smith", "Jones"), url, demo.default_relay_factory, "bench", KDF
    )
    await demo.pair(ny, dc)
    ri, han = ny
    smith, jones = dc
    await _one_message(ri, han, smith, jones)  # warm-up
    start = time.perf_counter()
    for _ in range(count):
        await _one_message(ri, han, smith, jones)
    elapsed = time.perf_counter() - start
    for c in (*ny, *dc):
        c.home.close()
    return {
        "messages": count,
        "messages_per_s": count / elapsed,
        "ms_per_message": 1000 * elapsed / count,
    }


def run(quick: bool = False) -> dict[str, Any]:
    count = 10 if quick else 40
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        db = f"sqlite:///{tmp}/relay.db"
        cmd = relay_command(db, port, "--data-dir", tmp, "--open-registration")
        with _server(cmd, port, "/healthz"):
            result = asyncio.run(_measure(f"http://{HOST}:{port}", Path(tmp) / "homes", count))
    return {"sqlite": result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    result = run(args.quick)
    r = result["sqlite"]
    print(f"{'e2e messages/s (SQLite relay)':<36} {r['messages_per_s']:>10.2f}")
    print(f"{'e2e ms/message':<36} {r['ms_per_message']:>10.1f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
