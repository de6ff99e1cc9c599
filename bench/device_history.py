"""What an officer's device pays each round as its history grows.

A device keeps what it has done for the record: every intake request it
opened, every message it sent or read. Its rounds must not cost more for it.
Two measurements, on the code on ``PYTHONPATH`` (run it against an older
checkout's ``src`` to compare):

* **Intake requests held.** The runner's device takes in ``n`` requests
  sealed to its card, 32 a round as a fetch brings them, then times a round's
  take-in that brings nothing (median of 30) at each ``n``.
* **Messages sent.** Four officers (two missions of two) and a relay in a
  subprocess (SQLite), messages back to back as :mod:`bench.e2e` sends them;
  after ``m`` messages, the runner's device: the size of the channel's state
  record, and the bytes it writes to its vault in one round with no message
  (median of 5 such rounds).

``python -m bench.device_history [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backchannel.client import demo
from backchannel.client.device import default_relay_factory
from backchannel.client.service import Client
from backchannel.protocol import intake as pi
from bench.e2e import KDF, _pipelined
from bench.relay import HOST, _free_port, _server, relay_command

BODY = "Ten minutes on the talks, for our evening programme? " * 6


def _requests(c: Client, n: int) -> list[bytes]:
    card = c.intake_card()
    return [
        pi.seal_request(
            card,
            pi.IntakeRequest(pi.Kind.INTERVIEW, f"Request {i}", BODY, "", secrets.token_bytes(16)),
        )
        for i in range(n)
    ]


@contextlib.contextmanager
def _written(c: Client) -> Iterator[list[int]]:
    """Bytes of each vault record ``c`` writes inside the block."""
    sizes: list[int] = []
    real: Callable[..., Any] = c.vault.put

    def put(table: str, key: bytes, value: bytes) -> None:
        sizes.append(len(value))
        real(table, key, value)

    c.vault.put = put  # type: ignore[method-assign]
    try:
        yield sizes
    finally:
        del c.vault.put


async def _measure(url: str, work: Path, levels: list[int], messages: list[int]) -> dict[str, Any]:
    ny = await demo.found(work, "New York", ("Ri", "Han"), url, default_relay_factory, "b", KDF)
    dc = await demo.found(
        work, "Washington", ("Smith", "Jones"), url, default_relay_factory, "b", KDF
    )
    await demo.pair(ny, dc)
    devices = (*ny, *dc)
    ri = ny[0]
    intake: list[dict[str, float]] = []
    ri.intake_set_open(True)
    seq = held = 0
    for n in levels:
        cells = _requests(ri, n - held)
        for i in range(0, len(cells), 32):
            rows = [(seq + j + 1, cell) for j, cell in enumerate(cells[i : i + 32])]
            seq += len(rows)
            ri.take_intake(rows)
        held = n
        times = []
        for _ in range(30):
            t = time.perf_counter()
            ri.take_intake([])
            times.append(time.perf_counter() - t)
        intake.append({"requests_held": n, "empty_take_ms": 1000 * statistics.median(times)})
    history: list[dict[str, float]] = []
    channel = ri.channel_for("Washington").channel_id
    async with contextlib.AsyncExitStack() as stack:
        for d in devices:
            await stack.enter_async_context(d.relay_session())
        sent = 0
        for m in messages:
            await _pipelined(devices, m - sent)
            sent = m
            await demo.lockstep(devices, lambda: True, limit=2)  # the last receipts
            rounds = []
            for _ in range(5):
                with _written(ri) as sizes:
                    await demo.lockstep(devices, lambda: True, limit=1)
                rounds.append(sum(sizes))
            history.append(
                {
                    "messages": m,
                    "state_record_bytes": len(ri.vault.get("endpoints", channel) or b""),
                    "cover_round_bytes_written": statistics.median(rounds),
                }
            )
    for c in devices:
        c.home.close()
    return {"intake": intake, "messages": history}


def run(quick: bool = False) -> dict[str, Any]:
    levels = [0, 500, 2000] if quick else [0, 1000, 5000]
    messages = [10, 50] if quick else [10, 100, 300]
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        cmd = relay_command(f"sqlite:///{tmp}/relay.db", port, "--data-dir", tmp,
                            "--open-registration")  # fmt: skip
        with _server(cmd, port, "/healthz"):
            return asyncio.run(
                _measure(f"http://{HOST}:{port}", Path(tmp) / "homes", levels, messages)
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = run(args.quick)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'intake requests held':>22} {'empty take-in, ms':>18}")
    for row in result["intake"]:
        print(f"{row['requests_held']:>22,} {row['empty_take_ms']:>18.2f}")
    print(f"{'messages sent':>22} {'state record, B':>18} {'cover round writes, B':>22}")
    for row in result["messages"]:
        print(
            f"{row['messages']:>22,} {row['state_record_bytes']:>18,}"
            f" {row['cover_round_bytes_written']:>22,.0f}"
        )


if __name__ == "__main__":
    main()
