"""The observer benchmark records what it says it records (a short run, a real relay).

No figure is asserted here: only that the tap, the operator's view and the
labels are what the benchmark's analysis takes them to be.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import observer  # noqa: E402

ROUNDS = 24
CELL = observer.CELL_SIZE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recording() -> observer.Recording:
    import asyncio

    return asyncio.run(observer.simulate(ROUNDS, missions=2, seed=7))


def _by_device_round(rec: observer.Recording) -> dict[tuple[str, int], list[observer.Exchange]]:
    out: dict[tuple[str, int], list[observer.Exchange]] = {}
    for ex in rec.exchanges:
        out.setdefault((ex.device, ex.round), []).append(ex)
    return out


def test_the_tap_counts_exactly_the_requests_each_device_made(
    recording: observer.Recording,
) -> None:
    seen = _by_device_round(recording)
    assert recording.reported, "no device reported a round"
    for (device, r), made in recording.reported.items():
        assert len(seen.get((device, r), [])) == made, (device, r)
    # Nothing went past the tap in a round no device reported (set-up is round -1).
    assert {k for k in seen if k[1] >= 0} == set(recording.reported)
    # Every device took part from its first round to the last.
    rounds = Counter(device for device, _ in recording.reported)
    assert rounds["m0-a"] == rounds["m1-b"] == ROUNDS
    assert set(rounds) == set(recording.mission_of)


def test_each_device_talks_to_its_own_tenant_only(recording: observer.Recording) -> None:
    for ex in recording.exchanges:
        if ex.round < 0:
            continue
        assert ex.method == "POST" and ex.status == 200
        if ex.path != "/v1/batch/deposit":
            own = f"/v1/tenants/{recording.tenant_of[ex.device]}"
            assert ex.path == f"{own}/batch/fetch"
        assert 0 <= ex.offset < 1 and ex.wall <= ex.wall_done


def test_bytes_on_the_wire_exceed_the_cells_they_carry(recording: observer.Recording) -> None:
    seen = _by_device_round(recording)
    for key, cells in recording.cells_per_round.items():
        own = (cells.get("cells_deposited", 0) + cells.get("cells_fetched", 0)) * CELL
        assert sum(ex.bytes for ex in seen[key]) > own > 0, key
    for device, parts in recording.breakdown.items():
        wire = sum(ex.bytes for ex in recording.exchanges if ex.device == device and ex.round >= 0)
        assert sum(parts.values()) == wire, device


def test_the_operator_view_matches_the_tap(recording: observer.Recording) -> None:
    assert len(recording.operator) == ROUNDS
    deposited = Counter()
    for (_, r), cells in recording.cells_per_round.items():
        deposited[r] += cells.get("cells_deposited", 0)
    batch_routes = Counter()
    for ex in recording.exchanges:
        if ex.round >= 0:
            route = {"/v1/batch/deposit": "batch_deposit"}.get(ex.path, "batch_fetch")
            batch_routes[(ex.round, route)] += 1
    for r, snap in enumerate(recording.operator):
        # Every cell deposited in the round is a new row, of a lane the devices named.
        assert len(snap["cells"]) == deposited[r], r
        assert all(bytes(row[6]) in recording.lanes for row in snap["cells"])
        assert {"cells", "tenants", "log_leaves"} <= set(snap["counts"])
        for route in ("batch_deposit", "batch_fetch"):
            counted = batch_routes[(r, route)]
            metric = f'backchannel_relay_requests_total{{route="{route}",status="200"}}'
            assert snap["metrics"].get(metric, 0) == counted, (r, route)
            assert snap["log"]["access"].get(f"POST {route} 200", 0) == counted, (r, route)
    assert recording.operator[-1]["counts"]["cells"] == sum(deposited.values())


def test_rounds_are_labelled_both_real_and_cover(recording: observer.Recording) -> None:
    assert len(recording.labels) == ROUNDS
    labels = [v for lab in recording.labels for v in lab.values()]
    assert True in labels and False in labels
    assert any("paired" in text for _, text in recording.events)
    assert "m0-c" in recording.mission_of  # the roster change brought a third officer


def test_requests_and_bytes_figures_come_from_the_records(recording: observer.Recording) -> None:
    fig = observer.traffic([recording])
    req = fig["requests_per_device_round"]
    assert req["tap_equals_devices_count"] and req["device_rounds_checked"] == len(
        recording.reported
    )
    assert sum(req["real"].values()) + sum(req["cover"].values()) == len(recording.reported)
    assert fig["bytes_per_device_per_day"] > fig["cell_bytes_per_device_per_day"] > 0
    assert fig["wire_over_cells"] > 1


def test_wilson_interval() -> None:
    lo, hi = observer.wilson(50, 100)
    assert lo < 0.5 < hi and round(hi - lo, 3) == 0.192
    assert observer.wilson(0, 10)[0] == 0.0


def test_a_contacts_device_makes_the_exchange_an_officers_device_makes(
    recording: observer.Recording,
) -> None:
    # A Track II contact (one person, one device, a deniable channel) keeps the same
    # schedule: the tap sees from him an exchange that officers' devices also make.
    assert recording.mission_of["c0-a"] not in {recording.mission_of["m0-a"],
                                                 recording.mission_of["m1-a"]}  # fmt: skip
    assert any("paired" in text for _, text in recording.events)
    t2 = observer.track_two([recording])
    assert t2["contact_device_rounds"] == ROUNDS
    assert t2["contact_rounds_in_an_officers_shape"] == ROUNDS
    # What the relay can still count: one device fetches from the contact's tenant.
    assert t2["devices_per_tenant"]["contact"] == {1: 1}


def _views_of_two_devices(rounds: int) -> list[list[list[observer.CellView]]]:
    """One world, one tenant: a device with one lane and a device with three.

    Each cell's view names its device (its size), never its lane.
    """
    lanes = [("solo", b"s")] + [("multi", bytes([i])) for i in range(3)]
    return [
        [
            [
                ("t", (100.0 if dev == "solo" else 200.0, float(r)), (dev, lane))
                for dev, lane in lanes
            ]
            for r in range(rounds)
        ]
    ]


def _pairs(
    within_device: bool,
) -> list[tuple[observer.CellView, observer.CellView, bool, int, int]]:
    import random

    views = _views_of_two_devices(400)
    halves = {(0, b): 0 for b in range(400 // 50 + 1)}
    return observer.draw_pairs(
        views, halves, 50, random.Random(3), 0, 4000, within_device=within_device
    )


def test_linking_within_a_device_draws_its_own_lanes_at_even_odds() -> None:
    pairs = _pairs(within_device=True)
    assert len(pairs) == 4000
    for a, b, same, _, apart in pairs:
        # Both cells from one device, and never from the device with one lane:
        # it has no other lane to pair with, so it would only give pairs of one lane.
        assert a[2][0] == b[2][0] == "multi"
        assert (a[2] == b[2]) == same and 1 <= apart <= 100
    assert 0.46 < sum(p[2] for p in pairs) / len(pairs) < 0.54


def test_linking_across_a_tenant_lets_the_device_tell_the_lane() -> None:
    pairs = _pairs(within_device=False)
    assert len(pairs) == 4000
    assert all((a[2] == b[2]) == same for a, b, same, _, _ in pairs)
    # A pair of two devices' cells is never of one lane: the device (here the
    # size) answers for those pairs, which is why the tenant-wide figure is
    # above chance while the device-wide one is not.
    mixed = [same for a, b, same, _, _ in pairs if a[2][0] != b[2][0]]
    assert mixed and not any(mixed)
