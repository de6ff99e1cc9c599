"""Where a relay benchmark's time goes across the machine: CPU and PostgreSQL waits.

Around one phase of a benchmark, :func:`profiled` records

* the machine's busy cores (``/proc/stat``: all CPUs, idle and I/O wait
  counted as idle), and how many of them the relay's processes (the server and
  its workers) and PostgreSQL's processes used (``/proc/<pid>/stat``); the
  rest is everything else on the machine, the load generator first;
* what PostgreSQL's sessions of the benchmark's database were doing, sampled
  every 10 ms from ``pg_stat_activity``: running (``CPU``, active with no wait
  event), or waiting and on what (``Lock:transactionid``, ``IO:WalSync``, ...).
  Idle sessions are not counted: the shares are of the time a session had a
  statement to run.

Linux only (``/proc``); on another system the CPU figures are left out.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SAMPLE_S = 0.01


def _machine() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - idle, total


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after its last ")".
    return [raw[raw.index("(") + 1 : raw.rindex(")")], *raw[raw.rindex(")") + 2 :].split()]


def _processes() -> dict[int, tuple[str, int, float]]:
    """Every process: (command, parent pid, CPU seconds used)."""
    out: dict[int, tuple[str, int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st is None:
            continue
        # After the name: state [1], ppid [2], ..., utime [12], stime [13].
        out[int(entry)] = (st[0], int(st[2]), (int(st[12]) + int(st[13])) / _TICK)
    return out


def _tree(procs: dict[int, tuple[str, int, float]], root: int) -> set[int]:
    members = {root}
    grew = True
    while grew:
        grew = False
        for pid, (_, ppid, _) in procs.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grew = True
    return members


def _cpu_of(procs: dict[int, tuple[str, int, float]], pids: set[int]) -> float:
    return sum(procs[p][2] for p in pids if p in procs)


class _Waits(threading.Thread):
    """Samples the benchmark database's active sessions until stopped."""

    def __init__(self, db_url: str) -> None:
        super().__init__(daemon=True)
        self.db_url = db_url
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self.error: str | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.db_url, autocommit=True) as conn:
                while not self._stop_event.is_set():
                    rows = conn.execute(
                        "SELECT wait_event_type, wait_event FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        " AND state = 'active'"
                    ).fetchall()
                    self.samples += 1
                    for kind, event in rows:
                        self.counts["CPU" if kind is None else f"{kind}:{event}"] += 1
                    self._stop_event.wait(SAMPLE_S)
        except Exception as exc:  # a profile must not end the benchmark
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


@contextlib.contextmanager
def profiled(server_pid: int, db_url: str | None = None) -> Iterator[dict[str, Any]]:
    """Fill the dict it yields, when the block ends, with where the machine's time went."""
    out: dict[str, Any] = {}
    linux = Path("/proc/stat").exists()
    waits = _Waits(db_url) if db_url else None
    if waits is not None:
        waits.start()
    if linux:
        before_procs, before = _processes(), _machine()
    start = time.perf_counter()
    try:
        yield out
    finally:
        seconds = time.perf_counter() - start
        if waits is not None:
            waits.stop()
        if linux:
            after_procs, after = _processes(), _machine()
            busy = (after[0] - before[0]) / max(1, after[1] - before[1])
            cpus = os.cpu_count() or 1
            relay = _tree(after_procs, server_pid) | _tree(before_procs, server_pid)
            postgres = {p for p, (name, _, _) in after_procs.items() if name == "postgres"}

            def used(pids: set[int]) -> float:
                return (_cpu_of(after_procs, pids) - _cpu_of(before_procs, pids)) / seconds

            out.update(
                {
                    "seconds": round(seconds, 2),
                    "cpus": cpus,
                    "busy_cores": round(busy * cpus, 2),
                    "relay_cores": round(used(relay), 2),
                    "postgres_cores": round(used(postgres), 2),
                }
            )
            out["other_cores"] = round(
                out["busy_cores"] - out["relay_cores"] - out["postgres_cores"], 2
            )
        if waits is not None:
            total = sum(waits.counts.values())
            out["session_samples"] = total
            out["sessions_active_mean"] = round(total / max(1, waits.samples), 2)
            out["session_time"] = (
                {k: round(v / total, 3) for k, v in waits.counts.most_common(8)} if total else {}
            )
            if waits.error:
                out["wait_sampler_error"] = waits.error
