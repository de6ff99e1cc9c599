"""Where a deposit's CPU time goes: the relay profiled in process, phase by phase.

``python -m bench.profile_relay [--label NAME] [--plot docs/img/relay_profile.png]``
(``--flame docs/img`` instead: a py-spy flame graph of each deposit workload)
runs the relay app (SQLite store, transparency log on) behind uvicorn's own
HTTP/1.1 protocol (httptools) on in-memory transports, so that everything a
real request costs is in one process and one profile: parsing the request,
the ASGI layers, the checks, the store's writer (log append and the
commit's ``fsync``), its reads, building the answer and writing the
response. No sockets and no load generator: the CPU is the relay's alone,
which makes the figures usable on a loaded machine.

Three workloads, each at 16 concurrent connections after a warm-up:

* ``deposit``: ``PUT /v1/tenants/{t}/slots/{s}`` with one 4 KiB cell;
* ``fetch``: ``GET /v1/tenants/{t}/slots/{s}`` of a stored cell (the other half
  of a channel's round in ``bench.capacity``);
* ``batch_deposit``: ``POST /v1/batch/deposit`` with 8 cells;
* ``batch_fetch``: ``POST /v1/tenants/{t}/batch/fetch`` for 8 stored cells.

For each it reports the process CPU time per request (``time.process_time``,
every thread, profiler off) and, from a second pass under cProfile (main,
writer and reader threads, each timing its own thread's CPU, so that a
thread waiting on ``fsync`` or a lock counts nothing), how that time splits into phases. Each
function's own time goes to one phase by its module and name; a builtin
SQLite call is split by its caller (statements of a deposit are "storage";
BEGIN, SAVEPOINT, RELEASE and COMMIT, which carries the ``fsync``, are
"commit"). cProfile inflates Python-heavy phases against C ones, so the
shares are indicative; the CPU time per request is not profiled.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import hashlib
import json
import os
import pstats
import secrets
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CELL = 4096
CONCURRENCY = 16
BATCH = 8
TENANT = "bench-mission"
OPERATOR = "bench-operator-token"

#: The workloads, in the order they run (``fetch`` reads what ``deposit`` stored).
WORKLOADS = ("deposit", "fetch", "batch_deposit", "batch_fetch")

#: Phases in the order they are shown.
PHASES = (
    "HTTP parsing and writing",
    "routing and ASGI layers",
    "validation",
    "capability checks",
    "log append",
    "proof building",
    "head signing",
    "serialization",
    "storage (SQL)",
    "commit (fsync)",
    "metrics",
    "event loop and threads",
    "other",
)


# -- an in-memory transport for uvicorn's protocol ------------------------------------


class _Transport:
    """Enough of ``asyncio.Transport`` for uvicorn's HTTP protocol; collects answers."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) >= end + 4 + length:
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            waiter, self.waiter = self.waiter, None
            waiter.set_result((int(head[9:12]), body))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_protocol(self, protocol: Any) -> None: ...


class _Connection:
    """One keep-alive client connection into a uvicorn protocol instance."""

    def __init__(self, make_protocol: Callable[[], Any]) -> None:
        self.transport = _Transport()
        self.protocol = make_protocol()
        self.protocol.connection_made(self.transport)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.transport.waiter = waiter
        self.protocol.data_received(raw)
        return await waiter


# -- requests --------------------------------------------------------------------------


def _slot(seed: bytes, i: int) -> bytes:
    return hashlib.sha256(seed + i.to_bytes(8, "big")).digest()


def _http(method: str, path: str, body: bytes, content_type: str, auth: str = "") -> bytes:
    extra = f"Authorization: Bearer {auth}\r\n" if auth else ""
    if body or content_type:
        extra += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return f"{method} {path} HTTP/1.1\r\nHost: relay\r\n{extra}\r\n".encode() + body


class _Workloads:
    def __init__(self, credential: str) -> None:
        self.credential = credential
        self.seed = secrets.token_bytes(16)
        self.next = 0
        self.stored: list[bytes] = []

    def _fresh(self) -> bytes:
        self.next += 1
        slot = _slot(self.seed, self.next)
        self.stored.append(slot)
        return slot

    def deposit(self, i: int) -> bytes:
        slot = self._fresh()
        return _http(
            "PUT",
            f"/v1/tenants/{TENANT}/slots/{slot.hex()}",
            os.urandom(CELL),
            "application/octet-stream",
        )

    def fetch(self, i: int) -> bytes:
        slot = self.stored[i % len(self.stored)]
        return _http("GET", f"/v1/tenants/{TENANT}/slots/{slot.hex()}", b"", "", self.credential)

    def batch_deposit(self, i: int) -> bytes:
        from backchannel.protocol.batch import DepositBatch, DepositCell

        cells = tuple(DepositCell(TENANT, self._fresh(), os.urandom(CELL)) for _ in range(BATCH))
        body = DepositBatch(1, cells).encode()
        return _http("POST", "/v1/batch/deposit", body, "application/octet-stream")

    def batch_fetch(self, i: int) -> bytes:
        from backchannel.protocol.batch import FetchBatch

        start = (i * BATCH) % max(1, len(self.stored) - BATCH)
        slots = tuple(self.stored[start : start + BATCH])
        body = FetchBatch(1, 1, slots).encode()
        return _http(
            "POST",
            f"/v1/tenants/{TENANT}/batch/fetch",
            body,
            "application/octet-stream",
            self.credential,
        )


# -- the relay in process -----------------------------------------------------------------


class _ThreadProfiles:
    """cProfile in the store's writer and reader threads, switched on and off at will."""

    def __init__(self) -> None:
        self.on = False
        self.profiles: dict[int, cProfile.Profile] = {}
        self._lock = threading.Lock()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            if not self.on:
                return fn(*args)
            ident = threading.get_ident()
            with self._lock:
                prof = self.profiles.setdefault(ident, cProfile.Profile(time.thread_time))
            prof.enable()
            try:
                return fn(*args)
            finally:
                prof.disable()

        return run


async def _run(
    cells: int, label: str, only: tuple[str, ...] = WORKLOADS, phases: bool = True
) -> dict[str, Any]:
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from backchannel.relay.app import create_app
    from backchannel.relay.settings import RelaySettings
    from backchannel.store.sqlite import SQLiteRelayStore

    tmp = tempfile.TemporaryDirectory(prefix="profile-relay-")
    settings = RelaySettings(
        data_dir=Path(tmp.name),
        operator_token=OPERATOR,
        ip_rate=0,
        tenant_rate=0,
        default_quota_cells=10_000_000,
        expire_interval_seconds=3600,
    )
    store = SQLiteRelayStore(Path(tmp.name) / "relay.db", key_path=Path(tmp.name) / "relay-key")
    threads = _ThreadProfiles()
    # Instance attributes shadow the methods the store's threads call.
    store._commit_now = threads.wrap(store._commit_now)  # type: ignore[method-assign]
    store._commit_waiting = threads.wrap(store._commit_waiting)  # type: ignore[method-assign]
    store._run_read = threads.wrap(store._run_read)  # type: ignore[method-assign]
    app = create_app(settings, store)
    config = uvicorn.Config(app, lifespan="off", http="httptools", log_level="warning")
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()

    def make_protocol() -> Any:
        return HttpToolsProtocol(config, state, {}, loop)

    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    work = _Workloads(credential)
    results: dict[str, Any] = {"label": label, "cells": cells, "concurrency": CONCURRENCY}
    async with app.router.lifespan_context(app):
        conn = _Connection(make_protocol)
        body = json.dumps({"tenant_id": TENANT, "credential": credential}).encode()
        status, _ = await conn.request(
            _http("POST", "/v1/tenants", body, "application/json", OPERATOR)
        )
        assert status == 201, status
        plan: list[tuple[str, Callable[[int], bytes], int, set[int]]] = [
            ("deposit", work.deposit, cells, {201}),
            ("fetch", work.fetch, cells, {200}),
            ("batch_deposit", work.batch_deposit, max(1, cells // BATCH), {200}),
            ("batch_fetch", work.batch_fetch, max(1, cells // BATCH), {200}),
        ]
        for name, make, count, ok in plan:
            if name not in only:
                continue
            conns = [_Connection(make_protocol) for _ in range(CONCURRENCY)]
            warm = max(CONCURRENCY, count // 10)
            await _drive(conns, [make(i) for i in range(warm)], ok)
            timed = [make(i) for i in range(count)]  # built before the clock starts
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await _drive(conns, timed, ok)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            if not phases:  # under a sampling profiler (--flame): no cProfile pass
                results[name] = {
                    "requests": count,
                    "cpu_us_per_request": round(cpu / count * 1e6, 1),
                    "requests_per_s_wall": round(count / wall, 1),
                }
                continue
            main = cProfile.Profile(time.thread_time)
            threads.profiles.clear()
            threads.on = True
            profiled = [make(i) for i in range(count)]
            main.enable()
            await _drive(conns, profiled, ok)
            main.disable()
            threads.on = False
            per = BATCH if name.startswith("batch") else 1
            phases = _phases([main, *threads.profiles.values()])
            # What the in-memory client itself cost (answer parsing) is not the relay's.
            cpu *= 1 - phases[CLIENT] / 100
            results[name] = {
                "requests": count,
                "cells_per_request": per,
                "cpu_us_per_request": round(cpu / count * 1e6, 1),
                "cpu_us_per_cell": round(cpu / count / per * 1e6, 1),
                "requests_per_s_wall": round(count / wall, 1),
                "phases_pct": phases,
                "top": _top([main, *threads.profiles.values()]),
            }
    tmp.cleanup()
    return results


async def _drive(conns: list[_Connection], requests: list[bytes], ok: set[int]) -> None:
    todo = iter(requests)

    async def client(conn: _Connection) -> None:
        for raw in todo:
            status, answer = await conn.request(raw)
            if status not in ok:
                raise RuntimeError(f"unexpected status {status}: {answer[:120]!r}")

    jobs: list[Awaitable[None]] = [client(c) for c in conns]
    await asyncio.gather(*jobs)


# -- splitting a profile into phases ----------------------------------------------------

_BY_NAME = {
    # capability checks
    "authenticate": "capability checks",
    "authenticate_header": "capability checks",
    "tenant": "capability checks",
    "_tenant_status": "capability checks",
    "_limit_tenant": "capability checks",
    "bearer_token": "capability checks",
    "decode_credential": "capability checks",
    "take": "capability checks",
    "compare_digest": "capability checks",
    # validation
    "check_slot": "validation",
    "receive_body": "validation",
    "read_body": "validation",
    "check_tenant_id": "validation",
    "check_cell": "validation",
    "is_tenant_id": "validation",
    "fullmatch": "validation",
    "decode": "validation",
    # serialization
    "deposit_answer": "serialization",
    "encode": "serialization",
    "write": "serialization",
    "hex": "serialization",
    "dumps": "serialization",
    "render": "serialization",
    "init_headers": "serialization",
    # log
    "append_batch": "log append",
    "committed": "log append",
    "_begin_batch": "log append",
    "_append": "log append",
    "cell_entry": "log append",
    "cell_id_of": "log append",
    "leaf_hash": "log append",
    "batch_root": "log append",
    "cell_proofs": "proof building",
    "try_proof": "proof building",
    "receipt": "proof building",
    "log_receipt": "proof building",
    "compact_head": "proof building",
    "_deposit_bundle": "proof building",
    "_bundle": "proof building",
    "_cell_proofs": "proof building",
    "fetch_proved": "proof building",
    "sign_absence": "head signing",
    "sign": "head signing",
    "signed_for": "head signing",
    "compact_for": "head signing",
    "_sign_into": "head signing",
}

_BY_MODULE = (
    ("uvicorn/protocols", "HTTP parsing and writing"),
    ("httptools", "HTTP parsing and writing"),
    ("starlette/", "routing and ASGI layers"),
    ("backchannel/relay/app.py", "routing and ASGI layers"),
    ("backchannel/relay/slots.py", "routing and ASGI layers"),
    ("backchannel/relay/metrics.py", "metrics"),
    ("prometheus_client", "metrics"),
    ("backchannel/relay/ratelimit.py", "capability checks"),
    ("backchannel/protocol/merkle.py", "log append"),
    ("backchannel/store/_log.py", "log append"),
    ("backchannel/protocol/batch.py", "serialization"),
    ("backchannel/protocol/misbehaviour.py", "serialization"),
    ("backchannel/relay/requests.py", "validation"),
    ("backchannel/store/_common.py", "validation"),
    ("json/", "serialization"),
    ("asyncio/", "event loop and threads"),
    ("concurrent/", "event loop and threads"),
    ("threading.py", "event loop and threads"),
    ("queue.py", "event loop and threads"),
    ("backchannel/store/sqlite.py", "storage (SQL)"),
    ("backchannel/store/_sqlite_", "storage (SQL)"),
    ("backchannel/store/postgres.py", "storage (SQL)"),
)

CLIENT = "client side (not counted)"
_THREAD_BUILTINS = ("acquire", "release", "wait", "put", "get", "set_result", "call_soon")


_PROOF_FUNCS = {
    "inclusion_proof",
    "consistency_proof",
    "_split",
    "_tiles",
    "_fold",
    "_range_hash",
    "tree_root",
    "proof",
    "node",
    "plan_nodes",
    "inclusion_work",
    "consistency_work",
    "_nodes",
    "_members",
    "split_hashes",
    "prove_cells",
}
_APPEND_FUNCS = {"append", "append_hash", "frontier_of", "root"}


def _own_phase(key: tuple[str, int, str]) -> str:
    """The phase of a Python function's own time, by its module and name."""
    filename, _, func = key
    if filename.endswith("profile_relay.py"):
        return CLIENT
    if func.startswith("<"):  # a comprehension or lambda: its caller's phase
        return "other"
    if "backchannel/" in filename:
        if ("merkle.py" in filename or "_log.py" in filename) and func in _PROOF_FUNCS:
            return "proof building"
        if "merkle.py" in filename and func in _APPEND_FUNCS:
            return "log append"
        if func in _BY_NAME:
            return _BY_NAME[func]
    for part, phase in _BY_MODULE:
        if part in filename:
            return phase
    return "other"


#: The writer's functions whose SQLite calls are the transaction's own (BEGIN,
#: SAVEPOINT, RELEASE, COMMIT), not a deposit's statements.
_TRANSACTION_STEPS = ("_begin", "_stage", "_commit_now", "_commit_waiting")


def _phase(
    key: tuple[str, int, str], stats: dict[Any, Any], depth: int = 0
) -> list[tuple[str, float]]:
    """(phase, weight) shares of a function's own time; builtins follow their callers."""
    filename, _, func = key
    callers = stats[key][4] if key in stats else {}
    if filename != "~":
        phase = _own_phase(key)
        if phase != "other" or depth > 2:
            return [(phase, 1.0)]
    if "sqlite3" in func:
        if "commit" in func:
            return [("commit (fsync)", 1.0)]
        return [
            ("commit (fsync)" if c[2] in _TRANSACTION_STEPS else "storage (SQL)", s[2])
            for c, s in callers.items()
        ] or [("storage (SQL)", 1.0)]
    if "posix.urandom" in func:
        return [(CLIENT, 1.0)]
    if "sign" in func and ("ed25519" in func or "mldsa" in func.lower()):
        return [("head signing", 1.0)]
    if "uvloop" in func or "select" in func or "poll" in func:
        return [("event loop and threads", 1.0)]
    if any(f"'{b}'" in func for b in _THREAD_BUILTINS) and "lock" in func:
        return [("event loop and threads", 1.0)]
    if depth > 2 or not callers:
        return [("other", 1.0)]
    out: list[tuple[str, float]] = []
    for caller, stat in callers.items():
        for phase, weight in _phase(caller, stats, depth + 1):
            out.append((phase, weight * float(stat[2] or 1e-9)))
    return out


def _phases(profiles: list[cProfile.Profile]) -> dict[str, float]:
    """Per cent of the relay's profiled CPU time in each phase (client side apart)."""
    totals = dict.fromkeys((*PHASES, CLIENT), 0.0)
    for prof in profiles:
        stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        for key, (_, _, tottime, _, _) in stats.items():
            shares = _phase(key, stats)
            weight = sum(t for _, t in shares) or 1.0
            for name, t in shares:
                totals[name] += tottime * t / weight
    client = totals.pop(CLIENT)
    whole = sum(totals.values()) or 1.0
    out = {k: round(100 * v / whole, 1) for k, v in totals.items()}
    out[CLIENT] = round(100 * client / (whole + client), 1)
    return out


def _top(profiles: list[cProfile.Profile], n: int = 25) -> list[tuple[str, str, float]]:
    """The ``n`` functions with the most own CPU time: (function, phase, % of all)."""
    rows: dict[str, tuple[str, float]] = {}
    whole = 0.0
    for prof in profiles:
        stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        for key, (_, _, tottime, _, _) in stats.items():
            shares = _phase(key, stats)
            name = f"{Path(key[0]).name}:{key[2]}" if key[0] != "~" else key[2]
            label = "/".join(sorted({p for p, _ in shares}))
            old = rows.get(name, (label, 0.0))
            rows[name] = (label, old[1] + tottime)
            whole += tottime
    best = sorted(rows.items(), key=lambda kv: -kv[1][1])[:n]
    return [(name, label, round(100 * t / (whole or 1.0), 1)) for name, (label, t) in best]


# -- output -------------------------------------------------------------------------------


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Stacked bars: CPU µs per request, split by phase, one bar per workload and run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars: list[tuple[str, dict[str, float], float]] = []
    for run in runs:
        for name in WORKLOADS:
            if name not in run:  # runs recorded before that workload existed
                continue
            fig = run[name]
            label = f"{run['label']}\n{name}"
            if fig["cells_per_request"] > 1:
                label += f" ({fig['cells_per_request']} cells)"
            bars.append((label, fig["phases_pct"], fig["cpu_us_per_request"]))
    fig_, ax = plt.subplots(figsize=(11, 0.55 * len(bars) + 1.8))
    colours = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]
    for row, (_, phases, total) in enumerate(bars):
        left = 0.0
        for i, phase in enumerate(PHASES):
            width = total * phases.get(phase, 0.0) / 100
            ax.barh(
                row,
                width,
                left=left,
                color=colours[i % len(colours)],
                label=phase if row == 0 else None,
            )
            left += width
        ax.text(left + 3, row, f"{total:.0f} µs", va="center", fontsize=8)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("process CPU µs per request (all threads), split by the cProfile shares")
    ax.set_title("Relay CPU per request by phase (SQLite, log on, 16 connections, in process)")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig_.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig_.savefig(path, dpi=110)
    plt.close(fig_)


def flame(workloads: tuple[str, ...], cells: int, out_dir: Path, rate: int = 1000) -> list[Path]:
    """One flame graph (SVG) per workload, sampled by py-spy from a run without cProfile.

    cProfile adds its own cost to every Python call and keeps no stacks; py-spy
    samples the process from outside, every thread, with whole stacks. Each
    workload runs in its own process, so that its graph holds nothing else but
    the store's set-up and the requests built before the clock starts.
    """
    import shutil
    import subprocess
    import sys

    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed (pip install -r requirements-bench.lock)")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in workloads:
        path = out_dir / f"relay_flame_{name}.svg"
        cmd = [spy, "record", "--threads", "--rate", str(rate), "--output", str(path),
               "--", sys.executable, "-m", "bench.profile_relay", "--only", name,
               "--cells", str(cells), "--no-phases"]  # fmt: skip
        path.unlink(missing_ok=True)
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        # py-spy may exit non-zero after writing the graph (it lost a race to reap the
        # child it started): the graph on disk is what tells.
        if not path.exists() or path.stat().st_size == 0:
            raise SystemExit(f"py-spy wrote no flame graph for {name}:\n{done.stderr}")
        paths.append(path)
    return paths


def _table(result: dict[str, Any], verbose: bool = False) -> str:
    lines = []
    for name in WORKLOADS:
        if name not in result:
            continue
        fig = result[name]
        if "phases_pct" not in fig:
            lines.append(f"{name}: {fig['cpu_us_per_request']} µs CPU per request")
            continue
        lines.append(
            f"{name}: {fig['cpu_us_per_request']} µs CPU per request, "
            f"{fig['cpu_us_per_cell']} µs per cell, {fig['requests_per_s_wall']} requests/s"
        )
        for phase, pct in fig["phases_pct"].items():
            if pct and phase != CLIENT:
                lines.append(f"    {phase:<26}{pct:>6.1f} %")
        if verbose:
            lines.append("  top functions (own CPU time):")
            for func, phase, pct in fig["top"]:
                lines.append(f"    {pct:>5.1f} %  {func[:70]:<70} {phase}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cells", type=int, default=4000, help="deposits per pass")
    parser.add_argument("--label", default="now", help="name of this run in the JSON and plot")
    parser.add_argument("--json", type=Path, help="add this run to a JSON file of runs")
    parser.add_argument("--plot", type=Path, help="draw every run in --json (or this one)")
    parser.add_argument("--top", action="store_true", help="list the costliest functions")
    parser.add_argument(
        "--only",
        choices=("deposit", "batch_deposit"),
        action="append",
        help="run only this deposit workload (repeatable)",
    )
    parser.add_argument(
        "--no-phases", action="store_true", help="skip the cProfile pass (CPU time only)"
    )
    parser.add_argument(
        "--flame",
        type=Path,
        metavar="DIR",
        help="write a py-spy flame graph per deposit workload into DIR (relay_flame_*.svg)",
    )
    args = parser.parse_args()
    if args.flame:
        for path in flame(tuple(args.only or ("deposit", "batch_deposit")), args.cells, args.flame):
            print(f"flame graph: {path}")
        return
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    only = tuple(args.only) if args.only else WORKLOADS
    result = asyncio.run(_run(args.cells, args.label, only, not args.no_phases))
    print(_table(result, args.top))
    runs = [result]
    if args.only or args.no_phases:
        return  # a partial run: not one to keep beside the others
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.exists() else []
        runs = [r for r in old if r["label"] != args.label] + [result]
        args.json.write_text(json.dumps(runs, indent=1) + "\n")
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
