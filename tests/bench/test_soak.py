"""The short form of ``make soak``: a few seconds of rounds, every cell checked.

Behaviour, not speed: every deposit is stored, every fetch returns exactly the
cells deposited the round before (byte for byte) and every acknowledgement
removes them. The hour-long run and its verdict on memory and latency are in
docs/reliability.md.
"""

from __future__ import annotations

from bench.soak import soak, verdict


def test_a_short_soak_stores_fetches_and_acknowledges_every_cell() -> None:
    args = "--seconds 8 --channels 40 --devices 10 --round 0.5 --sample 4"
    rows, result = soak(args.split())
    assert result["errors"] == 0
    assert result["flat"] is None  # too short for a verdict, and it says so
    deposits = sum(r["deposit_n"] for r in rows)
    fetches = sum(r["fetch_n"] for r in rows)
    # 10 devices, one batch deposit a round for 16 rounds, one fetch for every round but the first.
    assert deposits >= 10 * 14
    assert fetches >= deposits - 2 * 10
    assert all(r["rss_mb"] for r in rows)


def test_the_verdict_reads_growth_and_latency_against_the_stated_bounds() -> None:
    def row(minute: int, rss: float, p99: float) -> dict[str, object]:
        out: dict[str, object] = {"minute": minute, "rss_mb": rss, "errors": 0}
        for kind in ("deposit", "fetch", "ack"):
            out[f"{kind}_n"] = 100
            out[f"{kind}_p99_ms"] = p99
        return out

    flat = [row(m, 100.0, 5.0) for m in range(1, 61)]
    assert verdict(flat)["flat"] is True
    leaking = [row(m, 100.0 + m, 5.0) for m in range(1, 61)]
    assert verdict(leaking)["flat"] is False  # 50 % growth after minute 10
    slowing = [row(m, 100.0, 5.0 if m < 40 else 9.0) for m in range(1, 61)]
    assert verdict(slowing)["flat"] is False
    assert verdict(flat[:10])["flat"] is None
