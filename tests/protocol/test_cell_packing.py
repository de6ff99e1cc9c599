"""Short messages share a channel cell (cells.py, flag 0x10).

A cell carries, after its first fragment, as many whole fragments of the
messages queued behind it as it still holds. Nothing changes on the wire (the
cell is the same size, sealed the same way); the receiver takes the cell's
fragments in order and keeps nothing of a cell unless all of them pass.
"""

from __future__ import annotations

import random

import pytest

from backchannel.client.harness import Pair
from backchannel.errors import AuthenticationError, DecodeError, SignatureError
from backchannel.protocol import cells
from backchannel.protocol.payload import note
from tests.conftest import DetRng, make_pair
from tests.helpers import force_queue
from tests.protocol.test_cell_gossip import CELL, GOSSIP, RECEIPT, full_fragment

MID = b"\x11" * 16


def frag(n: int, mid: bytes = MID, index: int = 0, count: int = 1) -> cells.Fragment:
    return cells.Fragment(mid, index, count, bytes([n % 251 + 1]) * n)


def test_fragments_behind_the_first_round_trip_in_order() -> None:
    more = (frag(700, b"\x12" * 16), frag(900, b"\x13" * 16, 0, 2))
    content = cells.CellContent(RECEIPT, frag(1500), GOSSIP, more)
    opened = cells.CellContent.decode(content.encode(CELL))
    assert opened == content
    assert [len(f.data) for f in opened.fragments] == [1500, 700, 900]


def test_with_more_takes_whole_fragments_while_they_fit_and_never_a_control_one() -> None:
    rng = random.Random(7)
    for _ in range(300):
        first = frag(rng.randint(1, 3000))
        queue = [frag(rng.randint(1, 2500), bytes([i + 1]) * 16) for i in range(6)]
        receipt = RECEIPT if rng.random() < 0.5 else None
        gossip = GOSSIP if rng.random() < 0.5 else None
        content = cells.CellContent(receipt, first, gossip).with_more(queue, CELL)
        taken = len(content.more)
        assert list(content.more) == queue[:taken]  # a prefix, in order
        assert content.spare(CELL) >= 0
        cells.CellContent.decode(content.encode(CELL))
        if taken < len(queue):  # the next one would not have fitted
            bigger = cells.CellContent(receipt, first, gossip, tuple(queue[: taken + 1]))
            assert bigger.spare(CELL) < 0
    control = cells.Fragment(MID, 0, 1, b"c", control=True)
    assert cells.CellContent(None, frag(10)).with_more([control, frag(5)], CELL).more == ()
    assert cells.CellContent(None, control).with_more([frag(5)], CELL).more == ()
    full = cells.CellContent(RECEIPT, full_fragment(), GOSSIP)
    assert full.with_more([frag(1)], CELL).more == ()


def test_malformed_flags_and_counts_are_refused() -> None:
    raw = bytearray(cells.CellContent().encode(CELL))
    raw[1] |= cells.FLAG_MORE
    with pytest.raises(DecodeError, match="no first one"):
        cells.CellContent.decode(bytes(raw))
    control = cells.Fragment(MID, 0, 1, b"c", control=True)
    raw = bytearray(cells.CellContent(None, control).encode(CELL))
    raw[1] |= cells.FLAG_MORE
    with pytest.raises(DecodeError, match="travels alone"):
        cells.CellContent.decode(bytes(raw))
    # More flagged, a count of zero.
    raw = bytearray(cells.CellContent(None, frag(4)).encode(CELL))
    raw[1] |= cells.FLAG_MORE
    with pytest.raises(DecodeError, match="carries none"):
        cells.CellContent.decode(bytes(raw))
    # A count naming more fragments than follow: the zero padding does not parse.
    raw = bytearray(cells.CellContent(None, frag(4), None, (frag(3),)).encode(CELL))
    at = 2 + cells.FRAGMENT_HEADER_LEN + 4
    raw[at] = 2
    with pytest.raises(DecodeError):
        cells.CellContent.decode(bytes(raw))
    with pytest.raises(ValueError, match="only fragments of messages"):
        cells.CellContent(None, control, None, (frag(3),)).encode(CELL)


def test_two_short_messages_arrive_in_one_round_with_one_receipt(pair: Pair) -> None:
    for text in ("first", "second"):
        pair.send(pair.a, pair.cosign(pair.a, pair.compose(pair.a, 0, note(text)), 1))
    pair.run_round()
    assert pair.a.endpoint.pending_cells == 0
    assert [i.message.header.seq for i in pair.b.inbox] == [1, 2]
    pair.run_round()  # the receipt rides back
    assert pair.a.endpoint.delivered_seq == 2


def test_a_forged_message_behind_a_good_one_refuses_the_whole_cell(rng: DetRng) -> None:
    pair = make_pair(rng)
    good = pair.cosign(pair.a, pair.compose(pair.a, 0, note("good")), 1)
    pair.send(pair.a, good)
    solo = pair.compose(pair.a, 0, note("signed by one officer"))  # k = 2
    assert solo.message is not None
    force_queue(pair.a.endpoint, solo.message)
    before = pair.b.endpoint.transcript
    with pytest.raises(SignatureError):
        pair.run_round()
    # Neither message was taken, and the round is read again, not skipped.
    assert pair.b.inbox == []
    assert pair.b.endpoint.transcript == before
    with pytest.raises(SignatureError):
        pair.b.endpoint.receive(pair.b.endpoint.next_recv_round, _last_cell(pair))


def test_a_shared_cell_replayed_into_a_later_round_is_refused(pair: Pair) -> None:
    for text in ("one", "two"):
        pair.send(pair.a, pair.cosign(pair.a, pair.compose(pair.a, 0, note(text)), 1))
    pair.run_round()
    cell = _last_cell(pair)
    ep = pair.b.endpoint
    # Moved to the next round's slot it does not open (keys are per round).
    with pytest.raises(AuthenticationError):
        ep.receive(ep.next_recv_round, cell)
    assert len(pair.b.inbox) == 2


def _last_cell(pair: Pair) -> bytes:
    """The last cell side A deposited."""
    return pair.relay.deposits[-2][1]
