"""Capacity: how many channels one relay process holds at a round of 60 s.

``python -m bench.capacity [--quick] [--round 60] [--levels 25000,50000,...]
[--log-interval-ms 100]``

A building full of missions is many channels, each depositing one cell and
fetching one cell per round. This bench offers that load to one relay process
(SQLite, configured as ``relay init`` and the container image deploy it: its
commits paced at ``PRODUCTION_LOG_INTERVAL_MS``, one commit for all the
deposits of 100 ms) at increasing channel counts: for ``C``
channels and a round of ``T`` seconds, deposits (``PUT .../slots/{slot}``,
4 KiB) and fetches (``GET .../slots/{slot}`` of a cell deposited earlier)
each arrive as a Poisson process of rate ``C / T``, open loop: a request's
latency counts from the moment it was due, not from when a connection was
free, so a relay that falls behind shows it in its p99 (no coordinated
omission). Load comes from a separate process on raw HTTP/1.1 (as in
``bench.relay``), with up to 512 keep-alive connections.

For each level it reports the rate achieved, p50 and p99 latency, errors, and
the relay's CPU time per channel and round (user + system time of the relay
process from ``/proc``, divided by the channel-rounds served). The largest
level with p99 under one second and no errors is the capacity. The harness's
run then offers the target level (10^5) once more to a relay whose commits
are not paced (``log_interval_ms = 0``, the library default that tests and
closed-loop benchmarks use), so the pacing's saving is in the results
(``relay_cores_at_target_unpaced``). Every
component shares this 2-core machine: the load generator takes most of one
core, so the figure is a floor for a machine where the relay has its cores to
itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from backchannel.relay.settings import PRODUCTION_LOG_INTERVAL_MS
from bench.relay import (
    CELL,
    HOST,
    REPO,
    TENANT,
    _free_port,
    _pct,
    _read_response,
    _register,
    _server,
    _slot,
    relay_command,
)

LEVELS = (25_000, 50_000, 100_000, 150_000, 200_000, 300_000)
#: A quick run's levels (``python -m bench --quick``): the target itself, briefly.
QUICK_LEVELS = (25_000, 100_000)
#: The channel count the goal names (10^5 at T = 60 s).
TARGET_CHANNELS = 100_000
MAX_CONNECTIONS = 512
#: Idle connections older than this (seconds) are not reused (the relay's
#: keep-alive timeout is 5 s).
KEEPALIVE_REUSE = 4.0
#: Slots pre-filled for the fetches to read (a channel reads its peer's cell).
PREFILL = 2_000


async def _offer(spec: dict[str, Any]) -> dict[str, Any]:
    """Open-loop Poisson arrivals of deposits and fetches at ``rate`` each, for ``seconds``."""
    seed = bytes.fromhex(spec["seed"])
    fill = bytes.fromhex(spec["fill_seed"])
    rate, seconds = spec["rate"], spec["seconds"]
    auth = f"Authorization: Bearer {spec['credential']}\r\n"
    host = f"Host: {HOST}\r\n"
    rnd = random.Random(spec["seed"])
    # Idle keep-alive connections and when each was last used: one idle longer than
    # the relay's keep-alive timeout (uvicorn's 5 s) is closed by the relay, and
    # reusing it would count the load generator's mistake as the relay's error.
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    opened = 0
    latencies = {"deposit": [], "fetch": []}  # type: dict[str, list[float]]
    errors: dict[str, int] = {}
    done = {"deposit": 0, "fetch": 0}
    waiting: asyncio.Queue[None] = asyncio.Queue()

    def request(kind: str, i: int) -> bytes:
        if kind == "deposit":
            return (
                f"PUT /v1/tenants/{TENANT}/slots/{_slot(seed, i)} HTTP/1.1\r\n{host}"
                f"Content-Type: application/octet-stream\r\nContent-Length: {CELL}\r\n\r\n"
            ).encode() + os.urandom(CELL)
        slot = _slot(fill, i % PREFILL)
        return f"GET /v1/tenants/{TENANT}/slots/{slot} HTTP/1.1\r\n{host}{auth}\r\n".encode()

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        nonlocal opened
        while True:
            while idle:
                reader, writer, used = idle.pop()
                if time.perf_counter() - used < KEEPALIVE_REUSE:
                    return reader, writer
                writer.close()
                opened -= 1
            if opened < MAX_CONNECTIONS:
                opened += 1
                return await asyncio.open_connection(HOST, spec["port"])
            await waiting.get()

    async def one(kind: str, i: int, due: float) -> None:
        conn = await connection()
        assert conn is not None
        reader, writer = conn
        try:
            writer.write(request(kind, i))
            status, close, _ = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError):
            errors["io"] = errors.get("io", 0) + 1
            writer.close()
            return _release(None)
        if status in (200, 201):
            latencies[kind].append(time.perf_counter() - due)
            done[kind] += 1
        else:
            errors[str(status)] = errors.get(str(status), 0) + 1
        if close:
            writer.close()
            return _release(None)
        return _release((reader, writer))

    def _release(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        nonlocal opened
        if conn is None:
            opened -= 1
        else:
            idle.append((*conn, time.perf_counter()))
        waiting.put_nowait(None)

    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    end = start + seconds
    # Two independent Poisson processes, merged: the next arrival of either kind.
    due = {"deposit": start + rnd.expovariate(rate), "fetch": start + rnd.expovariate(rate)}
    count = {"deposit": 0, "fetch": 0}
    while True:
        kind = min(due, key=lambda k: due[k])
        at = due[kind]
        if at >= end:
            break
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(kind, count[kind], at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        count[kind] += 1
        due[kind] = at + rnd.expovariate(rate)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    elapsed = time.perf_counter() - start
    unfinished = sum(count.values()) - sum(done.values()) - sum(errors.values())
    if unfinished:
        errors["unfinished"] = unfinished
    out: dict[str, Any] = {"seconds": elapsed, "errors": errors, "offered": count}
    for kind, values in latencies.items():
        values.sort()
        out[f"{kind}_per_s"] = done[kind] / elapsed
        out[f"{kind}_p50_ms"] = _pct(values, 50) * 1000
        out[f"{kind}_p99_ms"] = _pct(values, 99) * 1000
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _prefill(port: int, fill: bytes) -> None:
    import socket

    with socket.create_connection((HOST, port)) as s:
        f = s.makefile("rb")
        for i in range(PREFILL):
            s.sendall(
                (
                    f"PUT /v1/tenants/{TENANT}/slots/{_slot(fill, i)} HTTP/1.1\r\nHost: {HOST}\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {CELL}\r\n\r\n"
                ).encode()
                + os.urandom(CELL)
            )
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += f.readline()
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            f.read(length)


def measure(
    levels: list[int],
    round_s: float,
    seconds: float,
    log_interval_ms: int = PRODUCTION_LOG_INTERVAL_MS,
) -> dict[str, Any]:
    """Each level in turn on one relay whose commits are paced by ``log_interval_ms``."""
    results: dict[str, Any] = {
        "round_seconds": round_s,
        "level_seconds": seconds,
        "log_interval_ms": log_interval_ms,
        "levels": {},
    }
    with tempfile.TemporaryDirectory(prefix="capacity-") as tmp:
        port = _free_port()
        credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        cmd = relay_command(f"sqlite:///{Path(tmp) / 'relay.db'}", port)
        pacing = {"BACKCHANNEL_RELAY_LOG_INTERVAL_MS": str(log_interval_ms)}
        with _server(cmd, port, "/readyz", pacing) as proc:
            _register(port, credential)
            fill = secrets.token_bytes(16)
            _prefill(port, fill)
            for channels in levels:
                rate = channels / round_s
                spec = {
                    "port": port,
                    "rate": rate,
                    "seconds": seconds,
                    "seed": secrets.token_hex(16),
                    "fill_seed": fill.hex(),
                    "credential": credential,
                }
                cpu0 = _cpu_seconds(proc.pid)
                out = subprocess.run(
                    [sys.executable, "-m", "bench.capacity", "--offer", json.dumps(spec)],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    timeout=seconds + 120,
                )
                cpu = _cpu_seconds(proc.pid) - cpu0
                if out.returncode != 0:
                    raise RuntimeError(out.stderr[-800:])
                level = json.loads(out.stdout.strip().splitlines()[-1])
                channel_rounds = channels * level["seconds"] / round_s
                level["relay_cpu_s"] = round(cpu, 2)
                level["cpu_us_per_channel_round"] = round(cpu / channel_rounds * 1e6, 1)
                worst = max(level["deposit_p99_ms"], level["fetch_p99_ms"])
                level["held"] = bool(not level["errors"] and not math.isnan(worst) and worst < 1000)
                results["levels"][str(channels)] = level
                print(json.dumps({"channels": channels, **level}), flush=True)
                if not level["held"]:
                    break
    held = [int(c) for c, v in results["levels"].items() if v["held"]]
    results["capacity_channels"] = max(held) if held else 0
    # How much of a core the relay needed at the 10^5 channels (CPU
    # to spare means well under one).
    at = results["levels"].get(str(TARGET_CHANNELS))
    if at is not None:
        results["relay_cores_at_target"] = round(at["relay_cpu_s"] / at["seconds"], 3)
    return results


def with_unpaced(result: dict[str, Any], unpaced: dict[str, Any]) -> dict[str, Any]:
    """``result`` (the deployed relay's) with the target level of a relay whose
    commits are not paced beside it: what ``relay init``'s pacing saves."""
    at = unpaced["levels"].get(str(TARGET_CHANNELS))
    if at is not None:
        result["unpaced_at_target"] = at
        result["relay_cores_at_target_unpaced"] = unpaced.get("relay_cores_at_target")
    return result


def run(quick: bool) -> dict[str, Any]:
    """The harness's entry (``python -m bench``): the levels up to the first not held,
    then the target once more with commits unpaced."""
    seconds = 8.0 if quick else 30.0
    result = measure(list(QUICK_LEVELS if quick else LEVELS), 60.0, seconds)
    return with_unpaced(result, measure([TARGET_CHANNELS], 60.0, seconds, log_interval_ms=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="8 s per level instead of 30 s")
    parser.add_argument("--round", type=float, default=60.0)
    parser.add_argument("--levels", default=",".join(str(x) for x in LEVELS))
    parser.add_argument(
        "--log-interval-ms",
        type=int,
        default=PRODUCTION_LOG_INTERVAL_MS,
        help="the relay's commit pacing (default: as relay init writes it; 0: unpaced)",
    )
    parser.add_argument("--offer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.offer:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        print(json.dumps(asyncio.run(_offer(json.loads(args.offer)))))
        return
    levels = [int(x) for x in args.levels.split(",")]
    result = measure(levels, args.round, 8.0 if args.quick else 30.0, args.log_interval_ms)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
