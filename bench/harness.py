"""Run every benchmark in one process, ours and the peers interleaved, and print ratios.

Each benchmark is a module exposing ``run(quick: bool) -> dict``. Modules are
imported lazily: one that is missing, fails, or reports ``{"skipped": why}`` is
named on one line and the run goes on; every ratio that needed it is then
``null`` with the reason. The output ends with exactly one JSON line (the last
line printed) holding every ratio with its goal and whether it is met. Full
results go to ``bench/results/<timestamp>.json`` and ``latest.json``; plots go to
``docs/img/``.

Everything above :func:`main` that takes figure dicts is pure, so the ratio,
table and JSON logic is tested on fabricated figures (``tests/bench/``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import inspect
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
IMG_DIR = REPO_ROOT / "docs" / "img"

#: Wall-clock budget of a whole run, in seconds; later benchmarks are skipped past it.
#: The observer's rounds take about a minute quick and half an hour full; the
#: storage bench at 10^7 cells, filled for both stores, about twenty minutes.
BUDGET_S = {True: 300.0, False: 5400.0}


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    kind: str  # "ours" or "peer"
    title: str


#: Run order: each peer sits beside the benchmark of ours it is divided into, so
#: both sides of a ratio see the same state of a shared, noisy machine.
BENCHES: tuple[Bench, ...] = (
    Bench("gpg", "bench.peers.gpg", "peer", "GnuPG sign+encrypt / decrypt+verify"),
    Bench("protocol", "bench.protocol", "ours", "Protocol core: seal + co-sign + open"),
    Bench("nats", "bench.peers.nats", "peer", "NATS JetStream acknowledged publish"),
    Bench("relay", "bench.relay", "ours", "Relay over HTTP (uvicorn)"),
    Bench("synapse", "bench.peers.synapse", "peer", "Matrix Synapse room messages"),
    Bench("store_scale", "bench.store_scale", "ours", "Storage at scale"),
    Bench("log", "bench.log", "ours", "Transparency log: deposits with and without, proofs"),
    Bench("capacity", "bench.capacity", "ours", "Channels one relay process holds at T = 60 s"),
    Bench("e2e", "bench.e2e", "ours", "End to end through a real relay (no peer, no ratio)"),
    Bench("observer", "bench.observer", "ours", "The observer: can the relay or a tap see use?"),
)
BENCH_NAMES = tuple(b.name for b in BENCHES)
ALIASES = {"scale": "store_scale", "store": "store_scale", "gnupg": "gpg", "matrix": "synapse"}

Path_ = tuple[str, ...]  # (bench name, key, key, ...)


@dataclass(frozen=True)
class Ratio:
    key: str
    title: str
    numerator: Sequence[Path_]  # first path found is used
    denominator: Sequence[Path_] | None  # None: the figure itself is reported
    goal: float | None
    unit: str = "x"
    #: ">=": the value must reach the goal; "<=": it must stay under it.
    op: str = ">="


RATIOS: tuple[Ratio, ...] = (
    Ratio(
        "relay_vs_synapse",
        "relay durable deposits/s (sqlite, c16) / Synapse sends/s (c16)",
        [("relay", "sqlite", "c16", "deposits_per_s")],
        [("synapse", "c16", "sends_per_s")],
        100.0,
    ),
    Ratio(
        "relay_vs_bare",
        "relay durable deposits/s / bare endpoint requests/s (c16)",
        [("relay", "sqlite", "c16", "deposits_per_s")],
        [("relay", "bare", "c16", "requests_per_s")],
        0.7,
    ),
    Ratio(
        "relay_vs_nats",
        "relay durable deposits/s / NATS JetStream acked publishes/s (c16)",
        [("relay", "sqlite", "c16", "deposits_per_s")],
        [("nats", "c16", "publishes_per_s")],
        0.5,
    ),
    Ratio(
        "batch_vs_nats",
        "relay batch path, cells durably stored/s (sqlite, c16) / NATS acked publishes/s (c16)",
        [("relay", "sqlite", "c16", "batch_cells_per_s")],
        [("nats", "c16", "publishes_per_s")],
        1.0,
    ),
    Ratio(
        "client_vs_gpg",
        "client seal+co-sign+open/s (2of2) / gpg sign+encrypt+decrypt+verify/s",
        [("protocol", "2of2", "messages_per_s")],
        [("gpg", "round_trips_per_s")],
        30.0,
    ),
    Ratio(
        "client_2of3_vs_2of2",
        "client messages/s 2-of-3 / 2-of-2 (within 1.5x: at least 1/1.5)",
        [("protocol", "2of3", "messages_per_s")],
        [("protocol", "2of2", "messages_per_s")],
        round(1 / 1.5, 3),
    ),
    Ratio(
        "scale_1e6_vs_1e4",
        "deposits/s with 10^6 cells stored / with 10^4 (sqlite, median of pairwise ratios)",
        [("store_scale", "sqlite", "ratio")],
        None,
        0.8,
    ),
    Ratio(
        "log_vs_no_log",
        "durable deposits/s with the transparency log / without (sqlite, c16, median of pairs)",
        [("log", "deposits", "ratio")],
        None,
        0.9,
    ),
    Ratio(
        "rss_1e7_vs_1e4",
        "relay store RSS with 10^7 cells stored / with 10^4 (sqlite, medians)",
        [("store_scale", "sqlite", "rss_ratio_huge")],
        None,
        1.2,
        op="<=",
    ),
    Ratio(
        "pg_workers4_vs_1",
        "deposits/s, relay serve --workers 4 / --workers 1 (postgres, c64)",
        [("relay", "postgres_workers", "ratio_w4_vs_w1")],
        None,
        1.6,
    ),
    Ratio(
        "capacity_channels",
        "channels one relay process holds at T = 60 s with p99 < 1 s (sqlite)",
        [("capacity", "capacity_channels")],
        None,
        100_000.0,
        "channels",
    ),
    Ratio(
        "capacity_relay_cores",
        "relay CPU at 10^5 channels, as relay init deploys it (commits paced), in cores"
        " (CPU to spare: at most 0.8)",
        [("capacity", "relay_cores_at_target")],
        None,
        0.8,
        "cores",
        op="<=",
    ),
    Ratio(
        "capacity_relay_cores_unpaced",
        "relay CPU at 10^5 channels, each commit at once (log_interval_ms 0), in cores",
        [("capacity", "relay_cores_at_target_unpaced")],
        None,
        None,
        "cores",
    ),
    Ratio(
        "scale_1e7_vs_1e4",
        "deposits/s with 10^7 cells stored / with 10^4 (sqlite, median of pairwise ratios)",
        [("store_scale", "sqlite", "ratio_huge")],
        None,
        None,
    ),
    Ratio(
        "relay_rss_mb_1e6",
        "relay store RSS (MiB) with 10^6 cells stored (sqlite)",
        [("store_scale", "sqlite", "rss_mb_large")],
        None,
        None,
        "MiB",
    ),
)
RATIO_KEYS = tuple(r.key for r in RATIOS)


# --------------------------------------------------------------------- outcomes


def outcome(
    status: str, *, data: Mapping[str, Any] | None = None, reason: str | None = None,
    seconds: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """One benchmark's record: status ok | skipped | missing | failed | not run."""
    return {"status": status, "reason": reason, "seconds": round(seconds, 2), "data": data}


def classify(name: str, result: Any, seconds: float) -> dict[str, Any]:
    """Turn what ``run()`` returned into an outcome."""
    if not isinstance(result, Mapping):
        return outcome(
            "failed", reason=f"run() returned {type(result).__name__}, not a dict", seconds=seconds
        )
    if "skipped" in result and len(result) <= 2:
        return outcome("skipped", reason=str(result["skipped"]), data=result, seconds=seconds)
    return outcome("ok", data=dict(result), seconds=seconds)


def _describe(name: str, rec: Mapping[str, Any] | None) -> str:
    if rec is None:
        return f"{name} not run"
    status, reason = rec.get("status"), rec.get("reason")
    return f"{name} {status}" + (f": {reason}" if reason else "")


def lookup(outcomes: Mapping[str, Mapping[str, Any]], path: Path_) -> tuple[float | None, str]:
    """A number at ``path`` in the outcomes, or None and why it is absent."""
    name, keys = path[0], path[1:]
    rec = outcomes.get(name)
    if rec is None or rec.get("status") != "ok" or not isinstance(rec.get("data"), Mapping):
        return None, _describe(name, rec)
    node: Any = rec["data"]
    walked = [name]
    for key in keys:
        if isinstance(node, Mapping) and "skipped" in node and key not in node:
            return None, f"{'.'.join(walked)} skipped: {node['skipped']}"
        if not isinstance(node, Mapping) or key not in node:
            return None, f"{name} has no figure {'.'.join(keys)}"
        node = node[key]
        walked.append(key)
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        return None, f"{'.'.join(path)} is not a finite number ({node!r})"
    return float(node), ""


def _first(
    outcomes: Mapping[str, Mapping[str, Any]], paths: Sequence[Path_]
) -> tuple[float | None, str, Path_]:
    reason = ""
    for path in paths:
        value, why = lookup(outcomes, path)
        if value is not None:
            return value, "", path
        reason = reason or why
    return None, reason, paths[0]


def _sig(x: float, digits: int = 4) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, max(0, digits - 1 - math.floor(math.log10(abs(x)))))


def compute_ratios(outcomes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every ratio of :data:`RATIOS`: value, goal, met, and the reason when null."""
    out: dict[str, dict[str, Any]] = {}
    for ratio in RATIOS:
        entry: dict[str, Any] = {
            "value": None, "goal": ratio.goal, "op": ratio.op if ratio.goal is not None else None,
            "met": None, "vs_goal": None, "numerator": None, "denominator": None,
            "reason": None,
        }  # fmt: skip
        num, why_num, _ = _first(outcomes, ratio.numerator)
        if ratio.denominator is None:
            den, why_den = 1.0, ""
        else:
            den, why_den, _ = _first(outcomes, ratio.denominator)
            entry["denominator"] = den
        entry["numerator"] = num
        reasons = [r for r in (why_num, why_den) if r]
        if num is not None and den is not None and den <= 0:
            reasons.append("denominator is zero")
        if reasons:
            entry["reason"] = "; ".join(dict.fromkeys(reasons))
        else:
            assert num is not None and den is not None
            value = _sig(num / den)
            entry["value"] = value
            if ratio.goal is not None:
                entry["met"] = value >= ratio.goal if ratio.op == ">=" else value <= ratio.goal
                entry["vs_goal"] = _sig(value / ratio.goal, 3)
        _note_sizes(outcomes, ratio.key, entry)
        out[ratio.key] = entry
    return out


#: The store sizes (powers of ten: first, then the one measured) each scale figure names.
_SIZES = {
    "scale_1e6_vs_1e4": ("large_n", 6),
    "relay_rss_mb_1e6": ("large_n", 6),
    "scale_1e7_vs_1e4": ("huge_n", 7),
    "rss_1e7_vs_1e4": ("huge_n", 7),
}


def _note_sizes(outcomes: Mapping[str, Mapping[str, Any]], key: str, entry: dict[str, Any]) -> None:
    """A scale figure measured at other sizes than its name says carries a note saying so."""
    if key not in _SIZES:
        return
    which, power = _SIZES[key]
    small, _ = lookup(outcomes, ("store_scale", "sqlite", "small_n"))
    large, _ = lookup(outcomes, ("store_scale", "sqlite", which))
    if small is not None and large is not None:
        entry["sizes"] = [int(small), int(large)]
        if (int(small), int(large)) != (10**4, 10**power):
            entry["note"] = f"measured at {int(large)} vs {int(small)} cells stored"


def final_json_line(ratios: Mapping[str, Mapping[str, Any]]) -> str:
    """The one-line JSON summary printed last: every ratio key, null when unmeasured."""
    missing = {"value": None, "met": None, "reason": "not computed"}
    payload = {key: ratios.get(key, missing) for key in RATIO_KEYS}
    line = json.dumps(_jsonable(payload), sort_keys=False, allow_nan=False, separators=(",", ":"))
    assert "\n" not in line
    return line


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return str(obj)


# ----------------------------------------------------------------------- tables


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _leaves(node: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, (*prefix, str(key)))
    elif isinstance(node, list | tuple):
        if node and len(node) <= 4 and all(not isinstance(v, Mapping | list) for v in node):
            yield prefix, ", ".join(_fmt(v) for v in node)
        # longer lists (percentile vectors for the CDF plot) stay in the JSON only
    else:
        yield prefix, node


def _goal_text(goal: float | None, op: str = ">=") -> str:
    return "reported" if goal is None else f"{op} {goal:g}"


def figure_goals(outcomes: Mapping[str, Mapping[str, Any]] | None = None) -> dict[Path_, str]:
    """For each figure a ratio is built from, the goal it feeds (for the table).

    With ``outcomes``, a denominator's note also says what its numerator must reach.
    """
    notes: dict[Path_, list[str]] = {}
    for ratio in RATIOS:
        goal = _goal_text(ratio.goal, ratio.op)
        for path in ratio.numerator:
            notes.setdefault(path, []).append(f"{ratio.key} {goal}")
        for path in ratio.denominator or ():
            text = f"{ratio.key} {goal} (divides)"
            value, _ = lookup(outcomes or {}, path)
            if value is not None and ratio.goal is not None:
                text += f": numerator needs >= {_fmt(value * ratio.goal)}"
            notes.setdefault(path, []).append(text)
    return {path: "; ".join(texts) for path, texts in notes.items()}


def figure_rows(outcomes: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(benchmark, figure, value, goal) rows for every figure of every benchmark."""
    goals = figure_goals(outcomes)
    rows: list[tuple[str, str, str, str]] = []
    for bench in BENCHES:
        rec = outcomes.get(bench.name)
        if rec is None:
            continue
        if rec.get("status") != "ok":
            rows.append((bench.name, "(status)", str(rec.get("status")), str(rec.get("reason"))))
            continue
        for keys, value in _leaves(rec.get("data")):
            rows.append(
                (bench.name, ".".join(keys), _fmt(value), goals.get((bench.name, *keys), ""))
            )
    return rows


def ratio_rows(ratios: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """(ratio, value, goal, met, detail) rows."""
    rows = []
    for ratio in RATIOS:
        entry = ratios.get(ratio.key, {})
        value = entry.get("value")
        goal = ratio.goal
        if value is None:
            met, detail = "null", str(entry.get("reason"))
        elif goal is None:
            met, detail = "-", ratio.title
        else:
            met = "met" if entry.get("met") else "NOT met"
            detail = f"{_fmt(entry.get('vs_goal'))}x the goal"
            if ratio.denominator is not None:
                detail = (
                    f"{_fmt(entry.get('numerator'))} / {_fmt(entry.get('denominator'))}; " + detail
                )
        if entry.get("note"):
            detail += f" ({entry['note']})"
        shown = (
            "null"
            if value is None
            else _fmt(value) + ("" if ratio.unit == "x" else f" {ratio.unit}")
        )
        goal_shown = _goal_text(goal, ratio.op) if goal is not None else "-"
        rows.append((ratio.key, shown, goal_shown, met, detail))
    return rows


def render_plain(
    outcomes: Mapping[str, Mapping[str, Any]], ratios: Mapping[str, Mapping[str, Any]]
) -> str:
    """Both tables as plain text (used when Rich is unavailable, and by the tests)."""

    def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        widths[-1] = len(header[-1])  # last column runs free
        line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
        out = [line, "-" * len(line)]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        return out

    lines = ["Figures"]
    frows = figure_rows(outcomes) or [("-", "-", "-", "-")]
    lines += table(("bench", "figure", "value", "goal"), frows)
    lines += ["", "Ratios"]
    lines += table(("ratio", "value", "goal", "met", "detail"), ratio_rows(ratios))
    return "\n".join(lines)


def print_tables(
    outcomes: Mapping[str, Mapping[str, Any]], ratios: Mapping[str, Mapping[str, Any]]
) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(render_plain(outcomes, ratios), flush=True)
        return
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 150)
    figures = Table(title="Figures", show_lines=False)
    for col in ("bench", "figure", "value", "goal"):
        figures.add_column(col, justify="right" if col == "value" else "left")
    last = None
    for row in figure_rows(outcomes):
        if last is not None and row[0] != last:
            figures.add_section()
        figures.add_row(*row)
        last = row[0]
    console.print(figures)
    table = Table(title="Ratios (within this run)")
    for col in ("ratio", "value", "goal", "met", "detail"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for row in ratio_rows(ratios):
        style = {"met": "green", "NOT met": "red", "null": "yellow"}.get(row[3])
        table.add_row(*row, style=style)
    console.print(table)
    sys.stdout.flush()


# ---------------------------------------------------------------------- running


def parse_only(text: str | None) -> list[str]:
    """``--only a,b`` into benchmark names, in run order; raises ValueError on unknown."""
    if not text:
        return list(BENCH_NAMES)
    wanted = set()
    for raw in text.split(","):
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in BENCH_NAMES:
            raise ValueError(f"unknown benchmark {raw!r}; known: {', '.join(BENCH_NAMES)}")
        wanted.add(name)
    return [n for n in BENCH_NAMES if n in wanted]


def say(line: str) -> None:
    print(line, flush=True)


def run_one(bench: Bench, quick: bool) -> dict[str, Any]:
    """Import ``bench.module`` lazily and run it; never raises."""
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(bench.module)
    except ModuleNotFoundError as exc:
        if exc.name and (bench.module == exc.name or bench.module.startswith(exc.name + ".")):
            return outcome("missing", reason=f"module {bench.module} is not there yet")
        return outcome("failed", reason=f"import of {bench.module} failed: {exc}")
    except Exception as exc:
        return outcome("failed", reason=f"import of {bench.module} failed: {_exc(exc)}")
    runner = getattr(module, "run", None)
    if not callable(runner):
        return outcome("failed", reason=f"{bench.module} has no run(quick) function")
    try:
        result = runner(quick)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except Exception as exc:
        tb = traceback.format_exc(limit=-3)
        sys.stderr.write(tb)
        return outcome(
            "failed", reason=f"{bench.module}.run raised {_exc(exc)}",
            seconds=time.perf_counter() - t0,
        )  # fmt: skip
    return classify(bench.name, result, time.perf_counter() - t0)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _exc(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["memory_gib"] = round(int(mem[1]) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    return info


def _git_commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.decode().strip() or None


def write_results(doc: Mapping[str, Any], results_dir: Path, stamp: str) -> Path:
    """``<stamp>.json`` and ``latest.json``, each written whole then renamed."""
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable(doc), indent=2, allow_nan=False) + "\n"
    target = results_dir / f"{stamp}.json"
    for path in (target, results_dir / "latest.json"):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return target


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Backchannel benchmarks beside Synapse, NATS JetStream and GnuPG.",
    )
    p.add_argument("--quick", action="store_true", help="smaller loads (whole run <= 3 min)")
    p.add_argument(
        "--only", metavar="NAME,...", help=f"run only these, of: {', '.join(BENCH_NAMES)}"
    )
    p.add_argument("--no-plots", action="store_true", help="do not write docs/img/*.png")
    p.add_argument(
        "--clean-peers",
        action="store_true",
        help="remove the peers' installs (bench/.peers/) at the end instead of keeping them",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        selected = parse_only(args.only)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    quick = bool(args.quick)
    budget = BUDGET_S[quick]
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    t0 = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    say(
        f"bench: {'quick' if quick else 'full'} run of {', '.join(selected)} "
        f"(budget {budget:.0f} s, {os.cpu_count()} cores)"
    )

    outcomes: dict[str, dict[str, Any]] = {}
    for bench in BENCHES:
        if bench.name not in selected:
            outcomes[bench.name] = outcome("not run", reason="not selected with --only")
            continue
        spent = time.perf_counter() - t0
        if spent > 0.95 * budget:
            outcomes[bench.name] = outcome(
                "skipped", reason=f"time budget used up ({spent:.0f} of {budget:.0f} s)"
            )
            say(f"bench: {bench.name}: skipped, time budget used up")
            continue
        say(f"bench: {bench.name}: {bench.title} ...")
        rec = run_one(bench, quick)
        outcomes[bench.name] = rec
        if rec["status"] == "ok":
            say(f"bench: {bench.name}: done in {rec['seconds']:.1f} s")
        else:
            say(
                f"bench: {bench.name}: {rec['status'].upper()}: {rec['reason']} "
                "(ratios that need it will be null)"
            )

    ratios = compute_ratios(outcomes)
    elapsed = time.perf_counter() - t0
    doc = {
        "meta": {
            "date": started.isoformat(timespec="seconds"),
            "command": "python -m bench" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
            "mode": "quick" if quick else "full",
            "selected": selected,
            "order": [b.name for b in BENCHES if b.name in selected],
            "machine": machine_info(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "seconds": round(elapsed, 1),
            "budget_s": budget,
            "commit": _git_commit(),
        },
        "benches": outcomes,
        "ratios": ratios,
    }
    try:
        path = write_results(doc, RESULTS_DIR, stamp)
        say(f"bench: results written to {_shown(path)} and latest.json")
    except OSError as exc:
        say(f"bench: could not write results: {exc}")
    if not args.no_plots:
        try:
            from bench.plots import make_plots

            made = make_plots(doc, IMG_DIR)
            shown = ", ".join(_shown(p) for p in made)
            say(f"bench: plots: {shown or 'none (no figures to plot)'}")
        except Exception as exc:
            say(f"bench: plots failed: {_exc(exc)}")
    if args.clean_peers:
        shutil.rmtree(BENCH_DIR / ".peers", ignore_errors=True)
        say("bench: removed bench/.peers/")
    if elapsed > budget:
        say(f"bench: WARNING: run took {elapsed:.0f} s, over its {budget:.0f} s budget")
    else:
        say(f"bench: run took {elapsed:.0f} s (budget {budget:.0f} s)")
    print_tables(outcomes, ratios)
    print(final_json_line(ratios), flush=True)
    return 0
