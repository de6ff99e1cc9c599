"""A new sending device when the one that sent is removed (protocol-v1.md §7.8).

New York (Pak, Kim, Ri; 2 of 3) sends from Pak's device. Pak defects: Kim and
Ri remove him, and Kim's device, which only received until then, takes over
sending. Washington learns of it from New York's new card (the takeover
rides in it); its sending device answers where it reads New York from and
what of New York's messages it holds, and the channel goes on: the removed
officer's copy finds no slot of either direction, and nothing it deposits is
read.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import replace

import pytest

from backchannel.client.harness import MissionKit, Pair
from backchannel.errors import (
    AuthenticationError,
    LocalProtocolError,
    SignatureError,
)
from backchannel.protocol import cells
from backchannel.protocol import rekey as rk
from backchannel.protocol import roster as rs
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.payload import note
from tests.conftest import DetRng
from tests.protocol.test_channel_rekey import _keys, _remove, _round


@pytest.fixture
def pair(rng: DetRng) -> Pair:
    ny = MissionKit.create("New York", ["Pak", "Kim", "Ri"], 2, rng)
    dc = MissionKit.create("Washington", ["Smith", "Jones", "Brown"], 2, rng)
    return Pair(ny, dc, rng=rng, start_round=100)


def _receiving_copy(pair: Pair, officer: int) -> Endpoint:
    """Officer ``officer``'s device of New York: it reads the channel, sends nothing."""
    ep = copy.deepcopy(pair.a.endpoint)
    ep.officer = pair.a.mission.officers[officer].officer
    ep.sends, ep.outbox, ep.receipt_due = False, [], None
    return ep


def _defect(pair: Pair) -> tuple[Endpoint, Endpoint, rk.ChannelRekey, bytes]:
    """Pak sends a message, starts a second and vanishes mid-way; Kim and Ri remove
    him and Kim's device takes over. Returns Pak's copy, Kim's endpoint, the
    takeover (as New York's card carries it) and its seed."""
    ny = pair.a.mission
    first = pair.cosign(pair.a, pair.compose(pair.a, 0, note("before")), 1)
    pair.send(pair.a, first)
    for _ in range(8):
        _round(pair)
    got = [m.message_id for res in pair.b.results for m in res.messages]
    assert got[-1] == first.message.message_id  # type: ignore[union-attr]
    kim = _receiving_copy(pair, 1)
    cut = pair.cosign(pair.a, pair.compose(pair.a, 0, note("cut off " * 2000)), 1)
    pair.send(pair.a, cut)
    _round(pair)  # one piece of it goes; the rest never does
    assert pair.b.endpoint.partial, "Washington holds the start of the cut-off message"
    for res in pair.b.results[-1:]:
        kim.receive(res.round, pair.relay.fetch(kim.slot_to_fetch(res.round)), _keys(ny))
    pak = pair.a.endpoint
    change = _remove(ny, 0, (1, 2))
    rs.verify_update(ny.roster, change)
    cid, v = pair.terms.channel_id, change.roster.version
    seed = rk.seed_for(secrets.token_bytes(32), ny.mission_id, v, cid)
    sigs = tuple(rk.sign_statement(ny.officers[i].officer, cid, ny.mission_id, v, seed)
                 for i in (1, 2))  # fmt: skip
    takeover = rk.make_rekey(
        cid, ny.mission_id, change, kim.next_recv_round, seed, tuple(pair.b.mission.certs()), sigs
    )
    ny.chain.append(change)
    kim.own_roster = change.roster
    kim.take_over(takeover, seed)
    return pak, kim, takeover, seed


def test_a_device_that_only_received_takes_over_and_the_channel_goes_on(pair: Pair) -> None:
    pak, kim, takeover, _ = _defect(pair)
    dc = pair.b.endpoint
    pair.a.endpoint = kim
    # Messages wait until Washington has answered.
    with pytest.raises(LocalProtocolError, match="taken over sending"):
        pair.compose(pair.a, 1, note("too early"))
    for _ in range(3):  # Washington has not added the card yet: Kim's cells wait unread
        _round(pair)
    assert kim.resuming and dc.partial
    # The card: New York's new roster, then the takeover it carries.
    dc.adopt_peer_roster([c.roster for c in pair.a.mission.chain])
    said = dc.take_peer_over(takeover, _keys(pair.b.mission))
    assert "desk device changed" in said and dc.partial == []
    for _ in range(12):
        _round(pair)
    assert not kim.resuming and kim.rekeying is None and dc.rekeying is None
    # Kim's device holds New York's history as Washington does: one message.
    assert kim.transcript.next_seq == 2 and kim.delivered_seq == 1
    pair.a.send_epoch = None
    out_a = pair.cosign(pair.a, pair.compose(pair.a, 1, note("from the new desk")), 2)
    out_b = pair.cosign(pair.b, pair.compose(pair.b, 0, note("answer")), 1)
    pair.send(pair.a, out_a)
    pair.send(pair.b, out_b)
    for _ in range(12):
        _round(pair)
    got_b = [m.message_id for res in pair.b.results for m in res.messages]
    got_a = [m.message_id for res in pair.a.results for m in res.messages]
    assert got_b[-1] == out_a.message.message_id  # type: ignore[union-attr]
    assert got_a == [out_b.message.message_id]  # type: ignore[union-attr]
    assert dc.transcript.received_seq == 2 and kim.delivered_seq == 2
    # Pak's copy: the slots it computes are none of the channel's, either way,
    # and the cells it deposits where it looks are never read.
    for r in range(pair.round, pair.round + 20):
        for out in (True, False):
            d = kim.out_direction if out else kim.in_direction
            assert pak._keys(r, out).slots[d] != kim._keys(r, out).slots[d]
    before = len(got_b)
    for r in range(pair.round, pair.round + 6):
        keys = pak._keys(r, True)
        d, size = pak.out_direction, pair.terms.cell_size
        jam = cells.seal_cell(
            cells.CellContent(), keys, pair.terms.channel_id, d, size, secrets.token_bytes(12)
        )
        pair.relay.deposit(keys.slots[pak.out_direction], jam)
    for _ in range(6):
        _round(pair)
    assert len([m for res in pair.b.results for m in res.messages]) == before


def test_washington_reads_from_where_the_old_device_stopped_if_that_is_later(pair: Pair) -> None:
    """Pak's device had run ahead of the round Kim's takeover names: Washington
    reads on from where it is, and Kim's device sends from there once told."""
    pak, kim, takeover, _ = _defect(pair)
    dc = pair.b.endpoint
    pair.a.endpoint = pak
    for _ in range(4):  # Pak's device runs on (cover) past Kim's base round
        _round(pair)
    assert dc.next_recv_round > takeover.base_round
    ahead = dc.next_recv_round
    dc.adopt_peer_roster([c.roster for c in pair.a.mission.chain])
    dc.take_peer_over(takeover, _keys(pair.b.mission))
    pair.a.endpoint = kim
    kim_rounds = 0
    while kim.resuming and kim_rounds < 20:
        _round(pair)
        kim_rounds += 1
    assert not kim.resuming and kim.next_send_round >= ahead


def test_the_answer_to_a_takeover_is_checked(pair: Pair) -> None:
    _, kim, _, seed = _defect(pair)
    t = kim.transcript
    forged = rk.make_resume(secrets.token_bytes(32), pair.terms.channel_id, 999, 0, t.received[-1])
    with pytest.raises(AuthenticationError):
        rk.verify_resume(forged, seed, pair.terms.channel_id)
    good = rk.make_resume(seed, pair.terms.channel_id, 120, 1, bytes(32))
    rk.verify_resume(rk.ChannelResume.decode(good.encode()), seed, pair.terms.channel_id)
    with pytest.raises(AuthenticationError):
        rk.verify_resume(
            rk.ChannelResume(121, good.seq, good.head, good.mac), seed, pair.terms.channel_id
        )
    # A device that took nothing over leaves an answer alone.
    assert pair.b.endpoint._resumed(good.encode()).resume is None


def test_a_takeover_is_refused_when_it_cannot_be_right(pair: Pair) -> None:
    pak, kim, takeover, seed = _defect(pair)
    dc = pair.b.endpoint
    # Not from the peer: New York's own endpoint is given it.
    with pytest.raises(AuthenticationError, match="another mission"):
        copy.deepcopy(pak).take_peer_over(takeover, _keys(pair.a.mission))
    # Its seed vouched for by one officer who stays only: refused, nothing moves.
    solo = replace(takeover, signatures=takeover.signatures[:1])
    before = (dc.next_recv_round, len(dc.partial), dc.rekeying)
    with pytest.raises(SignatureError, match="needs 2 officers' signatures on its seed; 1 verify"):
        copy.deepcopy(dc).take_peer_over(solo, _keys(pair.b.mission))
    assert (dc.next_recv_round, len(dc.partial), dc.rekeying) == before
    # A device that already sends takes nothing over; nor during a move.
    with pytest.raises(LocalProtocolError, match="already sends"):
        kim.take_over(takeover, seed)
    dc.take_peer_over(takeover, _keys(pair.b.mission))
    with pytest.raises(LocalProtocolError, match="moving to new keys"):
        dc.take_peer_over(takeover, _keys(pair.b.mission))


def test_a_device_of_the_peer_that_is_behind_loses_nothing_sent_before(pair: Pair) -> None:
    """Jones's device (Washington; it does not send) has read nothing since the
    channel opened when it adds New York's new card: it reads the old chain up
    to the takeover's base round, the message Pak sent included, then the new
    chain; the message Pak left half-sent is dropped (one gap, as a relay's
    drop would show), and Kim's message arrives."""
    from backchannel.errors import GapDetected

    jones = copy.deepcopy(pair.b.endpoint)
    jones.officer = pair.b.mission.officers[1].officer
    jones.sends, jones.outbox, jones.receipt_due = False, [], None
    _, kim, takeover, _ = _defect(pair)
    dc = pair.b.endpoint
    pair.a.endpoint = kim
    chain = [c.roster for c in pair.a.mission.chain]
    for ep in (dc, jones):
        ep.adopt_peer_roster(chain)
    dc.take_peer_over(takeover, _keys(pair.b.mission))
    jones_keys = tuple(k.private_key for k in reversed(pair.b.mission.officers[1].epoch_keys))
    jones.take_peer_over(takeover, jones_keys)
    for _ in range(12):
        _round(pair)
    pair.a.send_epoch = None
    out_a = pair.cosign(pair.a, pair.compose(pair.a, 1, note("from the new desk")), 2)
    pair.send(pair.a, out_a)
    for _ in range(6):
        _round(pair)
    got, gaps = [], 0
    while jones.next_recv_round < pair.round:
        r = jones.next_recv_round
        cell = pair.relay.fetch(jones.slot_to_fetch(r))
        try:
            res = jones.receive(r, cell)
        except GapDetected:
            gaps += 1
            jones.partial = []
            res = jones.receive(r, cell)
        got += [m.message_id for m in res.messages]
    first = next(m.message_id for res in pair.b.results for m in res.messages)
    assert got == [first, out_a.message.message_id]  # type: ignore[union-attr]
    assert gaps == 1


def test_the_takeover_moves_exactly_the_rounds_it_names(pair: Pair) -> None:
    """Kim's cells from the base round are on the new chain (not Pak's); Washington
    reads the old chain up to the round before it and the new one from it, takes
    New York's new roster for its re-keys, and answers with its last message."""
    ny = pair.a.mission
    second = pair.cosign(pair.a, pair.compose(pair.a, 0, note("second")), 1)
    pair.send(pair.a, second)  # two messages before: the answer names the second
    pak, kim, takeover, seed = _defect(pair)
    cid, base = pair.terms.channel_id, takeover.base_round
    new = rk.chain_for(seed, cid, base)
    out = kim.out_direction
    assert kim._keys(base, True).slots[out] == new.advance(base).keys().slots[out]
    assert kim._keys(base, True).slots[out] != pak._keys(base, True).slots[out]
    dc = pair.b.endpoint
    assert dc.transcript.received_seq == 2
    dc.adopt_peer_roster([c.roster for c in ny.chain])
    start = max(dc.next_recv_round, base)
    dc.take_peer_over(takeover, _keys(pair.b.mission))
    k = dc.rekeying
    assert k is not None
    assert k.chain_at(start, False) is not None and k.chain_at(start - 1, False) is None
    assert dc.peer_rekey_roster is not None and dc.peer_rekey_roster.version == 1
    [resume_piece] = [f for f in dc.outbox if f.control][:1]
    resume = rk.ChannelResume.decode(cells.reassemble([resume_piece]))
    assert (resume.read_from, resume.seq) == (start, 2)
    assert resume.head == dc.transcript.received[2] != dc.transcript.received[1]


def test_a_device_behind_by_nothing_drops_the_half_message_at_once(pair: Pair) -> None:
    """Jones's device reads exactly up to the base round: the half-received
    message is dropped there, as on the sending device."""
    _, _, takeover, _ = _defect(pair)
    jones = copy.deepcopy(pair.b.endpoint)
    jones.officer = pair.b.mission.officers[1].officer
    jones.sends, jones.outbox, jones.receipt_due = False, [], None
    jones.next_recv_round = takeover.base_round
    assert jones.partial
    jones.adopt_peer_roster([c.roster for c in pair.a.mission.chain])
    keys = tuple(k.private_key for k in reversed(pair.b.mission.officers[1].epoch_keys))
    jones.take_peer_over(takeover, keys)
    assert jones.partial == [] and jones.outbox == []


def test_no_takeover_during_a_move_and_answers_not_for_this_device_are_left_alone(
    pair: Pair,
) -> None:
    from backchannel.protocol import rekeying as rkg

    _, kim, takeover, seed = _defect(pair)
    for busy in (
        lambda ep: setattr(ep, "rekey_held", b"held"),
        lambda ep: setattr(ep, "rekeying", rkg.Rekeying(seed, 5, rk.chain_for(seed, b"c" * 32, 5))),
    ):
        other = _receiving_copy(pair, 2)
        busy(other)
        with pytest.raises(LocalProtocolError, match="moving to new keys"):
            other.take_over(takeover, seed)
    waiting = _receiving_copy(pair, 2)  # an expectation of the peer's answer is no move
    waiting.rekeying = rkg.Rekeying(seed)
    waiting.take_over(takeover, seed)
    assert waiting.sends and waiting.resuming
    late = _receiving_copy(pair, 2)
    late.chain = late.chain.advance(takeover.base_round + 1)
    with pytest.raises(LocalProtocolError, match="round still to come"):
        late.take_over(takeover, seed)
    # A device moving its own channel, not taking over, leaves any answer alone,
    # even one that does not verify.
    moving = copy.deepcopy(pair.b.endpoint)
    moving.rekeying = rkg.Rekeying(seed, 5, rk.chain_for(seed, pair.terms.channel_id, 5))
    bogus = rk.ChannelResume(1, 1, bytes(32), bytes(32))
    assert moving._resumed(bogus.encode()).resume is None
    # While unknown, our history checks nothing and numbers nothing.
    t = kim.transcript
    assert t.sent == () and t.next_seq == 0
    t.check_peer_view(7, bytes(32))
