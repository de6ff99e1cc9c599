"""Storage at scale: the pure parts of the bench (nothing is filled or timed here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.store_scale import room, summarise  # noqa: E402


def test_ratios_are_medians_of_pairs_from_the_same_round() -> None:
    runs = {
        10**4: [{"deposits_per_s": r, "rss_mb": 100.0} for r in (1000.0, 2000.0, 1500.0)],
        10**6: [
            {"deposits_per_s": r, "rss_mb": m} for r, m in ((900.0, 110), (1000, 130), (1200, 120))
        ],
        10**7: [{"deposits_per_s": r, "rss_mb": 150.0} for r in (500.0, 1900.0, 1200.0)],
    }
    out = summarise([10**4, 10**6, 10**7], runs)
    # Pairs 0.9, 0.5, 0.8: the median pair, not the ratio of the medians (1000 / 1500).
    assert out["ratio"] == pytest.approx(0.8)
    assert out["ratio_runs"] == [0.9, 0.5, 0.8]
    assert out["ratio_huge"] == pytest.approx(0.8)  # 0.5, 0.95, 0.8
    assert out["deposits_per_s_small"] == 1500.0
    assert out["rss_mb_large"] == 120.0
    assert out["rss_ratio_huge"] == pytest.approx(1.5)
    assert (out["small_n"], out["large_n"], out["huge_n"]) == (10**4, 10**6, 10**7)
    assert out["levels"]["1000000"]["deposits_per_s_runs"] == [900.0, 1000.0, 1200.0]


def test_two_levels_have_no_huge_figures() -> None:
    runs = {n: [{"deposits_per_s": 10.0, "rss_mb": 1.0}] for n in (10**3, 10**5)}
    out = summarise([10**3, 10**5], runs)
    assert out["ratio"] == 1.0
    assert "ratio_huge" not in out and "rss_ratio_huge" not in out


def test_levels_the_disk_cannot_hold_are_left_out_with_the_reason() -> None:
    kept, left = room([10**7, 10**4, 10**6], 9000, 77 * 10**9)
    assert kept == [10**4, 10**6]
    assert left == {
        "10000000": "needs about 99 GB of free disk with the smaller levels, 77 GB free"
    }
    kept, left = room([10**4, 10**6, 10**7], 5000, 77 * 10**9)
    assert kept == [10**4, 10**6, 10**7] and left == {}
    assert room([10**4], 5000, 10**7) == (
        [],
        {"10000": "needs about 0 GB of free disk with the smaller levels, 0 GB free"},
    )


def test_a_fill_reserve_counts_before_the_first_level() -> None:
    # PostgreSQL's figures: 6,900 B a cell and 2 GB of WAL and transition table.
    kept, left = room([10**4, 10**6, 10**7], 6900, 82 * 10**9, reserve=2 * 10**9)
    assert kept == [10**4, 10**6, 10**7] and left == {}
    kept, left = room([10**4, 10**6, 10**7], 6900, 77 * 10**9, reserve=2 * 10**9)
    assert kept == [10**4, 10**6]
    assert left == {
        "10000000": "needs about 78 GB of free disk with the smaller levels, 77 GB free"
    }
    assert room([10**3], 6900, 10**9, reserve=2 * 10**9)[0] == []
