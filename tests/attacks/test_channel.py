"""Attacks by the relay (or anyone on the wire) on the channel's cells and history."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import pytest

from backchannel.client.harness import Pair
from backchannel.errors import (
    AuthenticationError,
    ForkDetected,
    GapDetected,
    LocalProtocolError,
    ReplayDetected,
    SignatureError,
)
from backchannel.protocol import cells
from backchannel.protocol.payload import note
from backchannel.protocol.sealing import sign
from tests.conftest import DetRng
from tests.helpers import force_queue


def _send(pair: Pair, text: str, side: str = "a") -> None:
    s = pair.a if side == "a" else pair.b
    pair.send(s, pair.cosign(s, pair.compose(s, 0, note(text)), 1))


def _deposit_a(pair: Pair) -> tuple[int, bytes, bytes]:
    r = pair.a.endpoint.next_send_round
    slot, cell = pair.a.endpoint.cell_for_round(r, pair.rng(12))
    return r, slot, cell


def test_any_flipped_bit_in_a_cell_is_refused(pair: Pair) -> None:
    _send(pair, "do not tamper")
    r, _, cell = _deposit_a(pair)
    ep = pair.b.endpoint
    for pos in range(0, len(cell), 97):
        for bit in (0, 7):
            bad = bytearray(cell)
            bad[pos] ^= 1 << bit
            with pytest.raises(AuthenticationError):
                ep.receive(r, bytes(bad))
    assert ep.receive(r, cell).messages  # the genuine cell still opens: nothing changed


def test_truncated_or_padded_cell_is_refused(pair: Pair) -> None:
    from backchannel.errors import DecodeError

    r, _, cell = _deposit_a(pair)
    for bad in (cell[:-1], cell + b"\x00", b""):
        with pytest.raises(DecodeError, match="exactly 4096"):
            pair.b.endpoint.receive(r, bad)


def test_cell_replayed_into_a_later_round_is_refused(pair: Pair) -> None:
    _send(pair, "once")
    r, _, cell = _deposit_a(pair)
    pair.b.endpoint.receive(r, cell)
    with pytest.raises(AuthenticationError):
        pair.b.endpoint.receive(r + 1, cell)


def test_cell_of_the_other_direction_is_refused(pair: Pair) -> None:
    r = pair.round
    _, cell_b = pair.b.endpoint.cell_for_round(r, pair.rng(12))
    with pytest.raises(AuthenticationError):
        pair.b.endpoint.receive(r, cell_b)  # B's own cell reflected back to B


def test_replayed_message_is_refused(pair: Pair) -> None:
    _send(pair, "pay once")
    pair.run_until_quiet()
    msg = pair.b.inbox[0].message
    force_queue(pair.a.endpoint, msg, record=False)
    with pytest.raises(ReplayDetected):
        pair.run_round()
    assert len(pair.b.inbox) == 1


def test_dropped_cell_of_a_long_message_is_detected(pair: Pair) -> None:
    _send(pair, "y" * 9000)  # three cells
    r0, _, c0 = _deposit_a(pair)
    r1, _, _dropped = _deposit_a(pair)
    r2, _, c2 = _deposit_a(pair)
    ep = pair.b.endpoint
    ep.receive(r0, c0)
    ep.receive(r1, None)  # the relay withholds round r1
    with pytest.raises(GapDetected):
        ep.receive(r2, c2)


def test_dropped_message_is_detected_at_the_next_one(pair: Pair) -> None:
    # Each in a cell of its own (sent together, two short messages share one).
    _send(pair, "first")
    r0, _, _ = _deposit_a(pair)
    _send(pair, "second")
    r1, _, c1 = _deposit_a(pair)
    pair.b.endpoint.receive(r0, None)
    with pytest.raises(GapDetected, match="missing"):
        pair.b.endpoint.receive(r1, c1)


def test_reordered_messages_are_detected(pair: Pair, rng: DetRng) -> None:
    _send(pair, "first")
    _send(pair, "second")
    # Reorder: the relay cannot move cells between slots, so a reordering relay
    # shows message 2 in place of message 1; the receiver sees a gap.
    frags = pair.a.endpoint.outbox
    pair.a.endpoint.outbox = [frags[1], frags[0]]
    r0, _, c0 = _deposit_a(pair)
    with pytest.raises(GapDetected):
        pair.b.endpoint.receive(r0, c0)


def test_two_different_messages_with_one_seq_are_a_fork(pair: Pair) -> None:
    _send(pair, "version one")
    pair.run_until_quiet()
    # A sender device on a forked history (e.g. restored from an old backup by
    # the relay's accomplice) seals another message 1.
    ep = pair.a.endpoint
    other = pair.compose(pair.a, 0, note("version two"))
    assert other.message is not None
    hdr = replace(other.message.header, seq=1, prev_hash=ep.transcript.sent[0])
    msg = replace(other.message, header=hdr, signatures=())
    for o in pair.a.mission.officers:
        msg = sign(msg, o.officer, pair.a.mission.roster)
    force_queue(ep, msg, record=False)
    with pytest.raises(ForkDetected):
        pair.run_round()


def test_peer_shown_a_different_history_of_us_is_a_fork(pair: Pair) -> None:
    _send(pair, "our message", side="a")
    pair.run_until_quiet()
    ep_b = pair.b.endpoint
    # The relay fed B a history of A that A never wrote: B's next message says so.
    ep_b.transcript = replace(ep_b.transcript, received=(ep_b.transcript.received[0], b"\x13" * 32))
    _send(pair, "reply", side="b")
    with pytest.raises(ForkDetected, match="differs from ours"):
        pair.run_until_quiet()


def test_forged_receipt_is_refused(pair: Pair, rng: DetRng) -> None:
    from backchannel.client.harness import OfficerKit

    _send(pair, "did you get it?")
    pair.run_until_quiet()
    outsider = OfficerKit.create("relay", rng).officer
    ep_a = pair.a.endpoint
    delivered = ep_a.delivered_seq
    fake = cells.Receipt.make(
        pair.terms.channel_id, ep_a.out_direction, 1, ep_a.transcript.sent[1], outsider
    )
    # Signed by an outsider under the id of a real Washington officer: only the
    # signature check can refuse it.
    wearing = pair.b.mission.officers[0].officer.officer_id
    pair.b.endpoint.receipt_due = replace(fake, officer_id=wearing)
    with pytest.raises(SignatureError, match="does not verify"):
        pair.run_round()
    assert pair.a.endpoint.delivered_seq == delivered


def test_receipt_from_a_stranger_to_the_roster_is_refused(pair: Pair, rng: DetRng) -> None:
    from backchannel.client.harness import OfficerKit

    _send(pair, "did you get it?")
    pair.run_until_quiet()
    outsider = OfficerKit.create("relay", rng).officer
    ep_a = pair.a.endpoint
    delivered = ep_a.delivered_seq
    pair.b.endpoint.receipt_due = cells.Receipt.make(
        pair.terms.channel_id, ep_a.out_direction, 1, ep_a.transcript.sent[1], outsider
    )
    with pytest.raises(SignatureError, match="not on the peer's roster"):
        pair.run_round()
    assert pair.a.endpoint.delivered_seq == delivered


def test_receipt_for_a_message_never_sent_is_a_fork(pair: Pair) -> None:
    ep_a = pair.a.endpoint
    officer = pair.b.mission.officers[0].officer
    pair.b.endpoint.receipt_due = cells.Receipt.make(
        pair.terms.channel_id, ep_a.out_direction, 5, b"\x00" * 32, officer
    )
    with pytest.raises(ForkDetected, match="never sent"):
        pair.run_round()


def _chi_square_uniform(data: bytes) -> float:
    counts = Counter(data)
    expected = len(data) / 256
    return sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(256))


def test_cover_cell_cannot_be_told_from_a_real_one(pair: Pair) -> None:
    covers = [pair.a.endpoint.cell_for_round(pair.round + i, pair.rng(12))[1] for i in range(20)]
    _send(pair, "real " * 600)
    base = pair.round + 20
    reals = [pair.a.endpoint.cell_for_round(base + i, pair.rng(12))[1] for i in range(1)]
    assert {len(c) for c in covers + reals} == {4096}
    # Byte statistics: both pass a chi-square test for uniform bytes (255 dof;
    # the 0.999 quantile is about 330), and look alike to a simple distinguisher.
    for c in covers + reals:
        assert _chi_square_uniform(c) < 360
    cover_mean = sum(sum(c) for c in covers) / (4096 * len(covers))
    real_mean = sum(sum(c) for c in reals) / (4096 * len(reals))
    assert math.isclose(cover_mean, 127.5, abs_tol=4) and math.isclose(real_mean, 127.5, abs_tol=4)


def test_erased_slot_chain_keys_cannot_be_recovered(pair: Pair) -> None:
    first = pair.round
    old = pair.a.endpoint.chain.keys()
    old_chain_key = pair.a.endpoint.chain.chain_key
    for _ in range(3):
        pair.run_round()
    ep = pair.a.endpoint
    assert ep.chain.round == first + 3
    # What remains is the chain key of the current round; nothing it derives
    # (going forward is all it can do) is an old key.
    secrets_of_old = {old_chain_key, *old.cell_keys, *old.slots}
    chain = ep.chain
    for _ in range(50):
        k = chain.keys()
        assert not ({chain.chain_key, *k.cell_keys, *k.slots} & secrets_of_old)
        chain = chain.advance(chain.round + 1)
    with pytest.raises(LocalProtocolError):
        ep.chain.advance(first)
    with pytest.raises(LocalProtocolError):
        ep.receive(first, None)


def test_erased_share_keys_cannot_be_recovered(pair: Pair) -> None:
    _send(pair, "forward secret")
    pair.run_until_quiet()
    msg = pair.b.inbox[0].message
    pair.share(pair.b, msg, 0)
    state = pair.b.mission.officers[0].recv_epochs[msg.header.epoch_id]
    assert state.chain.index == 1 and state.skipped == ()
    with pytest.raises(LocalProtocolError, match="erased"):
        state.share_key(0)


def test_a_dropped_cell_that_carried_two_messages_is_detected_at_the_next(pair: Pair) -> None:
    _send(pair, "first")
    _send(pair, "second")
    r0, _, _ = _deposit_a(pair)  # both short messages ride in this cell
    assert pair.a.endpoint.pending_cells == 0
    _send(pair, "third")
    r1, _, c1 = _deposit_a(pair)
    pair.b.endpoint.receive(r0, None)  # the relay dropped it
    with pytest.raises(GapDetected, match="missing"):
        pair.b.endpoint.receive(r1, c1)
    assert pair.b.inbox == []
