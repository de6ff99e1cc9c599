"""The batch answers' log parts at their edges: each check alone, and the first
value a field may take (what mutation testing showed untested)."""

from __future__ import annotations

import pytest

from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.batch import CellResult
from backchannel.protocol.batch_log import BatchPlace, LeafProof, LogBundle
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.merkle import TreeHead

_HEAD = TreeHead(3, bytes(32), 1_700_000_000).encode() + bytes(64)
_LEAF = bytes(53)


def _place_bytes(position: int, size: int) -> bytes:
    w = Writer()
    BatchPlace(7, 0, 2, ()).write(w)
    raw = bytearray(w.bytes())
    raw[8:12] = position.to_bytes(4, "big")
    raw[12:16] = size.to_bytes(4, "big")
    return bytes(raw)


def test_a_batch_position_must_be_below_the_batch_size_and_may_be_just_below() -> None:
    assert BatchPlace.read(Reader(_place_bytes(1, 2))).batch_position == 1
    for read in (BatchPlace.read, BatchPlace.read_optional):
        with pytest.raises(DecodeError, match="below the batch size"):
            read(Reader(_place_bytes(2, 2)))
    with pytest.raises(LocalProtocolError, match="out of range"):
        BatchPlace(7, 2, 2, ()).write(Writer())


def _bundle(bundle: LogBundle) -> LogBundle:
    w = Writer()
    bundle.write(w)
    r = Reader(w.bytes())
    out = LogBundle.read(r)
    r.end()
    return out


def test_a_bundle_may_prove_leaf_zero() -> None:
    bundle = LogBundle(_HEAD, {0: LeafProof(_LEAF, ()), 1: LeafProof(_LEAF, ())})
    assert set(_bundle(bundle).leaves) == {0, 1}


def test_proofs_of_either_kind_need_a_head() -> None:
    for bundle in (
        LogBundle(b"", {}, (bytes(32),)),
        LogBundle(b"", {0: LeafProof(_LEAF, ())}),
    ):
        w = Writer()
        bundle.write(w)
        with pytest.raises(DecodeError, match="need a head"):
            LogBundle.read(Reader(w.bytes()))


@pytest.mark.parametrize(("status", "has_place"), [(299, 0), (201, 2)])
def test_a_cell_result_wrong_in_one_field_alone_is_refused(status: int, has_place: int) -> None:
    raw = Writer().u16(status).fixed(bytes(32), 32).u8(has_place).bytes()
    with pytest.raises(DecodeError):
        CellResult.read(Reader(raw))
