"""A relay that is down while a message is on its way: nothing lost, nothing doubled.

Each mission receives at its own relay (New York at relay A, Washington at
relay B), so a message from New York is deposited at B. Two outages:

1. A is down when Officer Ri's co-sign request should leave: ``sync`` exits 3
   and reports the cells waiting; once A is back, the request goes out.
2. B is down when the co-signed message should leave: its cells wait on Ri's
   device (``waiting`` in ``sync --json``, again exit 3; retries add none), and
   once B is back they are deposited; Washington receives the message exactly
   once and New York gets exactly one receipt.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.cli.rounds import EXIT_RELAY_DOWN
from tests.e2e.conftest import (
    OPEN_REGISTRATION,
    Missions,
    Officer,
    base_env,
    set_up_missions,
)
from tests.relay.procs import RelayProcess

DEAD_RELAY = "http://127.0.0.1:9"  # nothing listens there


class Relay:
    """A relay process that can be stopped and started again on the same port and database."""

    def __init__(self, db: Path) -> None:
        self.proc = RelayProcess(f"sqlite:///{db}", OPEN_REGISTRATION).start()
        self.port, self.url = self.proc.port, self.proc.base_url

    def stop(self) -> None:
        assert self.proc.stopped_cleanly()

    def start(self) -> None:
        self.proc = RelayProcess(self.proc.db_url, OPEN_REGISTRATION)
        self.proc.port, self.proc.base_url = self.port, self.url
        self.proc.start()


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[tuple[Relay, Relay]]:
    a, b = Relay(tmp_path / "a.db"), Relay(tmp_path / "b.db")
    try:
        yield a, b
    finally:
        a.proc.stop()
        b.proc.stop()


def sync_while_down(officer: Officer, rounds: int) -> dict[str, object]:
    r = officer.run("--json", "sync", "--rounds", str(rounds))
    assert r.code == EXIT_RELAY_DOWN, r.err
    report: dict[str, object] = r.json
    assert report["relay_error"]
    return report


def test_cells_wait_for_the_relay_and_arrive_once(
    tmp_path: Path, relays: tuple[Relay, Relay]
) -> None:
    a, b = relays
    m: Missions = set_up_missions(tmp_path / "homes", a.url, b.url)
    ri, han, smith, jones = m.ri, m.han, m.smith, m.jones

    # 1. Relay A (New York's mailbox) is down: the co-sign request waits on Ri's device.
    a.stop()
    draft = ri.json("compose", "Washington", "--text", "Talks resume on Monday.")
    report = sync_while_down(ri, 1)
    waiting = report["waiting"]
    assert isinstance(waiting, int) and waiting > 0
    assert ri.json("status")["waiting_cells"] == waiting
    a.start()
    assert ri.settle()["waiting"] == 0
    han.settle()
    [request] = han.json("cosign", "list")["requests"]
    han.ok("cosign", "approve", request["request_id"][:8])
    han.settle()

    # 2. Relay B (Washington's mailbox) is down when the co-signed message leaves.
    b.stop()
    # The co-signature arrives from A; the channel's cell for B waits (one per lane:
    # the rounds go on, and the lane's cell is tried again each round).
    report = sync_while_down(ri, 2)
    waiting = report["waiting"]
    assert isinstance(waiting, int) and waiting >= 1
    assert ri.json("drafts")["drafts"][0]["state"] == "queued"
    assert sync_while_down(ri, 3)["waiting"] == waiting  # retries add nothing
    b.start()
    assert ri.settle()["waiting"] == 0

    received = set()
    for o in (smith, jones):
        assert len(o.settle()["messages"]) == 1
        assert o.sync(2)["messages"] == []  # a second pass finds nothing new
        [item] = o.json("inbox")["messages"]
        received.add(item["message_id"])
    assert len(received) == 1

    smith.settle()  # the receipt rides in Washington's next cell
    assert ri.settle()["delivered"] == [1]
    assert ri.sync(1)["delivered"] == []
    [channel] = ri.json("status")["channels"]
    assert (channel["sent"], channel["delivered"], channel["alarms"]) == (1, 1, [])
    [sent] = ri.json("drafts")["drafts"]
    assert (sent["draft_id"], sent["state"]) == (draft["draft_id"], "delivered")
    assert [i["message_id"] for i in smith.json("inbox")["messages"]] == list(received)


def test_run_keeps_the_schedule_while_the_relay_is_down(tmp_path: Path) -> None:
    """`run` keeps one round per interval whatever the relay does, and stops on Ctrl-C."""
    m = set_up_missions(tmp_path / "homes", DEAD_RELAY, DEAD_RELAY, register=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "backchannel.cli.main", "--home", str(m.ri.home),
         "--json", "run", "--interval", "0.2"],
        env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        second = proc.stdout.readline() if proc.stdout else ""
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    reports = [json.loads(line) for line in (first, second, *out.splitlines())]
    assert all(r["relay_error"] for r in reports)
    # A round per interval, relay or not: each lane's cell (the channel's, the
    # mailbox's to the colleague, the intake's answers) waits to be tried again;
    # nothing piles up.
    assert all(r["rounds"] == 1 for r in reports) and len(reports) >= 2
    assert [r["waiting"] for r in reports] == [3] * len(reports)
