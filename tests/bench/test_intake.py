"""The short form of ``python -m bench.intake``: behaviour, not speed.

A second of each phase: the official load loses nothing, the flood at the
relay's intake rate is stored, and ten times that rate meets the relay-wide
limit (429s). The figures themselves are in docs/benchmarks.md.
"""

from __future__ import annotations

from bench.intake import INTAKE_RATE, flood


def test_a_short_flood_is_limited_and_the_official_load_loses_nothing() -> None:
    result = flood(channels=2000, seconds=1.5, pairs=1, bodies_n=400)
    assert result["official_errors"] == 0
    phases = {p["phase"]: p for p in result["phases"]}
    assert set(phases) == {"idle", "flood", "over"}
    at_rate = phases["flood"]["flood"]["statuses"]
    over = phases["over"]["flood"]["statuses"]
    assert at_rate.get("201", 0) > 0 and "429" not in at_rate
    # Ten times the rate: the relay-wide limit refuses most of it, and stores at most
    # about its rate (plus its burst) over the phase.
    assert over.get("429", 0) > over.get("201", 0) + over.get("200", 0)
    assert over.get("201", 0) + over.get("200", 0) <= INTAKE_RATE * 1.5 + 200 + 10
    for p in result["phases"]:
        assert p["official"]["deposit_per_s"] > 0 and not p["official"]["errors"]
