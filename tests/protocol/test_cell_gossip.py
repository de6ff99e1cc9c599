"""Gossip about the relay's log inside channel cells (relay-log-v1 §5, cell flag 0x04).

The relay carries the cells and must neither read, alter nor notice the gossip:
it is inside the encryption, of fixed length, and a cell stays 4,096 bytes.
"""

from __future__ import annotations

import hashlib

import pytest

from backchannel.client.harness import MissionKit, Pair, Side
from backchannel.crypto import labels
from backchannel.crypto.primitives import aead_seal
from backchannel.crypto.signing import SigningKey
from backchannel.errors import AuthenticationError, DecodeError
from backchannel.protocol import cells
from backchannel.protocol.channel import RoundKeys, SlotChain
from backchannel.protocol.endpoint import RoundResult
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.misbehaviour import (
    GOSSIP_LEN,
    DepositNote,
    Gossip,
    open_signed_head,
    sign_head_compact,
)
from backchannel.protocol.payload import note

CELL = 4096


def h(tag: bytes) -> bytes:
    return hashlib.sha256(tag).digest()


RELAY = SigningKey(h(b"relay ed"), h(b"relay ml"))
HEAD = TreeHead(1234, h(b"root"), 1_700_000_040)
COMPACT = sign_head_compact(RELAY, HEAD)
GOSSIP = Gossip(COMPACT, DepositNote(77, h(b"cell"), 1233, 5))
GOSSIP_NO_NOTE = Gossip(COMPACT)
CHANNEL = h(b"channel")
KEYS = SlotChain.start(h(b"channel secret"), 42).keys()
NONCE = bytes(range(12))
RECEIPT = cells.Receipt(9, h(b"transcript"), b"\x07" * 16, b"\x05" * 64)
CAPACITY = cells.fragment_capacity(CELL)


def full_fragment(fill: bytes = b"\xa5") -> cells.Fragment:
    return cells.Fragment(h(b"message")[:16], 2, 3, fill * CAPACITY)


def sealed(content: cells.CellContent, direction: int = 0, keys: RoundKeys = KEYS) -> bytes:
    return cells.seal_cell(content, keys, CHANNEL, direction, CELL, NONCE)


def test_receipt_gossip_and_a_largest_fragment_round_trip() -> None:
    assert GOSSIP_LEN == 166
    content = cells.CellContent(RECEIPT, full_fragment(), GOSSIP)
    for direction in (0, 1):
        cell = sealed(content, direction)
        assert len(cell) == CELL
        opened = cells.open_cell(cell, KEYS, CHANNEL, direction, CELL)
        assert opened == content
        assert opened.gossip == GOSSIP and opened.gossip.note == GOSSIP.note
        assert open_signed_head(opened.gossip.head, RELAY.verify_key) == HEAD
    # The capacity is exact: one byte more does not fit beside a receipt and gossip...
    over = cells.Fragment(h(b"message")[:16], 0, 1, b"\x01" * (CAPACITY + 1))
    with pytest.raises(ValueError, match="larger than the cell"):
        sealed(cells.CellContent(RECEIPT, over, GOSSIP))
    # ...and the largest fragment leaves no byte of padding.
    assert len(cells.CellContent(RECEIPT, full_fragment(), GOSSIP).encode(CELL).rstrip(b"\0")) == (
        cells.inner_size(CELL)
    )


@pytest.mark.parametrize(
    "content",
    [
        cells.CellContent(),
        cells.CellContent(gossip=GOSSIP_NO_NOTE),
        cells.CellContent(gossip=GOSSIP),
        cells.CellContent(RECEIPT, gossip=GOSSIP),
        cells.CellContent(None, full_fragment(), GOSSIP_NO_NOTE),
        cells.CellContent(RECEIPT, full_fragment()),
    ],
    ids=["cover", "gossip", "gossip+note", "receipt+gossip", "fragment+gossip", "no gossip"],
)
def test_every_combination_round_trips(content: cells.CellContent) -> None:
    opened = cells.open_cell(sealed(content), KEYS, CHANNEL, 0, CELL)
    assert opened == content
    assert (opened.gossip is None) == (content.gossip is None)
    assert opened.is_cover == (content.fragment is None)


def test_the_relay_cannot_tell_gossip_from_none() -> None:
    """Every cell is 4,096 bytes, and nothing of the gossip shows in the ciphertext."""
    variants = [
        cells.CellContent(),
        cells.CellContent(gossip=GOSSIP),
        cells.CellContent(RECEIPT, full_fragment()),
        cells.CellContent(RECEIPT, full_fragment(), GOSSIP),
    ]
    encoded = [sealed(c) for c in variants]
    assert {len(c) for c in encoded} == {CELL}
    for c in encoded:
        # Neither the head, its signature, nor the noted cell id is readable.
        for piece in (COMPACT[:49], COMPACT[49:], h(b"cell")):
            assert piece not in c


def test_the_relay_cannot_alter_gossip() -> None:
    cell = sealed(cells.CellContent(RECEIPT, None, GOSSIP))
    # Where the gossip sits in the plaintext: after nonce, version, flags and receipt.
    at = len(NONCE) + 2 + cells.RECEIPT_LEN
    for i in (at, at + 60, at + 113, at + GOSSIP_LEN - 1):
        forged = bytearray(cell)
        forged[i] ^= 0x01
        with pytest.raises(AuthenticationError):
            cells.open_cell(bytes(forged), KEYS, CHANNEL, 0, CELL)
    # Nor move a cell to the other direction or another round.
    with pytest.raises(AuthenticationError):
        cells.open_cell(cell, KEYS, CHANNEL, 1, CELL)
    later = SlotChain.start(h(b"channel secret"), 42).advance(43).keys()
    with pytest.raises(AuthenticationError):
        cells.open_cell(cell, later, CHANNEL, 0, CELL)


def test_malformed_gossip_in_an_authentic_cell_is_refused() -> None:
    inner = bytearray(cells.CellContent(gossip=GOSSIP_NO_NOTE).encode(CELL))
    inner[2 + 113] = 2  # has_note must be 0 or 1
    aad = labels.CELL_AAD + CHANNEL + KEYS.round.to_bytes(8, "big") + b"\x00"
    cell = NONCE + aead_seal(KEYS.cell_keys[0], NONCE, bytes(inner), aad)
    with pytest.raises(DecodeError):
        cells.open_cell(cell, KEYS, CHANNEL, 0, CELL)


# -- through the endpoints -------------------------------------------------------------


@pytest.fixture
def pair() -> Pair:
    counter = iter(range(1 << 30))

    def rng(n: int) -> bytes:  # deterministic, as tests.conftest.DetRng
        return hashlib.shake_256(b"cell gossip" + next(counter).to_bytes(8, "big")).digest(n)

    ny = MissionKit.create("New York", ["NY officer 0", "NY officer 1"], 2, rng)
    dc = MissionKit.create("Washington", ["DC officer 0", "DC officer 1"], 2, rng)
    return Pair(ny, dc, rng=rng)


def gossip_of(tag: bytes, round_no: int) -> Gossip:
    head = TreeHead(round_no + 1, h(tag + round_no.to_bytes(8, "big")), 1_700_000_000 + round_no)
    return Gossip(
        sign_head_compact(RELAY, head), DepositNote(round_no, h(tag), round_no, round_no % 7)
    )


def exchange(
    pair: Pair, round_no: int, gossip_a: Gossip | None, gossip_b: Gossip | None
) -> tuple[RoundResult, RoundResult, int, int]:
    """One round: both sides deposit, then each receives the other's cell."""
    a, b = pair.a.endpoint, pair.b.endpoint
    _, cell_a = a.cell_for_round(round_no, pair.rng(12), gossip_a)
    _, cell_b = b.cell_for_round(round_no, pair.rng(12), gossip_b)
    return b.receive(round_no, cell_a), a.receive(round_no, cell_b), len(cell_a), len(cell_b)


def send_note(pair: Pair, side: Side, text: str) -> None:
    pair.send(side, pair.cosign(side, pair.compose(side, 0, note(text)), 1))


def test_endpoint_delivers_gossip_in_cover_and_real_cells(pair: Pair) -> None:
    r = pair.round
    # Cover both ways: one side gossips, the other does not.
    at_b, at_a, len_a, len_b = exchange(pair, r, gossip_of(b"a", r), None)
    assert at_b.cover and at_b.gossip == gossip_of(b"a", r)
    assert at_a.cover and at_a.gossip is None
    assert len_a == len_b == CELL
    r += 1
    # A's long message, whole fragments at a time, gossip in every cell.
    send_note(pair, pair.a, "Geneva, Thursday. " * 700)
    assert len(pair.a.endpoint.outbox) >= 3
    assert len(pair.a.endpoint.outbox[0].data) == CAPACITY
    got: list[SealedMessage] = []
    while pair.a.endpoint.outbox:
        at_b, at_a, len_a, len_b = exchange(pair, r, gossip_of(b"a", r), gossip_of(b"b", r))
        assert (at_b.gossip, at_a.gossip) == (gossip_of(b"a", r), gossip_of(b"b", r))
        assert not at_b.cover and len_a == len_b == CELL
        got.extend(at_b.messages)
        r += 1
    assert len(got) == 1
    # B now owes A a receipt: its next cell carries receipt, gossip and a whole fragment.
    assert pair.b.endpoint.receipt_due is not None
    send_note(pair, pair.b, "Agreed. " * 1500)
    assert len(pair.b.endpoint.outbox[0].data) == CAPACITY
    at_b, at_a, len_a, len_b = exchange(pair, r, None, gossip_of(b"b", r))
    assert at_a.delivered == (1,)
    assert at_a.gossip == gossip_of(b"b", r) and not at_a.cover
    assert at_b.gossip is None and at_b.cover
    assert len_a == len_b == CELL
    pair.round = r + 1


def test_endpoint_refuses_malformed_gossip_and_stays_put(pair: Pair) -> None:
    a, b = pair.a.endpoint, pair.b.endpoint
    r = max(a.next_send_round, b.next_recv_round)
    keys = a._keys(r, True)
    inner = bytearray(cells.CellContent(gossip=gossip_of(b"a", r)).encode(CELL))
    assert inner[2 + 113] == 1 and any(inner[2 + 113 + 9 : 2 + 113 + 41])
    inner[2 + 113] = 0  # "no note", yet a cell id: refused
    aad = labels.CELL_AAD + a.channel_id + r.to_bytes(8, "big") + bytes([a.out_direction])
    forged = NONCE + aead_seal(keys.cell_keys[a.out_direction], NONCE, bytes(inner), aad)
    before = (b.next_recv_round, b.transcript, b.receipt_due)
    with pytest.raises(DecodeError):
        b.receive(r, forged)
    assert (b.next_recv_round, b.transcript, b.receipt_due) == before
    # The genuine cell of that round still opens.
    _, cell = a.cell_for_round(r, pair.rng(12), gossip_of(b"a", r))
    assert b.receive(r, cell).gossip == gossip_of(b"a", r)
    pair.round = r + 1
