"""Faults on the round engine's path: each is survived, with an alarm where one is due.

* a device back after longer than the relay keeps cells catches up, with no
  false alarm of a dropped cell;
* a malformed or undecryptable mailbox object is set aside with an alarm and
  never stalls the objects behind it;
* a deposit refused with 409 raises an alarm instead of blocking the lane.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from backchannel.client import demo
from backchannel.client.report import SyncReport
from backchannel.client.service import Client
from backchannel.protocol import joint
from backchannel.protocol.payload import note
from tests.client.conftest import FAST_KDF, RELAY_URL
from tests.client.evil_relay import Clock, LyingRelay

Mission = tuple[Client, Client]


async def _missions(relay: LyingRelay, tmp: Path, clock: Clock) -> tuple[Mission, Mission]:
    f = relay.factory()
    ny = await demo.found(tmp, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF, clock)
    dc = await demo.found(
        tmp, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF, clock
    )
    await demo.pair(ny, dc)
    return ny, dc


async def _rounds(devices: tuple[Client, ...], clock: Clock, n: int) -> list[str]:
    """``n`` rounds of the clock, the devices in step; the alarms they raised."""
    alarms: list[str] = []
    for _ in range(n):
        clock.now += 60
        reports = [SyncReport() for _ in devices]
        for phase in ("deposit_phase", "fetch_phase"):
            for d, r in zip(devices, reports, strict=True):
                await getattr(d, phase)(r)
        for r in reports:
            assert r.relay_error is None, r.relay_error
            alarms += r.alarms
    return alarms


async def _rounds_until(
    devices: tuple[Client, ...], clock: Clock, done: Callable[[], object]
) -> list[str]:
    """Rounds until ``done()`` (at most 20); the alarms raised meanwhile."""
    alarms: list[str] = []
    for _ in range(20):
        alarms += await _rounds(devices, clock, 1)
        if done():
            break
    return alarms


async def _squat_next_mailbox_slot(relay: LyingRelay, sender: Client, recipient: Client) -> int:
    """Put random bytes in the next slot of ``sender``'s lane to ``recipient``; its position."""
    m = sender.mission()
    n = sender._counter(b"out" + recipient.officer.officer_id)
    slot = joint.mailbox_slot(m.secret, sender.officer.officer_id, recipient.officer.officer_id, n)
    await relay.store.deposit(m.tenant_id, slot, secrets.token_bytes(m.cell_size), 0)
    return n


async def test_a_device_back_after_the_retention_catches_up_without_a_false_alarm(
    tmp_path: Path,
) -> None:
    clock = Clock()
    relay = LyingRelay(tmp_path / "relay", clock)  # honest: it is told no lie
    async with relay.running():
        ny, dc = await _missions(relay, tmp_path, clock)
        smith, jones = dc
        assert await _rounds((*ny, *dc), clock, 3) == []
        # Jones's device is away for two hours; the relay keeps cells for one.
        service = relay.app.state.service
        service.settings = replace(service.settings, retention_seconds=3600)
        assert await _rounds((*ny, smith), clock, 120) == []
        assert await service.expire_once() > 0
        alarms = await _rounds((*ny, *dc), clock, 3)
        assert not [a for a in alarms if "dropped" in a], alarms
        # Jones is caught up: he reads what New York sends from now on.
        ri, han = ny
        ri.compose(ri.channel_for("Washington").channel_id, note("after the break"))
        for _ in range(40):
            alarms += await _rounds((*ny, *dc), clock, 1)
            if han.cosign_requests():
                break
        [req] = han.cosign_requests()
        han.approve_cosign(req.request_id)
        for _ in range(40):
            alarms += await _rounds((*ny, *dc), clock, 1)
            if jones.inbox():
                break
        assert [i.message_id for i in jones.inbox()] == [i.message_id for i in smith.inbox()]
        assert len(jones.inbox()) == 1
        assert not [a for a in alarms if "dropped" in a], alarms


async def test_a_mailbox_object_that_cannot_be_used_is_set_aside(
    tmp_path: Path,
) -> None:
    clock = Clock()
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(relay, tmp_path, clock)
        ri, han = ny
        # A well-signed co-sign request whose body is garbage, then a real one.
        ri.mailbox.send(joint.JointKind.COSIGN_REQUEST, han.officer.officer_id, b"\x00garbage")
        ri.compose(ri.channel_for("Washington").channel_id, note("the real one"))
        alarms = await _rounds_until((*ny, *dc), clock, han.cosign_requests)
        assert any("could not be used" in a and "set aside" in a for a in alarms), alarms
        [req] = han.cosign_requests()
        assert han.show_cosign(req.request_id)[1].text == "the real one"


async def test_a_mailbox_cell_that_does_not_open_is_set_aside(tmp_path: Path) -> None:
    clock = Clock()
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(relay, tmp_path, clock)
        ri, han = ny
        # The relay (or anyone with the slot) cannot forge a mailbox cell: one put
        # in Han's next mailbox slot ahead of Ri's is refused and set aside.
        n = await _squat_next_mailbox_slot(relay, ri, han)
        ri._set_counter(b"out" + han.officer.officer_id, n + 1)
        ri.compose(ri.channel_for("Washington").channel_id, note("behind a forged cell"))
        alarms = await _rounds_until((*ny, *dc), clock, han.cosign_requests)
        assert any("failed to open" in a for a in alarms), alarms
        [req] = han.cosign_requests()
        assert han.show_cosign(req.request_id)[1].text == "behind a forged cell"


async def test_a_deposit_refused_as_a_conflict_raises_an_alarm_and_the_lane_goes_on(
    tmp_path: Path,
) -> None:
    clock = Clock()
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(relay, tmp_path, clock)
        ri, han = ny
        # Someone who learnt the slot of Ri's next mailbox cell fills it first.
        await _squat_next_mailbox_slot(relay, ri, han)
        alarms = await _rounds((*ny, *dc), clock, 1)
        assert any("different cell already holds" in a for a in alarms), alarms
        # The lane was not blocked: the next rounds deposit fresh cells (three lanes:
        # the channel, the mailbox to Han, the intake's answers).
        before = len(ri.vault.pending("net_out"))
        report = await ri.sync(2)
        assert report.deposited == 6 and len(ri.vault.pending("net_out")) == before == 0
