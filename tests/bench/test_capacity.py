"""bench.capacity's bookkeeping: the unpaced run's target level lands beside the deployed one's."""

from __future__ import annotations

import pytest
from bench.capacity import TARGET_CHANNELS, with_unpaced
from bench.relay import _env


def test_the_unpaced_target_level_is_reported_beside_the_paced_figures() -> None:
    paced = {"capacity_channels": 200_000, "relay_cores_at_target": 0.6, "levels": {}}
    level = {"relay_cpu_s": 27.0, "seconds": 30.0, "held": True}
    unpaced = {"levels": {str(TARGET_CHANNELS): level}, "relay_cores_at_target": 0.9}
    out = with_unpaced(paced, unpaced)
    assert out["relay_cores_at_target"] == 0.6  # the deployed relay's figure stays the one judged
    assert out["relay_cores_at_target_unpaced"] == 0.9
    assert out["unpaced_at_target"] is level
    # An unpaced run that never reached the target adds nothing.
    assert "relay_cores_at_target_unpaced" not in with_unpaced({}, {"levels": {"25000": level}})


def test_closed_loop_benches_run_the_relay_unpaced_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKCHANNEL_RELAY_LOG_INTERVAL_MS", "1000")
    assert _env()["BACKCHANNEL_RELAY_LOG_INTERVAL_MS"] == "0"
