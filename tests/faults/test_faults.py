"""The fault harness's short form: one trial of each fault (``make faults`` runs 100).

Each trial must lose, duplicate and reorder nothing that was acknowledged, and
once the faults stop every message must be receipted and every outbox empty.
The checker itself is tested first, on device states made to be wrong.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults import pgcluster
from tests.faults.harness import FAULTS, Fixture, Outcome, Trial, applies

pytestmark = pytest.mark.slow

CH = "aa" * 16


def _private_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="bc-faults-"))
    root.chmod(0o755)  # the private cluster may run as the postgres user
    return root


@pytest.fixture(scope="module")
def sqlite_missions() -> Iterator[Fixture]:
    root = _private_root()
    fx = Fixture(root / "sqlite", "sqlite")
    yield fx
    fx.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_missions() -> Iterator[Fixture]:
    why = pgcluster.unavailable()
    if why:
        pytest.skip(f"no private PostgreSQL cluster: {why}")
    root = _private_root()
    fx = Fixture(root / "postgres", "postgres")
    yield fx
    fx.close()
    shutil.rmtree(root, ignore_errors=True)


def _assert_nothing_lost(o: Outcome) -> None:
    assert o.error == "", o.error
    assert o.acknowledged > 0, "no message was acknowledged: the trial tested nothing"
    assert o.events > 0, "the fault never struck"
    assert (o.lost, o.duplicated, o.out_of_order) == (0, 0, 0), o
    # Once the faults stop, everything completes: receipts back, outboxes empty.
    assert (o.unreceipted, o.outbox_left, o.stuck_drafts) == (0, 0, 0), o


@pytest.mark.parametrize("fault", [f for f in FAULTS if applies(f, "sqlite")])
def test_nothing_acknowledged_is_lost_on_sqlite(sqlite_missions: Fixture, fault: str) -> None:
    _assert_nothing_lost(Trial(sqlite_missions, fault, seed=int.from_bytes(os.urandom(3))).run())


@pytest.mark.postgres
@pytest.mark.parametrize("fault", ["relay-kill", "db-restart", "disk-full"])
def test_nothing_acknowledged_is_lost_on_postgres(postgres_missions: Fixture, fault: str) -> None:
    _assert_nothing_lost(Trial(postgres_missions, fault, seed=int.from_bytes(os.urandom(3))).run())


# -- the checker, on states made to be wrong -------------------------------------------


def _state(drafts: list[tuple[int, str]], inbox: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "drafts": [{"channel": CH, "seq": s, "state": st} for s, st in drafts],
        "inbox": [{"channel": CH, "seq": s, "round": r, "id": f"{s}-{r}"} for s, r in inbox],
        "outbox": 0,
        "alarms": [],
    }


def _checked(states: dict[str, dict[str, Any]]) -> Outcome:
    trial = Trial.__new__(Trial)
    trial.outcome = Outcome("test", "none", 0)
    trial._states = lambda devices: states  # type: ignore[method-assign]
    trial._check({})
    return trial.outcome


def test_the_checker_counts_a_lost_a_duplicated_and_a_reordered_message() -> None:
    sent = _state([(1, "delivered"), (2, "delivered"), (3, "queued")], [])
    fine = _state([], [(1, 5), (2, 6), (3, 6)])
    assert _checked({"ri": sent, "han": sent, "smith": fine, "jones": fine}) == Outcome(
        "test", "none", 0, acknowledged=3, unreceipted=1
    )
    lost = _state([], [(1, 5), (3, 6)])
    twice = _state([], [(1, 5), (2, 6), (2, 7), (3, 7)])
    reordered = _state([], [(1, 5), (2, 8), (3, 6)])
    phantom = _state([], [(1, 5), (2, 6), (3, 6), (4, 9)])
    assert _checked({"ri": sent, "han": sent, "smith": lost, "jones": fine}).lost == 1
    assert _checked({"ri": sent, "han": sent, "smith": twice, "jones": fine}).duplicated == 1
    assert _checked({"ri": sent, "han": sent, "smith": reordered, "jones": fine}).out_of_order == 1
    assert _checked({"ri": sent, "han": sent, "smith": fine, "jones": phantom}).duplicated == 1
    # A draft still waiting for its co-signature is not acknowledged: not lost, but stuck.
    waiting = _state([(1, "delivered"), (2, "delivered"), (3, "queued"), (0, "sealed")], [])
    stuck = _checked({"ri": waiting, "han": sent, "smith": fine, "jones": fine})
    assert (stuck.lost, stuck.stuck_drafts) == (0, 1)
