"""The benchmark harness's ratio, table and JSON logic, on fabricated figures.

No peer is installed or started and nothing is timed: benchmark modules are
stand-ins registered in ``sys.modules``.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.harness import (  # noqa: E402
    RATIO_KEYS,
    Bench,
    classify,
    compute_ratios,
    final_json_line,
    lookup,
    outcome,
    parse_only,
    render_plain,
    run_one,
)

from bench import harness  # noqa: E402


def figures(**overrides: Any) -> dict[str, dict[str, Any]]:
    """Outcomes of a complete run, every goal met unless overridden."""
    data: dict[str, Any] = {
        "protocol": {
            "2of2": {"messages_per_s": 3000.0, "ms_per_message": 0.33},
            "2of3": {"messages_per_s": 2500.0, "ms_per_message": 0.4},
            "primitives": {"ed25519_sign_us": 40.0},
        },
        "relay": {
            "sqlite": {
                "c16": {
                    "deposits_per_s": 8000.0,
                    "p50_ms": 2.0,
                    "p99_ms": 6.0,
                    "batch_cells_per_s": 13_000.0,
                },
                "c64": {"deposits_per_s": 9000.0, "p50_ms": 7.0, "p99_ms": 20.0},
            },
            "postgres": {"skipped": "no PostgreSQL reachable"},
            "postgres_workers": {"ratio_w2_vs_w1": 1.5, "ratio_w4_vs_w1": 2.0},
            "bare": {
                "c16": {"requests_per_s": 10000.0, "p50_ms": 1.5, "p99_ms": 4.0},
                "c64": {"requests_per_s": 11000.0, "p50_ms": 5.5, "p99_ms": 15.0},
            },
        },
        "store_scale": {
            "sqlite": {
                "small_n": 10_000,
                "large_n": 1_000_000,
                "huge_n": 10_000_000,
                "deposits_per_s_small": 9000.0,
                "deposits_per_s_large": 8100.0,
                "ratio": 0.9,
                "ratio_huge": 0.85,
                "rss_mb_small": 100.0,
                "rss_mb_large": 120.5,
                "rss_ratio_huge": 1.1,
            }
        },
        "log": {
            "deposits": {
                "c16_log": {"deposits_per_s": 7600.0},
                "c16_no_log": {"deposits_per_s": 8000.0},
                "ratio": 0.95,
            }
        },
        "capacity": {
            "capacity_channels": 150_000,
            "relay_cores_at_target": 0.5,
            "relay_cores_at_target_unpaced": 0.7,
        },
        "synapse": {"c16": {"sends_per_s": 50.0, "p50_ms": 300.0, "p99_ms": 600.0}},
        "nats": {"c16": {"publishes_per_s": 12000.0, "p50_ms": 1.3, "p99_ms": 3.0}},
        "gpg": {"round_trips_per_s": 60.0, "ms_per_round_trip": 16.7},
    }
    data.update(overrides)
    return {name: outcome("ok", data=value) for name, value in data.items()}


def test_all_ratios_computed_and_met() -> None:
    ratios = compute_ratios(figures())
    assert set(ratios) == set(RATIO_KEYS)
    assert ratios["relay_vs_synapse"]["value"] == pytest.approx(160.0)
    assert ratios["relay_vs_bare"]["value"] == pytest.approx(0.8)
    assert ratios["relay_vs_nats"]["value"] == pytest.approx(8000 / 12000, rel=1e-3)
    assert ratios["client_vs_gpg"]["value"] == pytest.approx(50.0)
    assert ratios["scale_1e6_vs_1e4"]["value"] == pytest.approx(0.9)
    assert ratios["relay_rss_mb_1e6"]["value"] == pytest.approx(120.5)
    assert ratios["log_vs_no_log"]["value"] == pytest.approx(0.95)
    assert ratios["batch_vs_nats"]["value"] == pytest.approx(13_000 / 12_000, rel=1e-3)
    assert ratios["client_2of3_vs_2of2"]["value"] == pytest.approx(2500 / 3000, rel=1e-3)
    assert ratios["rss_1e7_vs_1e4"]["value"] == pytest.approx(1.1)
    assert ratios["pg_workers4_vs_1"]["value"] == pytest.approx(2.0)
    assert ratios["capacity_channels"]["value"] == pytest.approx(150_000)
    assert ratios["capacity_relay_cores"]["value"] == pytest.approx(0.5)
    assert ratios["capacity_relay_cores_unpaced"]["value"] == pytest.approx(0.7)
    reported = {"scale_1e7_vs_1e4", "relay_rss_mb_1e6", "capacity_relay_cores_unpaced"}
    for key in set(RATIO_KEYS) - reported:
        assert ratios[key]["met"] is True, key
        assert ratios[key]["reason"] is None
    for key in reported:
        assert ratios[key]["goal"] is None
        assert ratios[key]["met"] is None
        assert ratios[key]["value"] is not None


def test_goal_not_met_and_boundary() -> None:
    outs = figures(
        gpg={"round_trips_per_s": 200.0},  # 3000 / 200 = 15 < 30
        nats={"c16": {"publishes_per_s": 16000.0}},  # 8000 / 16000 = 0.5, exactly the goal
    )
    ratios = compute_ratios(outs)
    assert ratios["client_vs_gpg"]["value"] == pytest.approx(15.0)
    assert ratios["client_vs_gpg"]["met"] is False
    assert ratios["client_vs_gpg"]["vs_goal"] == pytest.approx(0.5)
    assert ratios["relay_vs_nats"]["met"] is True
    bare = {"c16": {"requests_per_s": 8000 / 0.69}}
    ratios = compute_ratios(figures(relay={**figures()["relay"]["data"], "bare": bare}))
    assert ratios["relay_vs_bare"]["met"] is False


def test_goals_to_stay_under() -> None:
    """A figure that must stay under its goal is met at the goal and not above it."""
    at = compute_ratios(
        figures(capacity={"capacity_channels": 10**5, "relay_cores_at_target": 0.8})
    )
    assert at["capacity_relay_cores"]["met"] is True
    assert at["capacity_relay_cores"]["op"] == "<="
    assert at["capacity_channels"]["met"] is True  # exactly the goal, which must be reached
    over = compute_ratios(
        figures(capacity={"capacity_channels": 75_000, "relay_cores_at_target": 1.05})
    )
    assert over["capacity_relay_cores"]["met"] is False
    assert over["capacity_relay_cores"]["vs_goal"] == pytest.approx(1.31)
    assert over["capacity_channels"]["met"] is False
    scale = dict(figures()["store_scale"]["data"]["sqlite"], rss_ratio_huge=1.25)
    ratios = compute_ratios(figures(store_scale={"sqlite": scale}))
    assert ratios["rss_1e7_vs_1e4"]["met"] is False
    rows = {row[0]: row for row in harness.ratio_rows(ratios)}
    assert rows["rss_1e7_vs_1e4"][2:4] == ("<= 1.2", "NOT met")
    assert rows["capacity_channels"][1] == "150,000 channels"


def test_scale_figures_name_the_sizes_they_were_measured_at() -> None:
    scale = dict(figures()["store_scale"]["data"]["sqlite"], small_n=1000, huge_n=10**5)
    ratios = compute_ratios(figures(store_scale={"sqlite": scale}))
    assert ratios["rss_1e7_vs_1e4"]["note"] == "measured at 100000 vs 1000 cells stored"
    assert ratios["scale_1e6_vs_1e4"]["sizes"] == [1000, 10**6]
    assert "note" not in compute_ratios(figures())["rss_1e7_vs_1e4"]


def test_missing_module_gives_null_with_reason() -> None:
    rec = run_one(Bench("relay", "bench.no_such_module_here", "ours", "x"), quick=True)
    assert rec["status"] == "missing"
    outs = figures()
    outs["relay"] = rec
    ratios = compute_ratios(outs)
    for key in ("relay_vs_synapse", "relay_vs_bare", "relay_vs_nats"):
        assert ratios[key]["value"] is None
        assert ratios[key]["met"] is None
        assert "relay missing" in ratios[key]["reason"]
        assert "bench.no_such_module_here" in ratios[key]["reason"]
    assert ratios["client_vs_gpg"]["met"] is True  # the others still computed


def test_skipped_failed_and_not_run() -> None:
    outs = figures()
    outs["synapse"] = classify("synapse", {"skipped": "pip install failed"}, 1.0)
    outs["gpg"] = outcome("failed", reason="gpg.run raised RuntimeError: boom")
    outs["store_scale"] = outcome("not run", reason="not selected with --only")
    ratios = compute_ratios(outs)
    assert "pip install failed" in ratios["relay_vs_synapse"]["reason"]
    assert "boom" in ratios["client_vs_gpg"]["reason"]
    assert "not selected" in ratios["scale_1e6_vs_1e4"]["reason"]
    assert ratios["relay_vs_bare"]["met"] is True


def test_lookup_reasons() -> None:
    outs = figures()
    assert lookup(outs, ("relay", "postgres", "c16", "deposits_per_s"))[1].startswith(
        "relay.postgres skipped"
    )
    assert "has no figure" in lookup(outs, ("relay", "sqlite", "c32", "deposits_per_s"))[1]
    assert lookup(outs, ("nope", "x"))[1] == "nope not run"
    outs = figures(gpg={"round_trips_per_s": float("nan")})
    assert compute_ratios(outs)["client_vs_gpg"]["value"] is None
    outs = figures(gpg={"round_trips_per_s": 0})
    assert compute_ratios(outs)["client_vs_gpg"]["reason"] == "denominator is zero"


def test_json_line_is_one_line_with_every_key() -> None:
    outs = figures()
    outs["relay"] = outcome("missing", reason="module bench.relay is not there yet")
    line = final_json_line(compute_ratios(outs))
    assert "\n" not in line
    parsed = json.loads(line)
    assert list(parsed) == list(RATIO_KEYS)
    assert parsed["relay_vs_bare"]["value"] is None
    assert parsed["relay_vs_bare"]["reason"]
    assert parsed["client_vs_gpg"]["met"] is True
    assert parsed["client_vs_gpg"]["goal"] == 30


def test_plain_table_lists_figures_and_goals() -> None:
    outs = figures()
    text = render_plain(outs, compute_ratios(outs))
    assert "relay_vs_synapse" in text and ">= 100" in text
    assert "sqlite.c16.deposits_per_s" in text
    assert "numerator needs >= 5,000" in text  # 100 x Synapse's 50 sends/s
    assert "latency_cdf_ms" not in text


def test_parse_only() -> None:
    assert parse_only(None) == list(harness.BENCH_NAMES)
    assert parse_only("nats, synapse,GPG") == ["gpg", "nats", "synapse"]
    assert parse_only("scale") == ["store_scale"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        parse_only("nats,bogus")


def test_main_last_line_is_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = figures()

    def module(name: str, result: Any) -> str:
        mod = types.ModuleType(name)

        def run(quick: bool) -> Any:
            assert quick is True
            if isinstance(result, Exception):
                raise result
            return result

        mod.run = run  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, mod)
        return name

    async def async_gpg(quick: bool) -> dict[str, Any]:
        return dict(fake["gpg"]["data"])

    gpg_mod = types.ModuleType("fakebench_gpg")
    gpg_mod.run = async_gpg  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fakebench_gpg", gpg_mod)
    benches = (
        Bench("gpg", "fakebench_gpg", "peer", "gpg"),
        Bench("protocol", module("fakebench_protocol", fake["protocol"]["data"]), "ours", "p"),
        Bench("nats", module("fakebench_nats", RuntimeError("server gone")), "peer", "n"),
        Bench("relay", module("fakebench_relay", fake["relay"]["data"]), "ours", "r"),
        Bench("synapse", module("fakebench_synapse", {"skipped": "no venv"}), "peer", "s"),
        Bench("store_scale", "fakebench_absent_store_scale", "ours", "st"),
    )
    monkeypatch.setattr(harness, "BENCHES", benches)
    monkeypatch.setattr(harness, "RESULTS_DIR", tmp_path)
    assert harness.main(["--quick", "--no-plots"]) == 0
    out = capsys.readouterr().out.rstrip("\n").splitlines()
    parsed = json.loads(out[-1])
    assert set(parsed) == set(RATIO_KEYS)
    assert parsed["client_vs_gpg"]["met"] is True
    assert parsed["relay_vs_bare"]["met"] is True
    assert "server gone" in parsed["relay_vs_nats"]["reason"]
    assert "no venv" in parsed["relay_vs_synapse"]["reason"]
    assert "missing" in parsed["scale_1e6_vs_1e4"]["reason"]
    assert any("store_scale: MISSING" in line for line in out)
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert saved["ratios"]["client_vs_gpg"]["value"] == pytest.approx(50.0)
    assert saved["benches"]["nats"]["status"] == "failed"


def test_plots_from_fabricated_results(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench.plots import make_plots

    outs = figures()
    outs["nats"]["data"]["c16"]["latency_cdf_ms"] = [[0, 0.5], [50, 1.3], [99, 3.0], [100, 4.0]]
    doc = {"meta": {"mode": "quick", "date": "2026-01-01"}, "benches": outs}
    doc["ratios"] = compute_ratios(outs)
    made = {p.name for p in make_plots(doc, tmp_path)}
    assert {"throughput.png", "latency.png", "latency_cdf.png", "ratios.png"} <= made
