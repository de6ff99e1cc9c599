"""A relay proven to lie is left for the fallback relay the mission's policy names.

New York (Ri, Han) and Washington (Smith, Jones) share one relay. New York's
policy names a fallback relay (k of n, like every standing rule); Washington's
names none. The relay operator restores an old copy of the database: every
device proves the rewind. New York's devices move to the fallback at once,
keep reading what was left at the old relay until Washington adds New York's
new card, and then never fetch from the liar again. Washington keeps its relay
(nothing else would carry its traffic) with one alarm that says so. A
colleague's notice moves a device only with a proof that holds against the
mission's own relay.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from backchannel.client import demo
from backchannel.client.device import RelayFactory
from backchannel.client.relay_move import MOVE_NOTICE
from backchannel.client.service import Client
from backchannel.protocol.audit import AuditEntry, AuditKind
from backchannel.protocol.channel import Policy
from backchannel.protocol.evidence import (
    REWIND,
    encode_evidence,
    evidence_kind,
    verify_misbehaviour,
)
from backchannel.protocol.payload import note
from backchannel.protocol.policy import FallbackRelay
from tests.attacks.test_malicious_relay import round_reports
from tests.client.conftest import FAST_KDF, RELAY_URL
from tests.client.evil_relay import Clock, LyingRelay
from tests.merkle.test_misbehaviour import HONEST, OTHER, signed

FALLBACK_URL = "http://fallback.test"
Mission = tuple[Client, Client]
Calls = list[tuple[str, str | None]]


def _routed(relay: LyingRelay, fallback: LyingRelay, calls: Calls) -> RelayFactory:
    """A device's relay factory that reaches both relays and notes each request's
    (relay, tenant) (outside a session every request makes its own client)."""
    to_relay, to_fallback = relay.factory(), fallback.factory()

    def make(url: str, tenant: str | None, credential: str | None) -> object:
        calls.append((url, tenant))
        pick = to_fallback if url == FALLBACK_URL else to_relay
        return pick(url, tenant, credential)

    return make  # type: ignore[return-value]


async def _found(
    tmp: Path,
    name: str,
    officers: tuple[str, str],
    relay: LyingRelay,
    fallback: LyingRelay,
    clock: Clock,
    calls: dict[str, Calls],
) -> Mission:
    """A mission of two at the relay; each device's requests noted under its officer."""
    a, b = await demo.found(
        tmp, name, officers, RELAY_URL, _routed(relay, fallback, []), "pw", FAST_KDF,
        clock,
    )  # fmt: skip
    for device in (a, b):
        key = device.officer.name.lower()
        device._relay = _routed(relay, fallback, calls.setdefault(key, []))
    return a, b


async def _round(devices: tuple[Client, ...], clock: Clock) -> list[str]:
    return [a for r in await round_reports(devices, clock) for a in r.alarms]


def _mine(device: Client, entries: list[AuditEntry]) -> list[AuditEntry]:
    return [e for e in entries if e.officer_id == device.officer.officer_id]


async def _until(done: Callable[[], bool], devices: tuple[Client, ...], clock: Clock) -> None:
    for _ in range(12):
        if done():
            return
        await _round(devices, clock)
    raise AssertionError("not within 12 rounds")


async def _name_fallback(
    ny: Mission, fallback: LyingRelay, devices: tuple[Client, ...], clock: Clock
) -> bytes:
    """Ri proposes the fallback relay, Han signs: in force on both; its key's fingerprint."""
    ri, han = ny
    fp = await _key_of(fallback)
    pending = ri.policy_propose({Policy.RECORD}, 0, fallback=FallbackRelay(FALLBACK_URL, fp))
    await _until(lambda: bool(han.policy_pending()), devices, clock)
    han.policy_sign(pending.ref)
    await _until(lambda: ri.mission_policy().fallback.named, devices, clock)
    return fp


@asynccontextmanager
async def _restored(
    tmp: Path, clock: Clock
) -> AsyncIterator[tuple[Client, Client, dict[str, Calls]]]:
    """New York (Ri, Han) with a fallback relay in its policy, at a relay its
    operator has just restored from an older copy; each device's requests noted."""
    relay = LyingRelay(tmp / "relay", clock)
    fallback = LyingRelay(tmp / "fallback", clock)
    calls: dict[str, Calls] = {"ri": [], "han": []}
    async with relay.running(), fallback.running():
        ny = await _found(tmp, "New York", ("Ri", "Han"), relay, fallback, clock, calls)
        await _name_fallback(ny, fallback, ny, clock)
        backup = relay.store.snapshot()
        for _ in range(2):
            await _round(ny, clock)
        relay.restore(backup)
        yield (*ny, calls)


async def _key_of(fallback: LyingRelay) -> bytes:
    async with fallback.factory()(FALLBACK_URL, None, None) as c:
        key: bytes = await c.log_key()
    return hashlib.sha256(key).digest()


async def _deliver(sender: Mission, everyone: tuple[Client, ...], clock: Clock, text: str) -> None:
    """A co-signed message from ``sender``'s mission, carried by rounds of everyone."""
    runner, other = sender
    peer = next(p.name for p in runner.peers())
    runner.compose(runner.channel_for(peer).channel_id, note(text))
    for _ in range(3):
        await _round(everyone, clock)
    [req] = other.cosign_requests()
    other.approve_cosign(req.request_id)
    for _ in range(6):
        await _round(everyone, clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_rewound_relay_is_left_for_the_policys_fallback(
    tmp_path: Path, clock: Clock
) -> None:
    relay = LyingRelay(tmp_path / "relay", clock)
    fallback = LyingRelay(tmp_path / "fallback", clock)
    calls: dict[str, Calls] = {n: [] for n in ("ri", "han", "smith", "jones")}
    async with relay.running(), fallback.running():
        ny = await _found(tmp_path, "New York", ("Ri", "Han"), relay, fallback, clock, calls)
        dc = await _found(tmp_path, "Washington", ("Smith", "Jones"), relay, fallback, clock, calls)
        await demo.pair(ny, dc)
        ri, han = ny
        everyone = (*ny, *dc)
        # New York's officers name the fallback relay, two of two.
        fp = await _name_fallback(ny, fallback, everyone, clock)
        assert ri.mission_policy().fallback.url == FALLBACK_URL
        assert han.mission_policy().fallback.url == FALLBACK_URL

        backup = relay.store.snapshot()
        for _ in range(2):
            await _round(everyone, clock)
        relay.restore(backup)  # the operator restores an old copy
        alarms = await _round(everyone, clock)
        assert any("rewind:" in a for a in alarms), alarms

        # The next round, New York's devices leave the relay; Washington's stay,
        # and say once that their policy names nowhere to go.
        later = await _round(everyone, clock)
        for device in ny:
            assert device.mission().relay_url == FALLBACK_URL
            move = device.status()["relay_move"]
            assert move["from"] == RELAY_URL and move["to"] == FALLBACK_URL
            assert move["peers_to_tell"] == ["Washington"]
            assert device.log.fingerprint(FALLBACK_URL) == fp
            assert device.relay_move().registered  # type: ignore[union-attr]
            left = [e for e in device.audit_entries() if e.kind == AuditKind.RELAY_LEFT]
            [began] = _mine(device, left)
            assert began.note.startswith("began leaving http://relay.test, proven to lie")
            assert began.subject == device.log.fingerprint(RELAY_URL)
        moved = "relay log (http://relay.test): the relay is proven to lie: the mission now"
        assert any(a.startswith(moved) for a in later), later
        for _ in range(3):
            later += await _round(everyone, clock)
        for device in dc:
            assert device.mission().relay_url == RELAY_URL
            said = [a for a in device.relay_alarms() if "names no other relay" in a]
            assert len(said) == 1
        assert sum("names no other relay" in a for a in later) == 2  # once per device

        # Washington writes before it has the new card: it deposits at the old
        # relay, where New York still reads (unchecked: it is proven to lie).
        await _deliver(dc, everyone, clock, "before the card")
        assert len(ri.inbox()) == 1

        # Washington's officers add New York's new card; their runner deposits
        # at the fallback, and New York's move ends.
        card = ri.mission_card()
        assert card.relay_url == FALLBACK_URL and card.relay_key == fp
        for device in dc:
            device.add_peer(card.encode())
        for _ in range(2):
            await _round(everyone, clock)
        for device in ny:
            assert device.relay_move() is None
            left = [e for e in device.audit_entries() if e.kind == AuditKind.RELAY_LEFT]
            assert [e.note.split(" ")[0] for e in _mine(device, left)] == ["began", "finished"]
        # A colleague's notice that comes in late (after the move) is no alarm and moves
        # nothing; the relay that lied is never taken back.
        [proof] = han.relay_evidence()
        assert ri._on_move_notice(han.officer.officer_id, MOVE_NOTICE + proof) is None
        assert ri.relay_move() is None and ri.mission().relay_url == FALLBACK_URL

        # From now on Han's device never talks to the liar, and Ri's only
        # deposits Washington's channel cells there (Washington reads there).
        for c in calls.values():
            c.clear()
        await _deliver(dc, everyone, clock, "after the card")
        await _deliver(ny, everyone, clock, "from the fallback")
        # (Washington's relay came back from its old copy: New York's runner
        # first deposits again what the relay lost there, rewind.py.)
        await _until(lambda: len(dc[0].inbox()) == 1, everyone, clock)
        assert len(ri.inbox()) == 2
        assert not [c for c in calls["han"] if c[0] == RELAY_URL]
        assert {c for c in calls["ri"] if c[0] == RELAY_URL} == {(RELAY_URL, None)}
        rounds = len([c for c in calls["han"] if c[0] == FALLBACK_URL]) // 2
        assert rounds >= 18
        assert len([c for c in calls["ri"] if c[0] == RELAY_URL]) == rounds
        assert {c for c in calls["han"]} == {
            (FALLBACK_URL, None),
            (FALLBACK_URL, han.mission().tenant_id),
        }


async def test_a_colleagues_notice_moves_a_device_only_with_a_proof_that_holds(
    tmp_path: Path, clock: Clock
) -> None:
    async with _restored(tmp_path, clock) as (ri, han, _calls):
        await _round((ri,), clock)  # only Ri's device sees the rewind
        [proof] = ri.relay_evidence()
        assert evidence_kind(proof) == "rewind" and han.relay_evidence() == []

        ri_id = ri.officer.officer_id
        tampered = bytearray(proof)
        tampered[-5] ^= 1
        for body, why in (
            (MOVE_NOTICE + b"junk", "does not hold"),
            (MOVE_NOTICE + bytes(tampered), "does not hold"),
        ):
            assert why in (han._on_move_notice(ri_id, body) or "")
            assert han.mission().relay_url == RELAY_URL and han.relay_move() is None
        # A proof that holds, but against another relay: not ours.
        other = encode_evidence(
            REWIND, OTHER.verify_key, signed(HONEST, 9, 60, OTHER), signed(HONEST, 6, 120, OTHER)
        )
        assert verify_misbehaviour(other).startswith("rewind:")
        said = han._on_move_notice(ri_id, MOVE_NOTICE + other)
        assert said == "a colleague's proof names another relay than ours; nothing moved"
        assert han.relay_move() is None and han.relay_evidence() == []

        assert han._on_move_notice(ri_id, MOVE_NOTICE + proof) is None
        assert han.mission().relay_url == FALLBACK_URL
        assert han.relay_evidence() == [proof]
        # The same notice again (the mailbox may carry it twice) moves nothing more.
        assert han._on_move_notice(ri_id, MOVE_NOTICE + proof) is None
        left = [e for e in han.audit_entries() if e.kind == AuditKind.RELAY_LEFT]
        assert len(_mine(han, left)) == 1


async def test_a_colleague_not_yet_moved_is_waited_for_and_copied_to(
    tmp_path: Path, clock: Clock
) -> None:
    """Ri's device moves while Han's is away: it copies its mailbox cells to the old
    relay and reads Han's there until Han's device, back, has moved too."""
    async with _restored(tmp_path, clock) as (ri, han, calls):
        for _ in range(3):
            await _round((ri,), clock)  # Han's device is away
        move = ri.relay_move()
        assert move is not None and move.registered
        assert move.colleagues == (han.officer.officer_id,) and move.channels == ()
        calls["ri"].clear()
        await _round((ri,), clock)
        tenant = ri.mission().tenant_id
        # One round: a deposit and a fetch at the new relay, and the copy of the
        # mailbox cells and a fetch at the old one.
        assert sorted(calls["ri"], key=str) == sorted(
            [(FALLBACK_URL, None), (FALLBACK_URL, tenant),
             (RELAY_URL, None), (RELAY_URL, tenant)], key=str,
        )  # fmt: skip
        # Han's device comes back: its first round still goes to the old relay (it
        # has no proof yet), where Ri's device reads it: Han's device is not unseen.
        clock.now += 600
        before = ri._counter(b"seen:" + han.officer.officer_id)
        await _round((ri, han), clock)
        assert han.relay_move() is None and han.relay_evidence()
        assert ri._counter(b"seen:" + han.officer.officer_id) > before
        # Then Han's device moves, and each sees the other at the new relay.
        await _until(lambda: ri.relay_move() is None and han.relay_move() is None, (ri, han), clock)
        assert han.mission().relay_url == FALLBACK_URL
        calls["ri"].clear()
        calls["han"].clear()
        for _ in range(2):
            await _round((ri, han), clock)
        assert not [c for c in calls["ri"] + calls["han"] if c[0] == RELAY_URL]
