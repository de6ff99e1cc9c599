"""A relay that lies is caught within one round, and leaves a proof anyone can check.

Each test runs two missions (New York and Washington, two officers each) over
a relay that cheats in one way (``tests/client/evil_relay.py``), one round at
a time: New York's runner deposits its round, then Washington's runner and its
second officer fetch theirs. Each lie must raise an alarm within one round of
the first moment it shows, and the kept proof of misbehaviour must verify with
nothing but its own bytes (``verify_misbehaviour``, the offline check behind
``backchannel evidence verify``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from backchannel.client import demo
from backchannel.client.relay_client import RelayClient
from backchannel.client.report import SyncReport
from backchannel.client.service import Client
from backchannel.protocol.batch import Query
from backchannel.protocol.evidence import (
    evidence_from_text,
    evidence_kind,
    evidence_text,
    verify_misbehaviour,
)
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.misbehaviour import DepositNote
from backchannel.protocol.payload import note
from backchannel.store import _log
from tests.client.conftest import FAST_KDF, RELAY_URL
from tests.client.evil_relay import FETCHES, Clock, ForkingRelay, LyingRelay, LyingStore

Mission = tuple[Client, Client]


async def _missions(tmp: Path, f_ny: object, f_dc: object, clock: Clock) -> tuple[Mission, Mission]:
    """Two missions whose devices share the relay's clock (no skew between them)."""
    ny = await demo.found(
        tmp,
        "New York",
        ("Ri", "Han"),
        RELAY_URL,
        f_ny,
        "pw",
        FAST_KDF,
        clock,  # type: ignore[arg-type]
    )
    dc = await demo.found(
        tmp,
        "Washington",
        ("Smith", "Jones"),
        RELAY_URL,
        f_dc,
        "pw",
        FAST_KDF,
        clock,  # type: ignore[arg-type]
    )
    await demo.pair(ny, dc)
    return ny, dc


async def round_reports(
    devices: tuple[Client, ...], clock: Clock, tick: int = 60
) -> list[SyncReport]:
    """One round of ``devices`` on the schedule: every one deposits, then every one
    fetches; their reports, none with a relay error."""
    clock.now += tick
    reports = [SyncReport() for _ in devices]
    for device, report in zip(devices, reports, strict=True):
        await device.deposit_phase(report)
    for device, report in zip(devices, reports, strict=True):
        await device.fetch_phase(report)
    for report in reports:
        assert report.relay_error is None, report.relay_error
    return reports


async def _round(ny: Mission, dc: Mission, clock: Clock, tick: int = 60) -> list[str]:
    """One round of both missions; the alarms raised, all devices together."""
    alarms: list[str] = []
    for report in await round_reports((*ny, *dc), clock, tick):
        alarms += report.alarms
    return alarms


def _aim(store: LyingStore, dc: Mission) -> None:
    """Point the liar at New York's channel cells into Washington's tenant."""
    smith = dc[0]
    ep = smith._endpoint(smith.channels()[0].channel_id)
    first = ep.next_recv_round
    store.plan.tenant = smith.mission().tenant_id
    store.plan.slots = {ep.slot_to_fetch(r) for r in range(first, first + 64)}


def _proofs(devices: Mission) -> list[bytes]:
    return [blob for d in devices for blob in d.relay_evidence()]


def _checked(blobs: list[bytes], kind: str) -> list[str]:
    """Each blob verifies offline; at least one proves ``kind``."""
    lines = [verify_misbehaviour(b) for b in blobs]
    assert kind in {evidence_kind(b) for b in blobs}, lines
    return lines


async def _quiet(ny: Mission, dc: Mission, clock: Clock, rounds: int = 3) -> None:
    for _ in range(rounds):
        assert await _round(ny, dc, clock) == []
    assert _proofs(ny) == [] and _proofs(dc) == []


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_honest_relay_gossip_raises_nothing(tmp_path: Path, clock: Clock) -> None:
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        await _quiet(ny, dc, clock, rounds=5)
        # The gossip went through: each runner names its deposits to the other.
        for runner in (ny[0], dc[0]):
            note = runner._get("log_notes", runner.channels()[0].channel_id, DepositNote)
            assert note is not None and note.round >= 4


async def test_a_dropped_cell_is_seen_at_once_and_proved_the_next_round(
    tmp_path: Path, clock: Clock
) -> None:
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        await _quiet(ny, dc, clock)
        _aim(relay.store, dc)
        relay.store.plan.drop = True  # New York's next cell to Washington vanishes
        await _round(ny, dc, clock)  # deposited, acknowledged, logged, never served
        alarms = await _round(ny, dc, clock)  # New York's next cell names the lost one
        assert any("a dropped cell" in a for a in alarms), alarms  # seen in that round
        assert not any("drop:" in a for a in alarms), alarms
        # Its fetch asked nothing about the lost cell yet: the next round's does.
        alarms = await _round(ny, dc, clock)
        assert any(a.startswith("relay log") and "drop:" in a for a in alarms), alarms
        lines = _checked(_proofs(dc), "drop")
        assert all("said at log size" in line for line in lines if line.startswith("drop"))
        # A proof is for publishing: it names no slot of the rounds still to come
        # (anyone who knew one could squat it). The receiver waits a while at the
        # dropped round itself (its peer deposits it again if the relay lost it in
        # a restore): that one slot the proof names, as it must.
        for device in dc:
            ep = device._endpoint(device.channels()[0].channel_id)
            dropped = ep.slot_to_fetch(ep.next_recv_round)
            assert any(dropped in blob for blob in _proofs(dc))
            future = [ep.slot_to_fetch(ep.next_recv_round + i) for i in range(1, 32)]
            assert not any(slot in blob for slot in future for blob in _proofs(dc))
        _verify_with_the_cli(tmp_path, _proofs(dc))
        # What the desk exports: one file per proof, named by its kind, holding the proof.
        for device in dc:
            files = device.evidence_files()
            assert [evidence_from_text(text) for _, text in files] == device.relay_evidence()
            assert all(name.startswith("relay-drop-") for name, _ in files)


def _verify_with_the_cli(tmp: Path, blobs: list[bytes]) -> None:
    """`backchannel evidence verify` holds each proof offline and refuses a doctored one."""
    files = []
    for i, blob in enumerate(blobs):
        files.append(tmp / f"proof-{i}.txt")
        files[-1].write_text(evidence_text(blob))
    doctored = bytearray(blobs[0])
    doctored[-40] ^= 1  # inside the entry's proofs
    files.append(tmp / "doctored.txt")
    files[-1].write_text(evidence_text(bytes(doctored)))
    env = {**os.environ, "BACKCHANNEL_HOME": str(tmp / "nobody")}  # no home is needed
    cmd = [sys.executable, "-m", "backchannel.cli.main", "--json", "evidence", "verify"]
    done = subprocess.run([*cmd, *map(str, files)], capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stderr
    results = json.loads(done.stdout)["results"]
    assert [r["holds"] for r in results] == [True] * len(blobs) + [False]
    done = subprocess.run([*cmd, *map(str, files[:-1])], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


async def _deliver(ny: Mission, dc: Mission, clock: Clock, store: LyingStore, text: str) -> int:
    """Send a co-signed message to Washington; the index of its first cell in the
    relay's history of deposits into Washington's tenant."""
    ri, han = ny
    ri.compose(ri.channel_for("Washington").channel_id, note(text))
    await ri.settle()
    await han.settle()
    [req] = han.cosign_requests()
    han.approve_cosign(req.request_id)
    await han.settle()
    await ri.settle()  # the co-signature comes back: the message is queued
    first: int | None = None
    for _ in range(4):
        before = len(store.plan.history)
        assert await _round(ny, dc, clock) == []
        first = before if first is None else first
        if dc[0].inbox():
            break
    assert [i.message_id for i in dc[0].inbox()] and first is not None
    return first


def _received(dc: Mission) -> tuple[int, int]:
    """What Washington holds: messages in the inbox, and the transcript's count."""
    smith = dc[0]
    channel = smith.channels()[0].channel_id
    return len(smith.inbox()), smith._endpoint(channel).transcript.received_seq


async def test_a_replayed_cell_is_caught_and_proved(tmp_path: Path, clock: Clock) -> None:
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        _aim(relay.store, dc)
        await _quiet(ny, dc, clock)
        message_cell = await _deliver(ny, dc, clock, relay.store, "meet on the 2nd")
        held = _received(dc)
        assert held[0] == 1
        relay.store.plan.replay_index = message_cell  # the message's cell, served again
        relay.store.plan.replay = True
        alarms = await _round(ny, dc, clock)
        assert any("decryption failed" in a for a in alarms), alarms  # the same round
        assert _received(dc) == held  # nothing taken twice
        # New York's next cell names the real one; the round after, the fetch's
        # queries prove the conflict.
        alarms = await _round(ny, dc, clock)
        alarms += await _round(ny, dc, clock)
        assert any("slot conflict:" in a for a in alarms), alarms
        _checked(_proofs(dc), "slot conflict")
        assert _received(dc) == held


async def test_two_reordered_cells_are_caught_and_proved(tmp_path: Path, clock: Clock) -> None:
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        _aim(relay.store, dc)
        await _quiet(ny, dc, clock)
        held = _received(dc)
        relay.store.plan.swap = True  # hold the next cell back, then swap it with the one after
        assert await _round(ny, dc, clock) == []  # a late cell is not yet a lie
        alarms = await _round(ny, dc, clock)  # both served, each in the other's slot
        assert sum("decryption failed" in a for a in alarms) >= 2, alarms  # neither opens
        assert _received(dc) == held
        alarms = await _round(ny, dc, clock)
        alarms += await _round(ny, dc, clock)
        assert any("slot conflict:" in a for a in alarms), alarms
        _checked(_proofs(dc), "slot conflict")


async def test_a_rewound_relay_is_proved(tmp_path: Path, clock: Clock) -> None:
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        await _quiet(ny, dc, clock, rounds=2)
        backup = relay.store.snapshot()
        await _quiet(ny, dc, clock, rounds=2)
        relay.restore(backup)  # the operator restores last round's backup
        alarms = await _round(ny, dc, clock)
        assert any("rewind:" in a for a in alarms), alarms
        _checked(_proofs(ny) + _proofs(dc), "rewind")
        # The relay goes on from the old copy: every round contradicts what the
        # devices pinned (a shorter log, then another log of the same size). One
        # incident is one proof and one alarm per device; later rounds count repeats.
        later = [a for _ in range(4) for a in await _round(ny, dc, clock)]
        assert not any("rewind:" in a or "fork:" in a for a in later), later
        for device in (*ny, *dc):
            assert len(device.relay_evidence()) <= 1
            lines = [a for a in device.relay_alarms() if "rewind:" in a or "fork:" in a]
            assert len(lines) == len(device.relay_evidence())
        incidents = [i for d in (*ny, *dc) for i in d.log.incidents()]
        assert incidents and all(i.kind == "rewind" for i in incidents)
        assert sum(i.repeats for i in incidents) >= 4


async def test_a_rewind_within_the_minute_is_proved_once_the_log_regrows(
    tmp_path: Path, clock: Clock
) -> None:
    """The relay is restored to a copy of the same minute: its shorter log bears the
    time of the longer one a device pinned, which proves nothing yet (an honest
    relay signed that shorter head too, earlier that minute). The device keeps
    asking for the relay's head at the size it pinned, and proves the fork in the
    round the log grows past that size again."""
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        await _quiet(ny, dc, clock, rounds=2)
        backup = relay.store.snapshot()
        assert await _round(ny, dc, clock, tick=0) == []
        ri = ny[0]
        report = SyncReport()  # Ri alone, once more: a size no full round lands on
        await ri.round(report)
        assert report.alarms == [] and report.relay_error is None
        pinned = ri._known_size(RELAY_URL)
        relay.restore(backup)
        # Only New York runs rounds from now: no gossip from Washington helps.
        alarms: list[str] = []
        sizes: list[int] = []
        for _ in range(8):
            for device in ny:
                report = SyncReport()
                await device.round(report)
                alarms += report.alarms
            sizes.append((await relay.store.log_head()).size)
            if len(sizes) == 1:
                # Nothing proves the shorter log a lie yet: the device asks for the
                # relay's head at the size it pinned in every round's check.
                assert sizes[0] < pinned and not ri.relay_evidence()
                assert any("no consistency proof" in a for a in alarms), alarms
                assert Query.head_at(pinned) in ri.fetch_plan().queries
            if sizes[-1] > pinned:
                break  # this round's deposits took the log past the pinned size
        else:
            raise AssertionError("the restored log never grew past the pinned size")
        assert any("fork:" in a for a in alarms), alarms
        _checked(ri.relay_evidence(), "fork")


async def test_a_fork_between_the_missions_is_proved_the_round_after_the_gossip(
    tmp_path: Path, clock: Clock
) -> None:
    relay = ForkingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(1), relay.factory(2), clock)
        await _quiet(ny, dc, clock)  # the two logs are equal so far
        await relay.fork(dc[0].mission().tenant_id)
        # Washington sees the second log this round and gossips its head in its
        # next cell to New York, whose devices ask for the proof in their next
        # round's fetch.
        assert await _round(ny, dc, clock) == []
        assert await _round(ny, dc, clock) == []
        alarms = await _round(ny, dc, clock)
        assert any("fork:" in a for a in alarms), alarms
        _checked(_proofs(ny) + _proofs(dc), "fork")
        # Each side's own view is self-consistent: only the gossip could tell.
        assert all("fork" in a or "not square" in a for a in alarms if a.startswith("relay"))


async def test_a_drop_inside_rounds_produced_together_is_detected(
    tmp_path: Path, clock: Clock
) -> None:
    """Cells produced in one sync carry the same note, so a drop among them may not
    be named by any note; it is still seen at once: the peer deposits its rounds in
    order, so a round called empty below one that is served was dropped."""
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        await _quiet(ny, dc, clock)
        _aim(relay.store, dc)
        relay.store.plan.drop = True
        clock.now += 180
        assert (await ny[0].sync(3)).relay_error is None  # three rounds at once
        report = await dc[0].sync(1)
        assert any("a dropped cell" in a for a in report.alarms), report.alarms


async def test_proofs_the_relay_withholds_for_a_while_are_checked_later(
    tmp_path: Path, clock: Clock
) -> None:
    """A relay that answers 503 to the requests that ask for proofs while it lies only
    delays the proof: the gossip waits in the vault and is checked at the next sync."""
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        await _quiet(ny, dc, clock)
        _aim(relay.store, dc)
        relay.store.plan.drop = True
        await _round(ny, dc, clock)
        relay.busy.add(FETCHES)
        clock.now += 60
        await ny[0].sync(1)
        report = await dc[0].sync(1)
        assert report.relay_error is not None and _proofs(dc) == []
        relay.busy.clear()
        report = await dc[0].settle()
        assert any("drop:" in a for a in report.alarms), report.alarms
        _checked(_proofs(dc), "drop")


async def test_a_relay_that_post_dates_what_it_signs_raises_an_alarm(
    tmp_path: Path, clock: Clock
) -> None:
    """Proofs of drops and conflicts rest on the relay's signed times; a relay that
    dates them ahead (to make a drop look like an expiry) is caught by the clock."""
    relay = LyingRelay(tmp_path / "relay", lambda: clock.now + 7200)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        alarms = await _round(ny, dc, clock)
        assert any("ahead of this device's clock" in a for a in alarms), alarms


async def test_a_malformed_consistency_proof_is_an_alarm_not_a_crash(
    tmp_path: Path, clock: Clock
) -> None:
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        await _quiet(ny, dc, clock, rounds=1)
        honest = relay.factory()
        served: list[int] = []

        def garbling(url: str, tenant: str | None, credential: str | None) -> RelayClient:
            client = honest(url, tenant, credential)

            def garble(call):  # type: ignore[no-untyped-def]
                async def garbled(*args, **kwargs):  # type: ignore[no-untyped-def]
                    answer = await call(*args, **kwargs)
                    if not answer.log.consistency:
                        return answer
                    served.append(TreeHead.decode(answer.log.signed_head[:49]).size)
                    return replace(answer, log=replace(answer.log, consistency=(b"short",)))

                return garbled

            client.batch_deposit = garble(client.batch_deposit)  # type: ignore[method-assign]
            client.batch_fetch = garble(client.batch_fetch)  # type: ignore[method-assign]
            return client

        smith = dc[0]
        smith._relay = garbling  # type: ignore[assignment]
        clock.now += 60
        await ny[0].sync(1)
        report = await smith.sync(1)
        assert served  # the garbled proof was asked for and used
        assert report.relay_error is None
        assert any("consistency proof" in a for a in report.alarms), report.alarms


async def test_a_relay_that_changed_its_key_is_said_to_have_changed_it(
    tmp_path: Path, clock: Clock
) -> None:
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        await _quiet(ny, dc, clock, rounds=1)
        relay.store._signer = _log.LogCache(_log.key_from_seeds(*_log.new_key_seeds()))
        alarms = await _round(ny, dc, clock)
        assert any("the relay's key changed" in a for a in alarms), alarms
