"""Soak: an hour of rounds for 1,000 channels against one relay, memory and latency watched.

``python -m bench.soak [--seconds 3600] [--channels 1000] [--devices 250]
[--round 2.0] [--sample 60] [--db URL] [--csv FILE] [--plot FILE]`` (``make soak``).

A real relay process (SQLite in a temporary directory unless ``--db`` names
one) serves ``devices`` simulated devices, each a tenant holding ``channels /
devices`` channels, which behave as the round engine does on the wire: once a
round, at a fixed offset of their own within it, a device deposits one cell per
channel in one batch deposit (``POST /v1/batch/deposit``), then half a round
later fetches the cells its channels deposited the round before in one batch
fetch, checks every byte (cells are derived from the channel and the round, so
a wrong or missing cell is counted as an error), and acknowledges them so the
store holds about one round of cells. Every minute (``--sample``) the run records the relay's
resident memory, the database's size on disk, and the p50 and p99 latency of
each kind of request in that minute.

At the end it prints the table and a verdict against fixed bounds, stated
before the run: resident memory at the end within 10 % of minute 10's, and
p99 latency over the last ten minutes within 1.5x that of minutes 5 to 15
(each kind). The log grows by design (append-only, one leaf per committed
batch) and acknowledged slots stay listed as spent until the retention
(an hour at least), so within a run of an hour the database keeps a row for
every slot it saw and its size is reported, not bounded. The cells' own
bytes do not pile up: their space is reused (with SQLite, given back at each
expiry round), and past the retention the size levels off (docs/storage.md,
"Space").
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backchannel.client.relay_client import RelayClient, new_credential
from bench.relay import OPERATOR, _free_port, _pct, _rss_mb, _server, relay_command

CELL = 4096
ROUND_SECONDS = 2.0


def _cell(device: int, channel: int, rnd: int) -> tuple[bytes, bytes]:
    """The slot and cell of a channel in a round: derived, so a fetch can be checked."""
    seed = f"soak/{device}/{channel}/{rnd}".encode()
    slot = hashlib.sha256(b"slot/" + seed).digest()
    cell = hashlib.shake_256(b"cell/" + seed).digest(CELL)
    return slot, cell


@dataclass
class Minute:
    deposit: list[float] = field(default_factory=list)
    fetch: list[float] = field(default_factory=list)
    ack: list[float] = field(default_factory=list)
    errors: int = 0
    rounds: int = 0


class Soak:
    def __init__(self, base_url: str, devices: int, per_device: int, round_s: float) -> None:
        self.base_url = base_url
        self.devices = devices
        self.per_device = per_device
        self.round_s = round_s
        self.minutes: dict[int, Minute] = {}
        self.start = 0.0
        self.known_size = [0] * devices
        self.sample = 60.0

    def minute(self) -> Minute:
        m = int((time.monotonic() - self.start) // self.sample)
        return self.minutes.setdefault(m, Minute())

    async def device(self, d: int, client: RelayClient, deadline: float) -> None:
        offset = (d / self.devices) * self.round_s * 0.4  # spread over the first 40 %
        rnd = 0
        while True:
            t0 = self.start + rnd * self.round_s + offset
            if t0 >= deadline:
                return
            await asyncio.sleep(max(0.0, t0 - time.monotonic()))
            tenant = f"soak-{d}"
            cells = [(tenant, *_cell(d, c, rnd)) for c in range(self.per_device)]
            t = time.perf_counter()
            try:
                answer = await client.batch_deposit(cells, self.known_size[d])
                if any(not r.stored for r in answer.results):
                    self.minute().errors += 1
                self.minute().deposit.append(time.perf_counter() - t)
            except Exception:
                self.minute().errors += 1
            await asyncio.sleep(max(0.0, t0 + self.round_s / 2 - time.monotonic()))
            if rnd > 0:
                await self._fetch_and_ack(d, client, rnd - 1)
            self.minute().rounds += 1
            rnd += 1

    async def _fetch_and_ack(self, d: int, client: RelayClient, rnd: int) -> None:
        wanted = dict(_cell(d, c, rnd) for c in range(self.per_device))
        t = time.perf_counter()
        try:
            answer = await client.batch_fetch(list(wanted), self.known_size[d], (), 0)
            self.minute().fetch.append(time.perf_counter() - t)
            got = {c.slot: c.cell for c in answer.cells}
            if got != wanted:
                self.minute().errors += 1
            head = answer.log.head()
            if head is not None:
                self.known_size[d] = max(self.known_size[d], head.size)
            t = time.perf_counter()
            if await client.ack(list(got)) != len(got):
                self.minute().errors += 1
            self.minute().ack.append(time.perf_counter() - t)
        except Exception:
            self.minute().errors += 1


async def _register(base_url: str, devices: int) -> list[RelayClient]:
    clients = []
    for d in range(devices):
        credential = new_credential()
        client = RelayClient(base_url, f"soak-{d}", credential)
        await client.register_tenant(f"soak-{d}", credential, operator_token=OPERATOR)
        clients.append(client)
    return clients


def _db_bytes(path: Path | None) -> int | None:
    if path is None:
        return None
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


async def _run(
    args: argparse.Namespace, base_url: str, pid: int, db: Path | None
) -> list[dict[str, Any]]:
    per_device = max(1, args.channels // args.devices)
    soak = Soak(base_url, args.devices, per_device, args.round)
    soak.sample = args.sample
    clients = await _register(base_url, args.devices)
    rows: list[dict[str, Any]] = []
    soak.start = time.monotonic() + 1.0
    deadline = soak.start + args.seconds

    async def sampler() -> None:
        m = 0
        while time.monotonic() < deadline + args.round:
            await asyncio.sleep(max(0.0, soak.start + (m + 1) * args.sample - time.monotonic()))
            minute = soak.minutes.get(m, Minute())
            row: dict[str, Any] = {
                "minute": m + 1,
                "rss_mb": _rss_mb(pid),
                "db_mb": None if db is None else round((_db_bytes(db) or 0) / 2**20, 1),
                "errors": minute.errors,
                "device_rounds": minute.rounds,
            }
            for kind in ("deposit", "fetch", "ack"):
                values = getattr(minute, kind)
                row[f"{kind}_n"] = len(values)
                ordered = sorted(values)
                row[f"{kind}_p50_ms"] = round(_pct(ordered, 50) * 1000, 2)
                row[f"{kind}_p99_ms"] = round(_pct(ordered, 99) * 1000, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
            m += 1

    try:
        await asyncio.gather(
            sampler(), *(soak.device(d, c, deadline) for d, c in enumerate(clients))
        )
    finally:
        for c in clients:
            await c.aclose()
    return rows


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The bounds stated in the module docstring, checked on the per-minute rows."""
    full = [r for r in rows if r["deposit_n"]]
    out: dict[str, Any] = {"errors": sum(r["errors"] for r in rows), "minutes": len(full)}
    if len(full) < 20:
        out["flat"] = None
        out["note"] = "fewer than 20 minutes: no verdict on flatness"
        return out
    rss10, rss_end = full[9]["rss_mb"], full[-1]["rss_mb"]
    out["rss_minute_10_mb"], out["rss_end_mb"] = rss10, rss_end
    out["rss_growth"] = round(rss_end / rss10 - 1, 3)
    ok = out["rss_growth"] < 0.10
    for kind in ("deposit", "fetch", "ack"):
        early = sorted(r[f"{kind}_p99_ms"] for r in full[4:15])
        late = sorted(r[f"{kind}_p99_ms"] for r in full[-10:])
        e, lt = early[len(early) // 2], late[len(late) // 2]
        out[f"{kind}_p99_early_ms"], out[f"{kind}_p99_late_ms"] = e, lt
        out[f"{kind}_p99_ratio"] = round(lt / e, 3) if e else None
        ok = ok and e > 0 and lt / e <= 1.5
    out["flat"] = ok and out["errors"] == 0
    return out


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["minute"] for r in rows]
    fig, (a, b, c) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    a.plot(minutes, [r["rss_mb"] for r in rows], label="relay RSS")
    a.set_ylabel("MiB")
    a.set_ylim(bottom=0)
    a.legend()
    for kind in ("deposit", "fetch", "ack"):
        b.plot(minutes, [r[f"{kind}_p99_ms"] for r in rows], label=f"{kind} p99")
        b.plot(minutes, [r[f"{kind}_p50_ms"] for r in rows], ":", label=f"{kind} p50")
    b.set_ylabel("ms")
    b.set_ylim(bottom=0)
    b.legend(ncol=3, fontsize="small")
    if rows and rows[0]["db_mb"] is not None:
        c.plot(minutes, [r["db_mb"] for r in rows], label="database on disk")
        c.set_ylabel("MiB")
        c.legend()
    c.set_xlabel("minute")
    fig.suptitle("Soak: one relay, 1,000 channels, one round each 2 s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def soak(argv: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run with these arguments; the per-sample rows and the verdict."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        db_path = None if args.db else Path(tmp) / "relay.db"
        url = args.db or f"sqlite:///{db_path}"
        port = _free_port()
        with _server(relay_command(url, port), port, "/readyz") as proc:
            rows = asyncio.run(_run(args, f"http://127.0.0.1:{port}", proc.pid, db_path))
    if args.csv:
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.plot and rows:
        _plot(rows, args.plot)
    return rows, verdict(rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=250)
    parser.add_argument("--round", type=float, default=ROUND_SECONDS)
    parser.add_argument("--sample", type=float, default=60.0, help="seconds per row")
    parser.add_argument("--db", default="", help="a database URL (default: SQLite in a temp dir)")
    parser.add_argument("--csv", type=Path, help="write the per-minute rows here")
    parser.add_argument("--plot", type=Path, help="draw the per-minute rows here (PNG)")
    return parser


def main(argv: list[str] | None = None) -> int:
    _, result = soak(sys.argv[1:] if argv is None else argv)
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 and result["flat"] is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
