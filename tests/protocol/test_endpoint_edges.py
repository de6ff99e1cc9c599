"""The channel endpoint, the sending and the receiving state machines at their edges:
what a round leaves behind, what a device that only receives does, what the
sender's own checks refuse, and what is erased once it has served."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backchannel.client.harness import MissionKit, Pair
from backchannel.errors import LocalProtocolError
from backchannel.protocol import channel as ch
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.payload import note
from backchannel.protocol.states import RecvState, SendState
from tests.conftest import DetRng, make_pair
from tests.protocol.test_exchange import send
from tests.protocol.test_peer_roster_change import _change, _rosters, _sealed


def test_an_empty_slot_moves_the_receiver_on_and_says_so(pair: Pair) -> None:
    ep = pair.b.endpoint
    res = ep.receive(0, None)
    assert (res.round, res.empty, res.cover, res.messages) == (0, True, False, ())
    assert ep.next_recv_round == 1
    with pytest.raises(LocalProtocolError, match="already received"):
        ep.receive(0, None)
    with pytest.raises(LocalProtocolError, match="already received"):
        ep.slot_to_fetch(0)


def test_a_cover_cell_is_cover_not_empty(pair: Pair) -> None:
    _, res = pair.run_round()
    assert (res.round, res.empty, res.cover) == (0, False, True)


def test_a_device_that_only_receives_erases_each_round_behind_it(pair: Pair) -> None:
    ep = pair.b.endpoint
    ep.sends = False
    for r in range(3):
        ep.receive(r, None)
    assert ep.chain.round == 3


def test_a_sender_keeps_the_keys_of_a_round_it_has_yet_to_send(pair: Pair) -> None:
    ep = pair.b.endpoint
    for r in range(3):
        ep.receive(r, None)
    assert ep.chain.round == 0
    slot, _ = ep.cell_for_round(0, pair.rng(12))
    assert (
        slot
        == ch.SlotChain.start(pair.secrets[ep.officer.officer_id], 0)
        .keys()
        .slots[1 - ep.in_direction]
    )


def _observer(pair: Pair) -> Endpoint:
    """The device of the second officer of b: it receives every round, sends nothing."""
    kit = pair.b.mission.officers[1]
    ep = Endpoint.create(
        pair.terms,
        pair.b.mission.mission_id,
        kit.officer,
        pair.b.mission.roster,
        pair.a.mission.roster,
        pair.secrets[kit.officer.officer_id],
        pair.round,
    )
    ep.sends = False
    return ep


def _rounds(pair: Pair, observer: Endpoint, n: int) -> list[bytes]:
    got = []
    for _ in range(n):
        r = pair.round
        pair.run_round()
        res = observer.receive(r, pair.relay.fetch(observer.slot_to_fetch(r)))
        got += [m.message_id for m in res.messages]
    return got


def test_a_device_that_only_receives_takes_what_acknowledges_its_side(rng: DetRng) -> None:
    """a's reply names b's message as seen; the receiving device of b never sent it
    and must not take that as a lie (only the sending device can check it)."""
    pair = make_pair(rng)
    obs = _observer(pair)
    send(pair, "b", note("from b"))
    assert _rounds(pair, obs, 3) == []
    send(pair, "a", note("reply"))
    [got] = _rounds(pair, obs, 3)
    assert got == pair.sent_on_wire[-1].message_id
    assert pair.sent_on_wire[-1].header.peer_seq == 1
    # And what waited for b's new view of a's roster is taken the same way.
    _change(pair.a, [0, 1], 2)
    pair.send(pair.a, _sealed(pair, "under roster 1", [0, 1]))
    assert _rounds(pair, obs, 3) == []
    released = obs.adopt_peer_roster(_rosters(pair.a))
    assert released.refused == () and len(released.messages) == 1


def test_a_receipt_due_waits_across_rounds_the_receiver_does_not_send(pair: Pair) -> None:
    a, b, relay = pair.a.endpoint, pair.b.endpoint, pair.relay
    send(pair, "a", note("x"))
    for r in (0, 1):
        relay.deposit(*a.cell_for_round(r, pair.rng(12)))
        res = b.receive(r, relay.fetch(b.slot_to_fetch(r)))
        assert len(res.messages) == (1 if r == 0 else 0)
        a.receive(r, None)
    relay.deposit(*b.cell_for_round(2, pair.rng(12)))
    assert a.receive(2, relay.fetch(a.slot_to_fetch(2))).delivered == (1,)


def _either(rng: DetRng) -> Pair:
    ny = MissionKit.create("New York", ["NY 0", "NY 1"], 2, rng)
    dc = MissionKit.create("Washington", ["DC 0", "DC 1"], 2, rng)
    return Pair(ny, dc, rng=rng, policy=ch.Policy.EITHER)


def test_a_deniable_message_goes_out_under_the_policys_k_and_only_it(rng: DetRng) -> None:
    pair = _either(rng)
    alone = pair.compose(pair.a, 0, note("one officer, deniable"), deniable=True)
    assert alone.message is not None
    pair.a.endpoint.queue(alone.message, threshold=1)
    signed = pair.compose(pair.a, 0, note("one officer, for the record"), deniable=False)
    assert signed.message is not None
    with pytest.raises(LocalProtocolError, match="only a deniable message"):
        pair.a.endpoint.queue(signed.message, threshold=1)


def test_the_sender_refuses_what_the_channels_policy_does_not_carry(rng: DetRng) -> None:
    pair = _either(rng)
    out = pair.cosign(pair.a, pair.compose(pair.a, 0, note("x"), deniable=True), 1)
    assert out.message is not None
    ep = pair.a.endpoint
    ep.terms = replace(ep.terms, policy=ch.Policy.RECORD)
    with pytest.raises(LocalProtocolError, match="for the record"):
        ep.queue(out.message)


def test_a_deniable_message_behind_one_that_waits_waits_too(rng: DetRng) -> None:
    pair = _either(rng)
    _change(pair.a, [0, 1], 2)
    pair.send(pair.a, _sealed(pair, "signed, under roster 1", [0, 1]))
    deniable = pair.cosign(pair.a, pair.compose(pair.a, 0, note("d"), deniable=True), 1)
    pair.send(pair.a, deniable)
    pair.run_until_quiet()
    assert len(pair.b.endpoint.held) == 2 and pair.b.inbox == []
    released = pair.b.endpoint.adopt_peer_roster(_rosters(pair.a))
    assert [m.deniable for m in released.messages] == [False, True]


def test_the_content_key_is_erased_at_the_threshold_and_not_before(rng: DetRng) -> None:
    pair = make_pair(rng, k=3, n=3)
    out = pair.compose(pair.a, 0, note("three of three"))
    once = pair.cosign(pair.a, out, 1)
    assert once.state is SendState.SEALED and once.content_key is not None
    twice = pair.cosign(pair.a, once, 2)
    assert twice.state is SendState.COSIGNED and twice.content_key is None


def test_nothing_to_cosign_without_the_content_key(pair: Pair) -> None:
    out = pair.compose(pair.a, 0, note("x"))
    with pytest.raises(LocalProtocolError, match="nothing sealed"):
        replace(out, content_key=None).cosign(
            pair.a.mission.officers[1].officer, pair.a.mission.roster
        )


def test_shares_are_gathered_then_erased_once_the_message_opens(pair23: Pair) -> None:
    send(pair23, "a", note("x"))
    pair23.run_until_quiet()
    [inc] = pair23.b.inbox
    roster = pair23.b.mission.roster
    one = inc.add_share(pair23.share(pair23.b, inc.message, 0), roster)
    assert one.state is RecvState.GATHERING and len(one.shares) == 1 and one.payload is None
    two = one.add_share(pair23.share(pair23.b, inc.message, 1), roster)
    assert two.state is RecvState.OPENED and two.shares == ()
    assert two.open(roster).text == "x"
