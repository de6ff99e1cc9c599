"""PNG plots of one run's results (matplotlib, Agg backend) into ``docs/img/``.

Each plot is drawn only from the data the run has; a system whose figures are
missing is left out of it, and a plot with nothing to show is not written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONCURRENCY = (16, 64)

#: (label, benchmark, path under c<N>, throughput key) for the HTTP/queue systems.
SERIES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("relay (SQLite)", "relay", ("sqlite",), "deposits_per_s"),
    ("relay (PostgreSQL)", "relay", ("postgres",), "deposits_per_s"),
    ("bare endpoint", "relay", ("bare",), "requests_per_s"),
    ("Synapse", "synapse", (), "sends_per_s"),
    ("NATS JetStream", "nats", (), "publishes_per_s"),
)
COLOURS = {
    "relay (SQLite)": "#1f6feb",
    "relay (PostgreSQL)": "#54aeff",
    "bare endpoint": "#8c959f",
    "Synapse": "#d1242f",
    "NATS JetStream": "#1a7f37",
}


def _data(doc: Mapping[str, Any], bench: str) -> Mapping[str, Any] | None:
    rec = doc.get("benches", {}).get(bench)
    if not isinstance(rec, Mapping) or rec.get("status") != "ok":
        return None
    data = rec.get("data")
    return data if isinstance(data, Mapping) else None


def _at(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def level(doc: Mapping[str, Any], bench: str, prefix: tuple[str, ...], c: int) -> Any:
    return _at(_data(doc, bench), *prefix, f"c{c}")


def _latency(node: Any, q: int) -> float | None:
    """p``q`` in ms: ``p50_ms``, or the relay's ``deposit_p50_ms``."""
    for key in (f"p{q}_ms", f"deposit_p{q}_ms"):
        value = _num(_at(node, key))
        if value is not None:
            return value
    return None


def cdf_points(node: Any) -> tuple[list[float], list[float]] | None:
    """(percentiles, ms) from ``latency_cdf_ms`` pairs, or evenly spaced ``latency_pcts_ms``."""
    pairs = _at(node, "latency_cdf_ms")
    if isinstance(pairs, list) and len(pairs) >= 3:
        try:
            qs = [float(q) for q, _ in pairs]
            ms = [float(v) for _, v in pairs]
        except (TypeError, ValueError):
            return None
    else:
        pcts = _at(node, "latency_pcts_ms")
        if not isinstance(pcts, list) or len(pcts) < 3:
            return None
        qs = [100.0 * i / (len(pcts) - 1) for i in range(len(pcts))]
        ms = [v for v in pcts if isinstance(v, int | float)]
        if len(ms) != len(qs):
            return None
    if not all(math.isfinite(v) and v > 0 for v in ms):
        return None
    return qs, ms


def _subtitle(doc: Mapping[str, Any]) -> str:
    meta = doc.get("meta", {})
    cores = _at(meta, "machine", "cores")
    return f"{meta.get('mode', '?')} run, {str(meta.get('date', '?'))[:16]}, {cores} cores (shared)"


def make_plots(doc: Mapping[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    for draw in (_throughput, _latency_bars, _latency_cdf, _client_vs_gpg, _ratios):
        path = draw(doc, out_dir)
        if path is not None:
            made.append(path)
    return made


def _throughput(doc: Mapping[str, Any], out_dir: Path) -> Path | None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    drawn = 0
    for label, bench, prefix, key in SERIES:
        xs, ys = [], []
        for c in CONCURRENCY:
            v = _num(_at(level(doc, bench, prefix, c), key))
            if v is not None:
                xs.append(c)
                ys.append(v)
        if ys:
            ax.plot(xs, ys, marker="o", label=label, color=COLOURS.get(label))
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(6, 4),
                            fontsize=8)  # fmt: skip
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
    ax.set_yscale("log")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("acknowledged writes per second (log)")
    ax.set_title(f"Throughput against concurrency, 4 KiB messages\n{_subtitle(doc)}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_dir / "throughput.png")


def _latency_bars(doc: Mapping[str, Any], out_dir: Path) -> Path | None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CONCURRENCY), figsize=(10, 4.6), dpi=110, sharey=True)
    drawn = 0
    for ax, c in zip(axes, CONCURRENCY, strict=True):
        labels, p50s, p99s = [], [], []
        for label, bench, prefix, _ in SERIES:
            node = level(doc, bench, prefix, c)
            p50, p99 = _latency(node, 50), _latency(node, 99)
            if p50 is not None and p99 is not None:
                labels.append(label)
                p50s.append(p50)
                p99s.append(p99)
        if not labels:
            ax.set_visible(False)
            continue
        drawn += 1
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], p50s, width=0.4, label="p50", color="#54aeff")
        ax.bar([x + 0.2 for x in xs], p99s, width=0.4, label="p99", color="#0a3069")
        ax.set_xticks(list(xs), labels, rotation=20, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"concurrency {c}", fontsize=9)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    axes[0].set_ylabel("latency per acknowledged write, ms (log)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Latency p50 / p99\n{_subtitle(doc)}", fontsize=10)
    return _save(fig, out_dir / "latency.png")


def _latency_cdf(doc: Mapping[str, Any], out_dir: Path) -> Path | None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CONCURRENCY), figsize=(10, 4.4), dpi=110, sharey=True)
    drawn = 0
    for ax, c in zip(axes, CONCURRENCY, strict=True):
        here = 0
        for label, bench, prefix, _ in SERIES:
            curve = cdf_points(level(doc, bench, prefix, c))
            if curve is None:
                continue
            ax.plot(curve[1], curve[0], label=label, color=COLOURS.get(label))
            here += 1
        if not here:
            ax.set_visible(False)
            continue
        drawn += 1
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log)")
        ax.set_title(f"concurrency {c}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if not drawn:
        plt.close(fig)
        return None
    axes[0].set_ylabel("percentile")
    fig.suptitle(f"Latency distribution (CDF)\n{_subtitle(doc)}", fontsize=10)
    return _save(fig, out_dir / "latency_cdf.png")


def _client_vs_gpg(doc: Mapping[str, Any], out_dir: Path) -> Path | None:
    import matplotlib.pyplot as plt

    bars = [
        ("client 2-of-2", _num(_at(_data(doc, "protocol"), "2of2", "messages_per_s")), "#1f6feb"),
        ("client 2-of-3", _num(_at(_data(doc, "protocol"), "2of3", "messages_per_s")), "#54aeff"),
        ("gpg (2 processes)", _num(_at(_data(doc, "gpg"), "round_trips_per_s")), "#d1242f"),
    ]
    bars = [b for b in bars if b[1] is not None]
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    ax.bar([b[0] for b in bars], [b[1] or 0 for b in bars], color=[b[2] for b in bars])
    for i, b in enumerate(bars):
        ax.annotate(f"{b[1]:,.0f}/s", (i, b[1] or 0), ha="center", xytext=(0, 3),
                    textcoords="offset points", fontsize=8)  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylabel("messages sealed, co-signed and opened per second (log)")
    ax.set_title(f"One 4 KiB message end to end, one at a time\n{_subtitle(doc)}", fontsize=10)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return _save(fig, out_dir / "client_vs_gpg.png")


def _ratios(doc: Mapping[str, Any], out_dir: Path) -> Path | None:
    import matplotlib.pyplot as plt

    rows = [
        # A goal to stay under ("<=") is met left of the goal: its bar is turned round.
        (
            key,
            entry["value"] / entry["goal"]
            if entry.get("op") != "<="
            else entry["goal"] / max(entry["value"], 1e-9),
            bool(entry.get("met")),
        )
        for key, entry in doc.get("ratios", {}).items()
        if _num(entry.get("value")) is not None and _num(entry.get("goal")) is not None
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(rows) + 1.6), dpi=110)
    ys = list(range(len(rows)))
    # Bars grow from the goal (1.0): right of it the goal is met, left of it not.
    ax.barh(ys, [r[1] - 1.0 for r in rows], left=1.0,
            color=["#1a7f37" if r[2] else "#d1242f" for r in rows])  # fmt: skip
    for y, r in zip(ys, rows, strict=True):
        ax.annotate(f"{r[1]:.2g}x", (r[1], y), va="center", fontsize=8,
                    xytext=(4 if r[1] >= 1 else -4, 0), textcoords="offset points",
                    ha="left" if r[1] >= 1 else "right")  # fmt: skip
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    lo = min(1.0, *(r[1] for r in rows)) / 2
    hi = max(1.0, *(r[1] for r in rows)) * 2
    ax.set_xlim(lo, hi)
    ax.set_xlabel("ratio / goal, log (right of the line: goal met)")
    ax.set_title(f"Ratios against their goals\n{_subtitle(doc)}", fontsize=10)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return _save(fig, out_dir / "ratios.png")


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
