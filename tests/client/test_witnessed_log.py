"""Devices hold the relay's log to the witnesses their mission's policy names.

Through a real relay and a real witness: the devices ask for the cosigned
checkpoint on the schedule, see the heads they hold covered, raise one alarm
when the witnesses stop vouching for them, and keep a proof when the relay
shows its witnesses another log than the one it shows them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from backchannel.client import demo
from backchannel.client.audit import verify_record
from backchannel.client.logchecks import QUERIES
from backchannel.client.service import Client
from backchannel.client.witnessing import CHECKPOINT_EVERY
from backchannel.crypto.notesig import Ed25519NoteKey
from backchannel.protocol.batch import QueryKind
from backchannel.protocol.channel import Policy
from backchannel.protocol.evidence import evidence_from_text, evidence_text, verify_misbehaviour
from backchannel.protocol.misbehaviour import SignedHead
from backchannel.protocol.note import (
    TYPE_COSIGNATURE_ED25519,
    Checkpoint,
    Note,
    Verifier,
    sign_checkpoint,
)
from backchannel.protocol.witnessing import WitnessRule
from backchannel.witness.service import Witness, create_witness_app
from backchannel.witness.state import WitnessState, create_keys
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay, adopt_policy

WITNESS_URL = "http://witness.test"
LAG = 600


class Bench:
    """A relay with one witness configured, the witness, and a clock both read."""

    def __init__(self, tmp: Path) -> None:
        self.now = [time.time()]
        directory = tmp / "witness"
        keys = create_keys(directory)
        state = WitnessState(directory)
        state.set_name("witness.test/w1")
        self.witness = Witness("witness.test/w1", keys, state, clock=lambda: int(self.now[0]))
        spec = f"{WITNESS_URL} " + " ".join(v.vkey() for v in self.witness.verifiers())
        self.relay = InProcessRelay(tmp / "relay", spec)
        self.service = self.relay.app.state.service

    def clock(self) -> float:
        return self.now[0]

    async def push(self) -> Note:
        transport = httpx.ASGITransport(app=create_witness_app(self.witness))
        async with httpx.AsyncClient(transport=transport) as client:
            note: Note = await self.service.checkpoints.push_once(client)
        return note

    def rule(self, needed: int = 1, *more: str) -> WitnessRule:
        vkeys = [v.vkey() for v in self.witness.verifiers()] + list(more)
        return WitnessRule.of_vkeys(vkeys, needed, LAG)


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = Bench(tmp_path)
    async with b.relay.app.router.lifespan_context(b.relay.app):
        b.witness.state.add_log(b.service.checkpoints.verifier().vkey())
        yield b


async def _mission(tmp: Path, bench: Bench) -> tuple[Client, Client]:
    ri, han = await demo.found(
        tmp, "New York", ("Ri", "Han"), RELAY_URL, bench.relay.factory(), "pw", FAST_KDF,
        bench.clock,
    )  # fmt: skip
    return ri, han


async def _checks(device: Client, times: int = 1) -> list[str]:
    """Enough rounds for ``times`` checkpoint queries; the alarms they raised."""
    alarms: list[str] = []
    for _ in range(times):
        alarms += (await device.sync(CHECKPOINT_EVERY)).alarms
    return alarms


def _witness_alarms(device: Client) -> list[str]:
    return [a for a in device.log.alarms() if "mission's witnesses" in a]


async def test_devices_see_their_heads_witnessed_and_one_alarm_when_the_witness_stops(
    tmp_path: Path, bench: Bench
) -> None:
    ri, han = await _mission(tmp_path, bench)
    await adopt_policy([ri, han], {Policy.RECORD}, witnesses=bench.rule())
    rule, watch = ri.witness_watch()
    assert rule.names == ("witness.test/w1",) and rule.needed == 1
    # The witness cosigns the log as it stands; the devices' next checks see their
    # heads covered by it.
    await bench.push()
    await _checks(ri)
    cosigned = Checkpoint.parse((await bench.service.checkpoints.served()).text)
    rule, watch = ri.witness_watch()
    assert watch.size == cosigned.size > 0 and watch.names == ("witness.test/w1",)
    assert watch.cosigned_at == int(bench.now[0]) and not watch.late
    assert ri.status()["witnesses"]["witnessed_size"] == cosigned.size
    # The witness goes quiet while the log grows: past the lag, one alarm.
    bench.now[0] += LAG - 60
    assert _witness_alarms(ri) == [] and await _checks(ri, 2) == []
    bench.now[0] += 120
    [line] = [a for a in await _checks(ri, 3) if "mission's witnesses" in a]
    assert "witness.test/w1" in line and "for " in line and "minutes" in line
    await _checks(ri, 3)
    assert len(_witness_alarms(ri)) == 1  # one lapse, one alarm
    assert ri.witness_watch()[1].late
    # The witness cosigns again: covered, and the watch is quiet again.
    await bench.push()
    await _checks(ri)
    rule, watch = ri.witness_watch()
    assert watch.size > cosigned.size and not watch.late
    assert ri.status()["witnesses"]["late"] is False


async def test_cosignatures_of_witnesses_the_policy_does_not_name_do_not_count(
    tmp_path: Path, bench: Bench
) -> None:
    """The relay's witness cosigns, but the mission asks for two witnesses: its own
    and another one that never cosigns. Nothing is witnessed; the lag raises the alarm."""
    ri, han = await _mission(tmp_path, bench)
    other = Ed25519NoteKey(os.urandom(32))
    absent = Verifier("elsewhere.example/w9", TYPE_COSIGNATURE_ED25519, other.public).vkey()
    await adopt_policy([ri, han], {Policy.RECORD}, witnesses=bench.rule(2, absent))
    await bench.push()
    await _checks(ri)
    assert ri.witness_watch()[1].size == 0
    bench.now[0] += LAG + 60
    await bench.push()
    await _checks(ri, 2)
    [line] = _witness_alarms(ri)
    assert "2 of the mission's witnesses" in line


async def test_a_relay_that_shows_its_witnesses_another_log_is_proved_to(
    tmp_path: Path, bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay keeps its log honest to the devices but hands out checkpoints of
    another root: at the size the device holds it is a proof at once, at another
    size the relay's own head at that size proves it one check later."""
    ri, han = await _mission(tmp_path, bench)
    checkpoints = bench.service.checkpoints
    store = bench.relay.store
    shift = [0]

    async def lying() -> Note:
        size = SignedHead.decode(await store.compact_head()).head.size - shift[0]
        cp = Checkpoint(checkpoints.origin, size, os.urandom(32))
        return sign_checkpoint(cp, checkpoints.origin, store.checkpoint_key())

    monkeypatch.setattr(checkpoints, "served", lying)
    await ri.settle()
    await _checks(ri)
    [blob] = ri.log.evidence()
    summary = verify_misbehaviour(evidence_from_text(evidence_text(blob)))
    assert summary.startswith("checkpoint fork: relay")
    await _checks(ri, 3)  # the relay goes on lying: still one proof, one incident
    assert len(ri.log.evidence()) == 1
    assert [i.kind for i in ri.log.incidents()] == ["checkpoint fork"]
    # The proof goes into the record for a review board, which checks it there.
    record = json.loads(ri.export_record())
    assert record["relay_evidence"] == [blob.hex()]
    assert verify_record(json.dumps(record)).problems == []
    record["relay_evidence"][0] = blob[:-40].hex() + bytes(40).hex()
    assert verify_record(json.dumps(record)).problems == [
        "proof of relay misbehaviour 1: does not hold"
    ]
    # Han's device is asked about a checkpoint two entries behind its head.
    shift[0] = 2
    for _ in range(CHECKPOINT_EVERY):
        alarms = (await han.sync(1)).alarms
        if alarms:
            break
    assert any("does not square" in a for a in alarms)
    assert han.log.evidence() == []
    await han.sync(1)  # its next check asks the relay for its own head at that size
    [blob] = han.log.evidence()
    assert verify_misbehaviour(blob).startswith("checkpoint fork: relay")


async def test_a_checkpoint_not_signed_by_the_relays_key_raises_an_alarm(
    tmp_path: Path, bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    ri, han = await _mission(tmp_path, bench)
    await adopt_policy([ri, han], {Policy.RECORD}, witnesses=bench.rule())
    stranger = Ed25519NoteKey(os.urandom(32))
    checkpoints = bench.service.checkpoints
    honest: Callable[[], object] = checkpoints.current

    async def forged() -> Note:
        cp = Checkpoint.parse((await honest()).text)  # type: ignore[attr-defined]
        return sign_checkpoint(cp, checkpoints.origin, stranger)

    monkeypatch.setattr(checkpoints, "served", forged)
    alarms = await _checks(ri)
    assert any("checkpoint does not verify" in a for a in alarms)
    assert ri.witness_watch()[1].size == 0 and ri.log.evidence() == []


async def test_without_witnesses_in_the_policy_the_relays_own_checkpoint_is_checked(
    tmp_path: Path,
) -> None:
    """A mission that names no witness still checks the relay's checkpoint against the
    head it holds, and raises nothing."""
    relay = InProcessRelay(tmp_path / "relay")
    async with relay.app.router.lifespan_context(relay.app):
        ri, _ = await demo.found(
            tmp_path, "New York", ("Ri", "Han"), RELAY_URL, relay.factory(), "pw", FAST_KDF
        )
        alarms = await _checks(ri, 2)
        rule, watch = ri.witness_watch()
        assert not rule.asked and watch.checked_at > 0 and watch.size > 0
        assert alarms == [] and ri.log.alarms() == []


async def test_every_tenth_fetch_asks_for_the_checkpoint_and_a_fetch_without_queries_does_not_count(
    tmp_path: Path, bench: Bench
) -> None:
    """The checkpoint's cadence counts the fetches that carry the round's queries;
    a fetch from a relay being left (no queries) leaves it as it is."""
    ri, _ = await _mission(tmp_path, bench)
    assert all(ri.fetch_plan(queries=False).queries == () for _ in range(3))
    asked = [ri.fetch_plan().queries for _ in range(2 * CHECKPOINT_EVERY + 1)]
    checkpoints = [i for i, qs in enumerate(asked) if qs[-1].kind is QueryKind.CHECKPOINT]
    assert checkpoints == [0, CHECKPOINT_EVERY, 2 * CHECKPOINT_EVERY]
    assert all(len(qs) == QUERIES for qs in asked)
