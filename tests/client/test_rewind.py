"""A relay restored from an older copy loses cells; the devices deposit them again.

Two missions over an in-process relay whose store can be copied and restored
(``tests/client/evil_relay.py``), one round at a time on a shared clock.
New York works while Washington is away; the operator then restores the copy
made before. The devices whose pinned log the restored relay contradicts
search its log for where their cells stop, and deposit again, at their own
slots and in their own order, every cell from there on; the exchange keeps its
shape all along (one cell per lane per round).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from backchannel.client import engine, rewind
from backchannel.client.rewind import KEPT, Recovery
from backchannel.client.service import Client
from backchannel.protocol.payload import note
from backchannel.protocol.states import SendState
from tests.attacks.test_malicious_relay import _missions, _quiet, round_reports
from tests.client.conftest import RELAY_URL
from tests.client.evil_relay import Clock, LyingRelay

TEXT = "The meeting moves to Thursday."


Mission = tuple[Client, Client]


@asynccontextmanager
async def _two_missions(
    tmp_path: Path,
) -> AsyncIterator[tuple[LyingRelay, Clock, Mission, Mission]]:
    """New York and Washington paired over the relay, two quiet rounds behind them."""
    clock = Clock()
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(tmp_path, relay.factory(), relay.factory(), clock)
        await _quiet(ny, dc, clock, rounds=2)
        yield relay, clock, ny, dc


async def test_a_message_a_restore_lost_arrives_once_and_its_receipt_comes_back(
    tmp_path: Path,
) -> None:
    async with _two_missions(tmp_path) as (relay, clock, ny, dc):
        devices = (*ny, *dc)
        ri, han = ny
        smith, _ = dc
        lanes = {d.officer.officer_id: len(d._lanes()) for d in devices}
        backup = relay.store.snapshot()

        draft = ri.compose(ri.channel_for("Washington").channel_id, note(TEXT))
        for _ in range(6):  # New York alone: Washington is away
            for report, d in zip(await round_reports(ny, clock), ny, strict=True):
                assert report.deposited == lanes[d.officer.officer_id]
            for request in han.cosign_requests():
                han.approve_cosign(request.request_id)
        assert not han.cosign_requests() and not smith.inbox()
        channel_id = ri.channel_for("Washington").channel_id
        assert ri._endpoint(channel_id).pending_cells == 0  # all of it went to the relay
        relay.restore(backup)  # the operator restores the older copy

        def delivered() -> bool:
            return any(
                d.draft_id == draft.draft_id and d.outgoing.state is SendState.DELIVERED
                for d in ri.drafts()
            )

        alarms: list[str] = []
        for _ in range(16):
            reports = await round_reports(devices, clock)
            for report, d in zip(reports, devices, strict=True):
                # Searching, depositing again or not: one cell per lane, every round.
                assert report.deposited == lanes[d.officer.officer_id]
                alarms += report.alarms
            if smith.inbox() and delivered():
                break
        else:
            raise AssertionError("the message did not arrive after the restore")
        assert len(smith.inbox()) == 1
        assert any("no longer holds" in a and "go out again" in a for a in alarms), alarms
        for d in ny:
            r = d.recovery(RELAY_URL)
            assert r is not None and r.requeued > 0 and not r.searching
        # Washington's own view of the log was never contradicted: nothing to search.
        assert all(d.recovery(RELAY_URL) is None for d in dc)
        # And a few more rounds bring nothing twice.
        for _ in range(3):
            await round_reports(devices, clock)
        assert len(smith.inbox()) == 1


async def test_a_cosign_request_a_restore_lost_still_reaches_the_colleague(
    tmp_path: Path,
) -> None:
    async with _two_missions(tmp_path) as (relay, clock, ny, dc):
        ri, han = ny
        backup = relay.store.snapshot()
        ri.compose(ri.channel_for("Washington").channel_id, note(TEXT))
        for _ in range(2):  # Ri alone: the request waits at the relay for Han
            await round_reports((ri,), clock)
        relay.restore(backup)
        for _ in range(10):
            await round_reports((*ny, *dc), clock)
            if han.cosign_requests():
                break
        [request] = han.cosign_requests()
        han.approve_cosign(request.request_id)
        smith = dc[0]
        for _ in range(12):
            await round_reports((*ny, *dc), clock)
            if smith.inbox():
                break
        assert len(smith.inbox()) == 1


async def test_kept_cells_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rewind, "KEEP_CELLS", 5)
    async with _two_missions(tmp_path) as (_, clock, ny, dc):
        await _quiet(ny, dc, clock, rounds=2)
        ri = ny[0]
        kept = ri.vault.items(KEPT)
        assert len(kept) == 5
        # The newest five, numbered in order.
        numbers = [int.from_bytes(k, "big") for k, _ in kept]
        assert numbers == list(range(numbers[0], numbers[0] + 5)) and numbers[0] > 0


# -- the search, on its own -----------------------------------------------------------


def _search(n: int, lost_from: int, probes: int, head_size: int | None = None) -> Recovery:
    """Run a search over ``n`` kept leaves (index 10 * i) of which the relay lost
    those from position ``lost_from``; return it once it ends."""
    kept = {10 * i: bytes([i % 256]) * 4 for i in range(n)}
    r = Recovery.start(RELAY_URL, b"pinned", kept, head_size if head_size is not None else 10 * n)
    # The newest leaf, then a (probes + 1)-way split each round.
    bound = 2 + math.ceil(math.log(max(n, 2), probes + 1))
    for _ in range(64):
        if not r.searching:
            assert r.rounds <= bound, (n, lost_from, probes, r.rounds)
            return r
        asked = r.probes(probes)
        assert asked, "a running search asks for something"
        r = r.take({i: (kept[i] if i < 10 * lost_from else b"another") for i in asked})
    raise AssertionError("the search did not end")


@pytest.mark.parametrize("probes", [1, 2, 5])
def test_the_search_finds_where_the_loss_begins(probes: int) -> None:
    for n in (1, 2, 3, 8, 33):
        for lost_from in range(n + 1):
            r = _search(n, lost_from, probes)
            assert r.lo == r.hi == lost_from
            assert r.lost_from == (10 * lost_from if lost_from < n else None)


def test_a_device_that_lost_nothing_knows_it_in_one_round() -> None:
    kept = {i: b"leaf" for i in range(100)}
    r = Recovery.start(RELAY_URL, b"pinned", kept, 500)
    asked = r.probes(3)
    assert 99 in asked
    r = r.take({i: b"leaf" for i in asked})
    assert not r.searching and r.lost_from is None


def test_leaves_past_the_shortened_log_are_lost_without_asking() -> None:
    r = _search(10, 4, 2, head_size=60)
    assert r.lost_from == 40
    r = Recovery.start(RELAY_URL, b"pinned", {0: b"a", 10: b"b"}, 0)
    assert not r.searching and r.lost_from == 0


def test_answers_that_contradict_each_other_err_towards_depositing_more() -> None:
    kept = {i: b"leaf" for i in range(10)}
    r = Recovery.start(RELAY_URL, b"pinned", kept, 100)
    # Leaf 3 missing but leaf 7 present: not a suffix; the earliest loss wins.
    r = r.take({3: None, 7: b"leaf"})
    assert r.hi == 3 and r.lo <= r.hi
    r = r.take({0: b"leaf", 1: b"leaf", 2: b"leaf"})
    assert not r.searching and r.lost_from == 3


# -- the receiver waits at a missing round -----------------------------------------------


@pytest.mark.parametrize("served_after", [3, None])
async def test_a_receiver_waits_at_a_missing_round_before_passing_over_it(
    tmp_path: Path, served_after: int | None
) -> None:
    async with _two_missions(tmp_path) as (relay, clock, ny, dc):
        devices = (*ny, *dc)
        smith = dc[0]
        channel_id = smith.channels()[0].channel_id
        ep = smith._endpoint(channel_id)
        relay.store.plan.tenant = smith.mission().tenant_id
        relay.store.plan.slots = {
            ep.slot_to_fetch(r) for r in range(ep.next_recv_round, ep.next_recv_round + 64)
        }
        relay.store.plan.drop = True  # the next cell is stored but not served
        missing = ep.next_recv_round
        alarms: list[str] = []  # Smith's
        waited = 0
        for n in range(engine.HOLD_ROUNDS + 4):
            if n == served_after:
                relay.store.plan.hidden.clear()  # the cell comes back (deposited again)
            reports = await round_reports(devices, clock)
            alarms += reports[2].alarms
            if smith._endpoint(channel_id).next_recv_round != missing:
                break
            waited += 1
        # The missing round is reported once, in the round it shows, not once a round.
        assert len([a for a in alarms if "a dropped cell" in a]) == 1, alarms
        if served_after is None:
            # It waited as long as it may, then went on without it.
            assert waited == engine.HOLD_ROUNDS + 1, waited  # + the round it was hidden in
        else:
            assert waited == served_after
            assert smith._endpoint(channel_id).next_recv_round > missing + 1


def test_a_search_whose_queries_go_unanswered_ends_by_depositing_more() -> None:
    kept = {i: b"leaf" for i in range(10)}
    r = Recovery.start(RELAY_URL, b"pinned", kept, 100)
    r = r.take({9: None})  # the newest is gone; then the relay stops answering
    for _ in range(rewind.MAX_UNANSWERED - 1):
        r = r.unanswered_check()
        assert r.searching
    r = r.unanswered_check()
    assert not r.searching and r.lost_from == 0
