"""The public intake under a flood, and a browser submission from page to stored cell.

``python -m bench.intake [--quick] [--channels 20000] [--seconds 20] [--browser-runs 10]``

**Flood.** One relay process (SQLite) serves official traffic: ``channels``
channels at a 60 s round, deposits and fetches as open-loop Poisson arrivals
(the load generator of :mod:`bench.capacity`, so latency counts from when a
request was due). Phases alternate, the same length each: *idle* (official
traffic only) and *flood* (the same, while another process posts intake
requests to 16 missions as fast as 64 connections allow, each with a valid
proof of work, from one address the relay does not limit: an attacker with
many addresses and the compute to spare). The relay meets the flood with its
intake limits (the relay-wide ``intake_rate``, 50 a second by default). The
result: official deposit p99 in flood phases over idle phases (the goal is at
most 1.5x), official errors (the goal is none), intake requests stored and
refused.

**Browser.** The intake page in Debian's Chromium (Playwright), against a
relay with the default proof of work (14 bits): from ``page.goto`` to the page
showing the reply code, that is loading the page and its 73 KB of HPKE code,
sealing, the proof of work and the relay storing the cell. The goal is under
one second. Skipped, and said so, without Chromium.

Every part shares this 2-core machine; the flood generator's own CPU counts
against the relay too, which makes the ratio a bound from above.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from backchannel.relay.settings import RelaySettings
from bench.capacity import PREFILL, _cpu_seconds, _prefill
from bench.relay import HOST, REPO, _env, _free_port, _read_response, _register, _server
from bench.relay import relay_command as _relay_command

POW_BITS = RelaySettings().intake_pow_bits

RESULTS = REPO / "bench" / "results" / "intake.json"
FLOOD_TENANTS = 16
FLOOD_CONNECTIONS = 64
#: Proof of work for the flood (the relay asks for it too): cheap, so the flood is
#: limited by the relay, not by the attacker's hashing (he has more machines).
FLOOD_BITS = 8
#: The relay's intake rate (its default), and so the flood's rate.
INTAKE_RATE = 50.0
OPERATOR_ENV = "BACKCHANNEL_RELAY_"


def _post(port: int, path: str, body: dict[str, Any], token: str | None = None) -> int:
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("POST", path, json.dumps(body), headers)
    status = conn.getresponse().status
    conn.close()
    return status


def _flood_tenants(port: int) -> list[str]:
    """Missions with their intake open (the flood's targets)."""
    from bench.relay import OPERATOR

    names = []
    for i in range(FLOOD_TENANTS):
        name, cred = f"flooded-{i:02d}", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        made = _post(port, "/v1/tenants", {"tenant_id": name, "credential": cred}, OPERATOR)
        opened = _post(port, f"/v1/tenants/{name}/intake/fetch", {"after": 0, "open": True}, cred)
        if (made, opened) != (201, 200):
            raise RuntimeError(f"could not open the intake of {name}: {made} {opened}")
        names.append(name)
    return names


def _flood_bodies(tenants: list[str], count: int) -> list[bytes]:
    """HTTP requests with a valid proof for the current bucket (made before the phase)."""
    from backchannel.protocol import intake as pi

    bucket = int(time.time()) // 600
    out = []
    for i in range(count):
        tenant = tenants[i % len(tenants)]
        cell = os.urandom(pi.REQUEST_CELL_SIZE)
        nonce = pi.solve_pow(pi.pow_prefix(tenant, bucket, cell), FLOOD_BITS)
        body = json.dumps(
            {"cell": base64.b64encode(cell).decode(), "bucket": bucket, "nonce": nonce}
        ).encode()
        out.append(
            f"POST /v1/intake/{tenant}/requests HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return out


async def _flood(spec: dict[str, Any]) -> dict[str, Any]:
    """Post the prepared requests at ``rate`` a second (open loop) for ``seconds``."""
    bodies = [base64.b64decode(b) for b in spec["bodies"]]
    rate, seconds = spec["rate"], spec["seconds"]
    statuses: dict[str, int] = {}
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    sent = 0

    async def one(i: int) -> None:
        reader, writer = idle.pop() if idle else await asyncio.open_connection(HOST, spec["port"])
        writer.write(bodies[i % len(bodies)])
        try:
            status, close, _ = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError):
            statuses["io"] = statuses.get("io", 0) + 1
            writer.close()
            return
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if close:
            writer.close()
        else:
            idle.append((reader, writer))

    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    due = start
    while due < start + seconds:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) < FLOOD_CONNECTIONS:  # beyond that, the flood is as fast as it gets
            task = asyncio.create_task(one(sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        due += 1.0 / rate
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    elapsed = time.perf_counter() - start
    return {"sent": sent, "seconds": elapsed, "per_s": sent / elapsed, "statuses": statuses}


def _official(port: int, credential: str, fill: bytes, channels: int, seconds: float) -> Any:
    spec = {
        "port": port,
        "rate": channels / 60.0,
        "seconds": seconds,
        "seed": secrets.token_hex(16),
        "fill_seed": fill.hex(),
        "credential": credential,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bench.capacity", "--offer", json.dumps(spec)],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(proc: Any, what: str, given: str | None = None) -> dict[str, Any]:
    out, err = proc.communicate(given, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {err[-800:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def flood(channels: int, seconds: float, pairs: int, bodies_n: int = 4000) -> dict[str, Any]:
    """Alternate idle and flood phases; official latency in each, and what the flood got."""
    phases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="intake-bench-") as tmp:
        port = _free_port()
        credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        os.environ[OPERATOR_ENV + "INTAKE_IP_RATE"] = "0"  # the flooder has many addresses
        os.environ[OPERATOR_ENV + "INTAKE_POW_BITS"] = str(FLOOD_BITS)
        os.environ[OPERATOR_ENV + "INTAKE_RATE"] = str(INTAKE_RATE)
        cmd = _relay_command(f"sqlite:///{Path(tmp) / 'relay.db'}", port)
        with _server(cmd, port, "/readyz") as proc:
            _register(port, credential)
            fill = secrets.token_bytes(16)
            _prefill(port, fill)
            tenants = _flood_tenants(port)
            bodies = _flood_bodies(tenants, bodies_n)
            plan = []
            for _ in range(pairs):
                plan += [("idle", 0.0), ("flood", INTAKE_RATE), ("idle", 0.0),
                         ("over", 10 * INTAKE_RATE)]  # fmt: skip
            for kind, rate in plan:
                cpu0 = _cpu_seconds(proc.pid)
                official = _official(port, credential, fill, channels, seconds)
                flooded = None
                if rate:
                    spec = {"port": port, "seconds": seconds, "rate": rate,
                            "bodies": [base64.b64encode(b).decode() for b in bodies]}  # fmt: skip
                    flooder = subprocess.Popen(
                        [sys.executable, "-m", "bench.intake", "--flood-worker"],
                        cwd=REPO, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True,
                    )  # fmt: skip
                    flooded = _finish(flooder, "the flood", json.dumps(spec))
                phase = {"phase": kind, "official": _finish(official, "the official load")}
                phase["relay_cpu_s"] = round(_cpu_seconds(proc.pid) - cpu0, 2)
                if flooded is not None:
                    phase["flood"] = flooded
                phases.append(phase)
                print(json.dumps(phase), flush=True)

    def p99(kind: str) -> float:
        return statistics.median(
            p["official"]["deposit_p99_ms"] for p in phases if p["phase"] == kind
        )

    def accepted_per_s(kind: str) -> float:
        """Requests the relay took (stored, or the same cell again: the flood's cells repeat)."""
        runs = [p for p in phases if p["phase"] == kind]
        took = sum(p["flood"]["statuses"].get(c, 0) for p in runs for c in ("200", "201"))
        return took / sum(p["flood"]["seconds"] for p in runs)

    return {
        "channels": channels,
        "phase_seconds": seconds,
        "intake_rate": INTAKE_RATE,
        "phases": phases,
        "idle_deposit_p99_ms": p99("idle"),
        "flood_deposit_p99_ms": p99("flood"),
        "over_deposit_p99_ms": p99("over"),
        "p99_ratio": p99("flood") / p99("idle"),
        "over_p99_ratio": p99("over") / p99("idle"),
        "official_errors": sum(sum(p["official"]["errors"].values()) for p in phases),
        "intake_accepted_per_s": accepted_per_s("flood"),
        "over_accepted_per_s": accepted_per_s("over"),
        "prefill": PREFILL,
    }


def browser(runs: int) -> dict[str, Any]:
    """Page load to stored cell, in Chromium, at the default proof of work."""
    from tests.ui.conftest import chromium

    path = chromium()
    if path is None:
        return {"skipped": "no Chromium at /usr/bin/chromium (apt-get install chromium)"}
    from playwright.sync_api import sync_playwright

    from backchannel.protocol import intake as pi

    os.environ.pop(OPERATOR_ENV + "INTAKE_POW_BITS", None)  # the relay's default
    with tempfile.TemporaryDirectory(prefix="intake-page-") as tmp:
        port = _free_port()
        credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        os.environ[OPERATOR_ENV + "INTAKE_IP_RATE"] = "0"
        cmd = _relay_command(f"sqlite:///{Path(tmp) / 'relay.db'}", port)
        with _server(cmd, port, "/readyz"):
            _register(port, credential)
            from bench.relay import TENANT

            _post(port, f"/v1/tenants/{TENANT}/intake/fetch", {"after": 0, "open": True},
                  credential)  # fmt: skip
            key = pi.intake_private_key(secrets.token_bytes(32), secrets.token_bytes(32))
            card = pi.IntakeCard("Bench", bytes(32), f"http://{HOST}:{port}", TENANT,
                                 key.public_key, POW_BITS)  # fmt: skip
            times: list[float] = []
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=path, headless=True,
                                      args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
                for i in range(runs + 1):
                    page = b.new_page()
                    started = time.perf_counter()
                    page.goto(card.page_url())
                    page.wait_for_selector("body[data-ready='1']")
                    page.fill("#subject", "Interview")
                    page.fill("#body", f"Ten minutes, run {i}?")
                    page.click("#send")
                    page.wait_for_selector("#sent:not([hidden])", timeout=60_000)
                    if i:  # the first run warms the browser's caches and is left out
                        times.append(time.perf_counter() - started)
                    page.close()
                b.close()
    times.sort()
    return {
        "runs": runs,
        "pow_bits": POW_BITS,
        "median_s": statistics.median(times),
        "p90_s": times[int(0.9 * (len(times) - 1))],
        "max_s": times[-1],
        "under_one_second": sum(t < 1.0 for t in times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short phases, few browser runs")
    parser.add_argument("--channels", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pairs", type=int, default=3, help="idle and flood phases, each")
    parser.add_argument("--browser-runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--flood-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_worker:
        print(json.dumps(asyncio.run(_flood(json.loads(sys.stdin.read())))))
        return
    if args.quick:
        args.seconds, args.pairs, args.browser_runs = 5.0, 1, 3
    random.seed()
    result = {
        "flood": flood(args.channels, args.seconds, args.pairs),
        "browser": browser(args.browser_runs),
        "command": "python -m bench.intake" + (" --quick" if args.quick else ""),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result["flood"].items() if k != "phases"}, indent=2))
    print(json.dumps(result["browser"], indent=2))


if __name__ == "__main__":
    main()
