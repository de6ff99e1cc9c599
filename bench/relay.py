"""Relay throughput: durable deposits and fetches over HTTP, beside a bare endpoint.

``python -m bench.relay [--quick]`` prints a table; ``run(quick)`` returns the
figures for the harness. Everything runs on 127.0.0.1:

* the relay as a uvicorn process (``python -m backchannel.relay serve``) on
  embedded SQLite, then on PostgreSQL when one answers at 127.0.0.1:5432/test
  (a fresh schema, dropped afterwards);
* batch deposits (``POST /v1/batch/deposit``, 8 fresh cells each), counted
  as cells the answer says are stored;
* on PostgreSQL, ``relay serve --workers N`` for N = 1, 2, 4 (one port,
  SO_REUSEPORT), deposits and batch deposits at concurrency 64: throughput
  and p99 per N, and where the single deposits' time went
  (:mod:`bench.machine_profile`: busy cores, the relay's and PostgreSQL's
  CPU, PostgreSQL's sessions running or waiting and on what);
  ``--workers-only`` runs just this part;
* :mod:`bench.bare_app` on the same uvicorn stack (uvloop + httptools): it
  reads a 4 KiB body and answers, nothing more. It is the ceiling.

Load comes from a separate process (this module with ``--loadgen``): a
closed-loop HTTP/1.1 client on raw asyncio streams with keep-alive
connections, one per unit of concurrency. A Python HTTP library would be the
bottleneck here (httpx tops out near the relay's own rate), so the client
writes request bytes itself and parses only the status line and
Content-Length. Each phase is bounded by an operation count and a time limit.

A deposit is counted only when the relay answered 201, i.e. after the store
reported the cell durable (SQLite WAL with ``synchronous=FULL`` group commit;
PostgreSQL commit).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from bench.machine_profile import profiled

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PG_BASE = "postgresql://127.0.0.1:5432/test"
OPERATOR = "bench-operator-token"
TENANT = "bench-mission"
CELL = 4096
CONCURRENCY = (16, 64)
#: Cells per batch deposit (a device writing to a few channels in one round).
BATCH_CELLS = 8
#: (operations per phase, seconds per phase)
BOUNDS = {True: (4000, 6.0), False: (30000, 20.0)}


# -- load generator (runs in its own process) ----------------------------------------


def _slot(seed: bytes, i: int) -> str:
    return hashlib.sha256(seed + i.to_bytes(8, "big")).hexdigest()


def _request_maker(kind: str, seed: bytes, credential: str, span: int) -> Callable[[int], bytes]:
    host = f"Host: {HOST}\r\n"
    if kind == "bare":
        head = (
            f"PUT /deposit HTTP/1.1\r\n{host}Content-Type: application/octet-stream\r\n"
            f"Content-Length: {CELL}\r\n\r\n"
        ).encode()
        return lambda i: head + os.urandom(CELL)
    if kind == "deposit":

        def deposit(i: int) -> bytes:
            return (
                f"PUT /v1/tenants/{TENANT}/slots/{_slot(seed, i)} HTTP/1.1\r\n{host}"
                f"Content-Type: application/octet-stream\r\nContent-Length: {CELL}\r\n\r\n"
            ).encode() + os.urandom(CELL)

        return deposit
    if kind == "fetch":
        auth = f"Authorization: Bearer {credential}\r\n"

        def fetch(i: int) -> bytes:
            slot = _slot(seed, i % span)
            return f"GET /v1/tenants/{TENANT}/slots/{slot} HTTP/1.1\r\n{host}{auth}\r\n".encode()

        return fetch
    if kind == "batch":
        from backchannel.protocol.batch import DepositBatch, DepositCell

        def batch(i: int) -> bytes:
            cells = tuple(
                DepositCell(
                    TENANT, bytes.fromhex(_slot(seed, i * BATCH_CELLS + k)), os.urandom(CELL)
                )
                for k in range(BATCH_CELLS)
            )
            body = DepositBatch(1, cells).encode()
            return (
                f"POST /v1/batch/deposit HTTP/1.1\r\n{host}"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body

        return batch
    raise ValueError(kind)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    body = await reader.readexactly(length) if length else b""
    return status, close, body


def _stored_cells(body: bytes) -> int:
    """Cells a batch deposit's answer says are durably stored (201 or 200)."""
    from backchannel.protocol.batch import DepositBatchAnswer

    return sum(1 for r in DepositBatchAnswer.decode(body).results if r.status in (200, 201))


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    make = _request_maker(
        spec["kind"], bytes.fromhex(spec["seed"]), spec["credential"], spec.get("span", 1)
    )
    ok_status = set(spec["ok"])
    max_ops, max_s = spec["max_ops"], spec["max_seconds"]
    start_index = spec.get("start", 0)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    cells = 0
    batch = spec["kind"] == "batch"
    deadline = time.perf_counter() + max_s

    async def worker() -> None:
        nonlocal issued, cells
        reader, writer = await asyncio.open_connection(HOST, spec["port"])
        try:
            while issued < max_ops and time.perf_counter() < deadline:
                i = start_index + issued
                issued += 1
                request = make(i)
                t0 = time.perf_counter()
                writer.write(request)
                status, close, body = await _read_response(reader)
                if status in ok_status:
                    latencies.append(time.perf_counter() - t0)
                    cells += _stored_cells(body) if batch else 1
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, spec["port"])
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "ops": len(latencies),
        "issued": issued,
        "errors": errors,
        "seconds": elapsed,
        "per_s": len(latencies) / elapsed if elapsed else math.nan,
        "cells_per_s": cells / elapsed if elapsed else math.nan,
        "p50_ms": _pct(latencies, 50) * 1000,
        "p99_ms": _pct(latencies, 99) * 1000,
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    return values[min(len(values) - 1, round((len(values) - 1) * q / 100))]


def _loadgen_main(spec_json: str) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_load(json.loads(spec_json)))))


def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.relay", "--loadgen", json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=spec["max_seconds"] + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- servers ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env.update(
        {
            "BACKCHANNEL_RELAY_OPERATOR_TOKEN": OPERATOR,
            "BACKCHANNEL_RELAY_IP_RATE": "0",
            "BACKCHANNEL_RELAY_TENANT_RATE": "0",
            "BACKCHANNEL_RELAY_DEFAULT_QUOTA_CELLS": "1000000",
            "BACKCHANNEL_RELAY_LOG_LEVEL": "warning",
            # Closed-loop clients measure the store at full speed: each commit
            # at once, whatever the environment says (bench.capacity paces).
            "BACKCHANNEL_RELAY_LOG_INTERVAL_MS": "0",
        }
    )
    return env


@contextmanager
def _server(
    cmd: list[str], port: int, ready_path: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The server of ``cmd``, ready; ``env``: settings over :func:`_env`'s."""
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**_env(), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"server exited: {err.strip()[-300:]}")
            try:
                with socket.create_connection((HOST, port), timeout=1) as s:
                    s.sendall(f"GET {ready_path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if proc.stderr:
            proc.stderr.close()


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _register(port: int, credential: str) -> None:
    body = json.dumps({"tenant_id": TENANT, "credential": credential}).encode()
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(
            b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {OPERATOR}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer = s.recv(256)
    if not answer.startswith(b"HTTP/1.1 201"):
        raise RuntimeError(f"tenant registration failed: {answer[:80]!r}")


def relay_command(db_url: str, port: int, *extra: str) -> list[str]:
    """The command line of a relay subprocess on ``HOST:port`` over ``db_url``."""
    return [
        sys.executable,
        "-m",
        "backchannel.relay",
        "serve",
        "--db",
        db_url,
        "--host",
        HOST,
        "--port",
        str(port),
        *extra,
    ]


Profile = Callable[[], AbstractContextManager[dict[str, Any]]]


def _phases(
    common: dict[str, Any], max_ops: int, *, fetch: bool, around: Profile | None = None
) -> dict[str, Any]:
    """A warm-up, then single deposits, fetches of them (``fetch``), batch deposits;
    ``around``: a profile of the single deposits (bench/machine_profile.py)."""
    # A short warm-up, not counted (distinct slots: start far above).
    _drive({**common, "kind": "deposit", "ok": [201], "max_ops": 500, "start": 10**9})
    with around() if around is not None else contextlib.nullcontext({}) as profile:
        dep = _drive({**common, "kind": "deposit", "ok": [201]})
    got = (
        _drive({**common, "kind": "fetch", "ok": [200], "span": max(1, dep["ops"])})
        if fetch
        else None
    )
    # Batch deposits: fresh slots far from the single deposits' ones.
    bat = _drive(
        {
            **common,
            "kind": "batch",
            "ok": [200],
            "start": 2 * 10**9,
            "max_ops": max(1, max_ops // BATCH_CELLS),
        }
    )
    figures: dict[str, Any] = {
        "deposits_per_s": round(dep["per_s"], 1),
        "deposit_p50_ms": round(dep["p50_ms"], 2),
        "deposit_p99_ms": round(dep["p99_ms"], 2),
        "deposits": dep["ops"],
        "batch_cells_per_s": round(bat["cells_per_s"], 1),
        "batch_p50_ms": round(bat["p50_ms"], 2),
        "batch_p99_ms": round(bat["p99_ms"], 2),
        "batch_requests": bat["ops"],
        "errors": {**dep["errors"], **{f"batch_{k}": v for k, v in bat["errors"].items()}},
    }
    if around is not None:
        figures["deposit_profile"] = profile
    if got is not None:
        figures.update(
            {
                "fetches_per_s": round(got["per_s"], 1),
                "fetch_p50_ms": round(got["p50_ms"], 2),
                "fetch_p99_ms": round(got["p99_ms"], 2),
                "fetches": got["ops"],
            }
        )
        figures["errors"].update({f"fetch_{k}": v for k, v in got["errors"].items()})
    return figures


def _bench_relay(db_url: str, quick: bool) -> dict[str, Any]:
    max_ops, max_s = BOUNDS[quick]
    port = _free_port()
    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    cmd = relay_command(db_url, port)
    out: dict[str, Any] = {}
    with _server(cmd, port, "/readyz") as proc:
        _register(port, credential)
        for c in CONCURRENCY:
            seed = secrets.token_hex(16)
            common = {
                "port": port,
                "concurrency": c,
                "seed": seed,
                "credential": credential,
                "max_ops": max_ops,
                "max_seconds": max_s,
            }
            out[f"c{c}"] = _phases(common, max_ops, fetch=True)
        out["rss_mb"] = _rss_mb(proc.pid)
    return out


WORKERS = (1, 2, 4)
WORKERS_CONCURRENCY = 64


def _bench_workers(db_url: str, quick: bool) -> dict[str, Any]:
    """Deposits and batch deposits at one concurrency, for each worker count."""
    max_ops, max_s = BOUNDS[quick]
    out: dict[str, Any] = {}
    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    for n in WORKERS:
        port = _free_port()
        cmd = relay_command(db_url, port, "--workers", str(n))
        with _server(cmd, port, "/readyz") as proc:
            # /readyz answered means one worker is up; give the others time to start.
            time.sleep(1.0 + 0.5 * n)
            if n == WORKERS[0]:
                _register(port, credential)
            common = {
                "port": port,
                "concurrency": WORKERS_CONCURRENCY,
                "seed": secrets.token_hex(16),
                "credential": credential,
                "max_ops": max_ops,
                "max_seconds": max_s,
            }
            around = functools.partial(profiled, proc.pid, db_url)
            out[f"w{n}"] = _phases(common, max_ops, fetch=False, around=around)
    base = out[f"w{WORKERS[0]}"]["deposits_per_s"]
    for n in WORKERS[1:]:
        out[f"ratio_w{n}_vs_w1"] = round(out[f"w{n}"]["deposits_per_s"] / base, 3) if base else None
    return out


def _bench_bare(quick: bool) -> dict[str, Any]:
    max_ops, max_s = BOUNDS[quick]
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_app:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--loop",
        "auto",
        "--http",
        "auto",
    ]
    out: dict[str, Any] = {}
    with _bare_server(cmd, port):
        for c in CONCURRENCY:
            spec = {
                "port": port,
                "concurrency": c,
                "seed": "00",
                "credential": "",
                "max_ops": max_ops,
                "max_seconds": max_s,
                "kind": "bare",
                "ok": [201],
            }
            _drive({**spec, "max_ops": 500})
            r = _drive(spec)
            out[f"c{c}"] = {
                "requests_per_s": round(r["per_s"], 1),
                "p50_ms": round(r["p50_ms"], 2),
                "p99_ms": round(r["p99_ms"], 2),
            }
    return out


@contextmanager
def _bare_server(cmd: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not _port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bare endpoint did not start")
            time.sleep(0.1)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _postgres_skip_reason() -> str | None:
    from backchannel.store.pg_scratch import unreachable_reason

    return unreachable_reason(PG_BASE)


def _pg_schema() -> AbstractContextManager[str]:
    from backchannel.store.pg_scratch import scratch_schema

    return scratch_schema(PG_BASE, "bench_relay_")


def run(quick: bool) -> dict[str, Any]:
    """Figures for the harness; see the module docstring for what is measured."""
    result: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_generator": "raw asyncio HTTP/1.1, keep-alive, separate process",
        "bare": _bench_bare(quick),
    }
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        result["sqlite"] = _bench_relay(f"sqlite://{Path(tmp) / 'relay.db'}", quick)
    reason = _postgres_skip_reason()
    if reason:
        result["postgres"] = {"skipped": reason}
    else:
        with _pg_schema() as url:
            result["postgres"] = _bench_relay(url, quick)
        with _pg_schema() as url:
            result["postgres_workers"] = _bench_workers(url, quick)
    for backend in ("sqlite", "postgres"):
        for c in CONCURRENCY:
            fig = result[backend].get(f"c{c}")
            bare = result["bare"][f"c{c}"]["requests_per_s"]
            result[f"ratio_{backend}_vs_bare_c{c}"] = (
                round(fig["deposits_per_s"] / bare, 3) if fig and bare else None
            )
    return result


def _table(result: dict[str, Any]) -> str:
    rows = [
        f"{'target':<10}{'conc':>5}{'dep/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'fetch/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'batch cells/s':>15}"
    ]
    for c in CONCURRENCY:
        b = result["bare"][f"c{c}"]
        rows.append(
            f"{'bare':<10}{c:>5}{b['requests_per_s']:>10.0f}{b['p50_ms']:>9.2f}"
            f"{b['p99_ms']:>9.2f}{'':>10}{'':>9}{'':>9}"
        )
        for backend in ("sqlite", "postgres"):
            f = result[backend].get(f"c{c}")
            if f is None:
                rows.append(f"{backend:<10}{c:>5}  skipped: {result[backend].get('skipped')}")
                continue
            rows.append(
                f"{backend:<10}{c:>5}{f['deposits_per_s']:>10.0f}{f['deposit_p50_ms']:>9.2f}"
                f"{f['deposit_p99_ms']:>9.2f}{f['fetches_per_s']:>10.0f}"
                f"{f['fetch_p50_ms']:>9.2f}{f['fetch_p99_ms']:>9.2f}"
                f"{f['batch_cells_per_s']:>15.0f}"
            )
    for key, value in result.items():
        if key.startswith("ratio_"):
            rows.append(f"{key}: {value}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    parser.add_argument(
        "--workers-only", action="store_true", help="only relay serve --workers N on PostgreSQL"
    )
    args = parser.parse_args()
    if args.loadgen:
        _loadgen_main(args.loadgen)
        return
    if args.workers_only:
        reason = _postgres_skip_reason()
        if reason:
            raise SystemExit(f"skipped: {reason}")
        with _pg_schema() as url:
            print(json.dumps(_bench_workers(url, args.quick), indent=2))
        return
    result = run(args.quick)
    print(json.dumps(result, indent=2) if args.json else _table(result))


if __name__ == "__main__":
    main()
