"""Helpers shared by the peer benchmarks: bounded closed-loop load, percentiles."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

#: Where peers are installed; git-ignored, outside the project's dependencies.
PEERS_DIR = Path(__file__).resolve().parent.parent / ".peers"

#: Every peer message carries this many payload bytes, like one relay cell.
MESSAGE_BYTES = 4096

LOOPBACK = "127.0.0.1"


def say(line: str) -> None:
    """One progress line, flushed at once (the harness prints the table later)."""
    print(line, flush=True)


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of already sorted values."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac)


#: Percentiles kept for a CDF plot: coarse in the body, fine in the tail.
CDF_QUANTILES = (*range(0, 90, 5), *range(90, 100), 99.5, 99.9, 100)


def latency_summary(latencies_s: Sequence[float]) -> dict[str, Any]:
    """p50/p90/p99/max in ms, plus ``[percentile, ms]`` pairs for a CDF plot."""
    ordered = sorted(latencies_s)
    ms = [v * 1000.0 for v in ordered]
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3) if ms else math.nan,
        "latency_cdf_ms": [[q, round(percentile(ms, q), 3)] for q in CDF_QUANTILES],
    }


async def closed_loop(
    op: Callable[[int], Awaitable[None]],
    *,
    concurrency: int,
    max_ops: int,
    max_seconds: float,
    warmup_ops: int = 0,
) -> dict[str, Any]:
    """Run ``op(i)`` from ``concurrency`` workers until ``max_ops`` or ``max_seconds``.

    Each worker issues its next operation as soon as the previous one answered
    (closed loop). Warm-up operations run first, at the same concurrency, and are
    not counted. Returns throughput, latency percentiles and error count.
    """
    counter = 0

    async def warm_worker() -> None:
        nonlocal counter
        while counter < warmup_ops:
            counter += 1
            await op(counter)

    if warmup_ops:
        await asyncio.gather(*(warm_worker() for _ in range(min(concurrency, warmup_ops))))

    latencies: list[float] = []
    errors: list[str] = []
    issued = 0
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal issued, counter
        while issued < max_ops and time.perf_counter() < deadline:
            issued += 1
            counter += 1
            t0 = time.perf_counter()
            try:
                await op(counter)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                if len(errors) > max(20, max_ops // 10):
                    return
                continue
            latencies.append(time.perf_counter() - t0)

    t_start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t_start
    out: dict[str, Any] = {
        "concurrency": concurrency,
        "ops": len(latencies),
        "errors": len(errors),
        "seconds": round(elapsed, 3),
        "ops_per_s": round(len(latencies) / elapsed, 2) if elapsed > 0 else math.nan,
    }
    out.update(latency_summary(latencies))
    if errors:
        out["first_error"] = errors[0]
    return out


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MiB, from /proc (Linux only)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def tail(text: str | bytes | None, lines: int = 5) -> str:
    """The last few lines of a process's output, for a one-line failure reason."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def python_for_venvs() -> str:
    """The interpreter that builds peer venvs (the one running the harness)."""
    return sys.executable
