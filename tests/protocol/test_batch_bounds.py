"""The batch codecs at their exact limits: what the limit allows is taken, one
more is refused, on both the writing and the reading side (protocol/batch*.py)."""

from __future__ import annotations

import pytest

from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol import batch_log as bl
from backchannel.protocol.batch import (
    MAX_PAD_TO,
    MAX_QUERIES,
    DepositBatch,
    DepositCell,
    FetchBatch,
    IntakeAsk,
)
from backchannel.protocol.batch_query import Query
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.merkle import MAX_PROOF_LEN

SLOT = bytes(range(32))


def _read(fn, raw: bytes):  # type: ignore[no-untyped-def]
    r = Reader(raw)
    out = fn(r)
    r.end()
    return out


def test_a_proof_of_the_longest_length_and_one_more() -> None:
    most = [bytes([i]) * 32 for i in range(MAX_PROOF_LEN)]
    w = Writer()
    bl.write_hashes(w, most)
    assert _read(bl.read_hashes, w.bytes()) == tuple(most)
    with pytest.raises(LocalProtocolError):
        bl.write_hashes(Writer(), [*most, most[0]])
    over = bytes([MAX_PROOF_LEN + 1]) + b"\x00" * 32 * (MAX_PROOF_LEN + 1)
    with pytest.raises(DecodeError, match="longer than any tree"):
        _read(bl.read_hashes, over)


def test_a_leaf_of_the_longest_length_and_one_more() -> None:
    w = Writer()
    bl.write_leaf(w, b"x" * bl.MAX_LEAF_LEN)
    assert _read(bl.read_leaf, w.bytes()) == b"x" * bl.MAX_LEAF_LEN
    with pytest.raises(LocalProtocolError):
        bl.write_leaf(Writer(), b"x" * (bl.MAX_LEAF_LEN + 1))
    over = (bl.MAX_LEAF_LEN + 1).to_bytes(2, "big") + b"x" * (bl.MAX_LEAF_LEN + 1)
    with pytest.raises(DecodeError, match="impossible length"):
        _read(bl.read_leaf, over)
    with pytest.raises(DecodeError, match="impossible length"):
        _read(bl.read_leaf, b"\x00\x00")
    assert _read(lambda r: bl.read_leaf(r, empty=True), b"\x00\x00") == b""


def test_a_cell_of_the_longest_length_and_one_more() -> None:
    most = b"c" * bl.MAX_CELL_LEN
    raw = DepositBatch(0, (DepositCell("t", SLOT, most),)).encode()
    assert DepositBatch.decode(raw).cells[0].cell == most
    with pytest.raises(LocalProtocolError, match="too long"):
        DepositBatch(0, (DepositCell("t", SLOT, most + b"c"),)).encode()
    over = (bl.MAX_CELL_LEN + 1).to_bytes(4, "big") + most + b"c"
    with pytest.raises(DecodeError, match="too long"):
        _read(bl.read_cell, over)


def test_a_statement_of_absence_longer_than_any_is_refused_unread() -> None:
    over = (bl.MAX_ABSENCE_LEN + 1).to_bytes(4, "big")
    with pytest.raises(DecodeError, match="impossible length"):
        _read(lambda r: bl.read_absence(r, empty=False), over)
    with pytest.raises(DecodeError, match="impossible length"):
        _read(lambda r: bl.read_absence(r, empty=False), bytes(4))
    assert _read(lambda r: bl.read_absence(r, empty=True), bytes(4)) == b""


def test_a_fetch_with_the_most_queries_and_padding_and_one_more() -> None:
    most = tuple(Query.none() for _ in range(MAX_QUERIES))
    fetch = FetchBatch(7, MAX_PAD_TO, (SLOT,), most)
    assert FetchBatch.decode(fetch.encode()) == fetch
    with pytest.raises(LocalProtocolError):
        FetchBatch(7, MAX_PAD_TO, (SLOT,), (*most, Query.none())).encode()
    with pytest.raises(LocalProtocolError):
        FetchBatch(7, MAX_PAD_TO + 1, (SLOT,), most).encode()
    raw = bytearray(fetch.encode())
    raw[9:13] = (MAX_PAD_TO + 1).to_bytes(4, "big")
    with pytest.raises(DecodeError, match="pad_to"):
        FetchBatch.decode(bytes(raw))
    raw = bytearray(fetch.encode())
    at = 1 + 8 + 4 + 2 + 32
    assert raw[at] == MAX_QUERIES
    raw[at] = MAX_QUERIES + 1
    with pytest.raises(DecodeError, match="at most"):
        FetchBatch.decode(bytes(raw) + bytes(len(Query.none().encode())))


def test_an_intake_ask_of_the_most_rows_and_one_more() -> None:
    ask = IntakeAsk(0, 256, True)
    fetch = FetchBatch(0, 0, (SLOT,), (), ask)
    assert FetchBatch.decode(fetch.encode()).intake == ask
    with pytest.raises(LocalProtocolError):
        FetchBatch(0, 0, (SLOT,), (), IntakeAsk(0, 257, True)).encode()
    raw = bytearray(fetch.encode())
    raw[-3:-1] = (257).to_bytes(2, "big")
    with pytest.raises(DecodeError, match="1 to 256"):
        FetchBatch.decode(bytes(raw))
