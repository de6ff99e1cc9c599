"""The compact batch fetch answer: what the client knows is not sent again.

The client rebuilds the cells' slots, the spent slots and the whole signed
statement of absence from the slots it asked, its tenant and the bundle's
head. The rebuilt answer must equal the full one byte for byte, every
malformed compact answer must be refused, and a relay whose statuses and
signature disagree must be caught by the signature, as a whole statement
would be.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.errors import DecodeError, LocalProtocolError, SignatureError
from backchannel.protocol.batch import (
    COMPACT_ANSWER_VERSION,
    DEPOSIT_COMPACT_VERSION,
    FETCH_COMPACT_VERSION,
    BatchPlace,
    CellResult,
    DepositBatch,
    DepositBatchAnswer,
    DepositCell,
    FetchBatch,
    FetchBatchAnswer,
    FetchedCell,
    IntakeAsk,
    LeafProof,
    LogBundle,
)
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.misbehaviour import Absence
from tests.protocol.test_batch_codec import (
    ANSWERS,
    BUNDLE,
    FETCH,
    HEAD,
    KEY,
    PLACE,
    h,
    leaf,
    slot,
)

TENANT = "mission-b"
#: Asked: 1 and 2 hold cells, 4 and 5 are empty, 6 is spent; 2 asked twice.
ASKED = (slot(1), slot(2), slot(4), slot(2), slot(5), slot(6))
STATEMENT = Absence.make(
    KEY, HEAD, 1_700_000_100, TENANT, [slot(5), slot(4)], 3600, spent=[slot(6)]
).encode()
ANSWER = FetchBatchAnswer(
    (
        FetchedCell(slot(1), PLACE, b"first cell"),
        FetchedCell(slot(2), None, b"second cell, no log"),
    ),
    (slot(6),),
    STATEMENT,
    BUNDLE,
    ANSWERS,
)
FULL_CELLS = (
    FetchedCell(slot(1), PLACE, b"x" * 4096),
    FetchedCell(slot(2), PLACE, b"y" * 4096),
)


def _absence_at(answer: FetchBatchAnswer, asked: tuple[bytes, ...]) -> int:
    """Where the compact answer's absence flag sits: after version, statuses and cells."""
    at = 1 + (len(set(asked)) + 3) // 4
    for c in answer.cells:
        w = Writer()
        BatchPlace.write_optional(w, c.place)
        at += len(w.bytes()) + 4 + len(c.cell)
    return at


def test_round_trip_rebuilds_the_full_answer() -> None:
    raw = ANSWER.encode_compact(ASKED, 64)
    assert raw[0] == COMPACT_ANSWER_VERSION
    assert len(raw) % 64 == 0
    back = FetchBatchAnswer.decode_compact(raw, ASKED, TENANT, 64)
    assert back == ANSWER
    # The statement kept is the one the relay signed, and it verifies.
    assert back.absent == STATEMENT
    Absence.decode(back.absent).verify(KEY.verify_key)
    assert back.encode_compact(ASKED, 64) == raw


def test_it_is_smaller_by_the_slots_and_the_statement() -> None:
    full = replace(ANSWER, cells=FULL_CELLS)
    saved = len(full.encode()) - len(full.encode_compact(ASKED))
    # Gone: the cell and spent counts (2 + 2), two cells' and one spent slot's
    # 32 bytes, the statement whole with its length (4); come: two status
    # bytes, and the statement's time, retention and signature after a flag.
    # The bundle's hashes are all distinct here: its table costs a little.
    bundles = [Writer(), Writer()]
    BUNDLE.write(bundles[0])
    BUNDLE.write(bundles[1], dedup=True)
    table_cost = len(bundles[1].bytes()) - len(bundles[0].bytes())
    assert table_cost == 2 + 6  # the table's count, and an index a hash
    assert saved == 4 + 3 * 32 + 4 + len(STATEMENT) - (2 + 1 + 8 + 4 + 64) - table_cost
    assert saved > 250


def test_nothing_empty_means_no_statement() -> None:
    answer = FetchBatchAnswer((FetchedCell(slot(1), PLACE, b"c"),), (), b"", BUNDLE, ())
    raw = answer.encode_compact((slot(1),))
    assert FetchBatchAnswer.decode_compact(raw, (slot(1),), TENANT) == answer
    nothing = FetchBatchAnswer((), (), b"", LogBundle(), ())
    assert FetchBatchAnswer.decode_compact(nothing.encode_compact(()), (), TENANT) == nothing


def test_intake_rows_ride_the_compact_answer() -> None:
    answer = replace(ANSWER, intake=((3, b"sealed"), (4, b"sealed too")))
    raw = answer.encode_compact(ASKED, 512)
    assert FetchBatchAnswer.decode_compact(raw, ASKED, TENANT, 512, True) == answer
    with pytest.raises(DecodeError):
        FetchBatchAnswer.decode_compact(raw, ASKED, TENANT, 512, False)


def test_the_relay_cannot_build_an_answer_that_misstates_absence() -> None:
    # Its own statement must name exactly the empty and the spent slots.
    for wrong in (
        Absence.make(KEY, HEAD, 1, TENANT, [slot(5)], 3600, spent=[slot(6)]).encode(),
        Absence.make(KEY, HEAD, 1, TENANT, [slot(4), slot(5)], 3600).encode(),
        b"",
    ):
        with pytest.raises(LocalProtocolError):
            replace(ANSWER, absent=wrong).encode_compact(ASKED)
    stranger = replace(ANSWER, cells=(FetchedCell(slot(9), PLACE, b"not asked"),))
    with pytest.raises(LocalProtocolError):
        stranger.encode_compact(ASKED)


def _patched(raw: bytes, at: int, value: int) -> bytes:
    out = bytearray(raw)
    out[at] = value
    return bytes(out)


def test_malformed_compact_answers_are_refused() -> None:
    raw = ANSWER.encode_compact(ASKED)
    # Five distinct slots: two status bytes, the last with six unused bits.
    status = raw[1:3]
    assert status == bytes([0b01010000, 0b10000000])
    refused = {
        "wrong version": _patched(raw, 0, 1),
        "unused status bits set": _patched(raw, 2, status[1] | 0b1),
        "status 3": _patched(raw, 1, 0b11010000),
        # Slot 1 said empty: its cell's bytes are then read as the absence flag.
        "a cell said empty": _patched(raw, 1, 0b00010000),
        "truncated": raw[:-1],
        "appended": raw + b"\x00",
    }
    for bad in refused.values():
        with pytest.raises(DecodeError):
            FetchBatchAnswer.decode_compact(bad, ASKED, TENANT)
    # The statuses themselves are what is refused, not what they misalign after.
    for what in ("unused status bits set", "status 3"):
        with pytest.raises(DecodeError, match="slot statuses are malformed"):
            FetchBatchAnswer.decode_compact(refused[what], ASKED, TENANT)


def test_absence_flag_must_match_the_statuses() -> None:
    only_cells = FetchBatchAnswer((FetchedCell(slot(1), PLACE, b"c"),), (), b"", BUNDLE, ())
    raw = only_cells.encode_compact((slot(1),))
    flag_at = _absence_at(only_cells, (slot(1),))
    assert raw[flag_at] == 0
    with pytest.raises(DecodeError, match="exactly when"):
        FetchBatchAnswer.decode_compact(_patched(raw, flag_at, 1), (slot(1),), TENANT)


def test_a_statement_without_a_head_or_out_of_bounds_is_refused() -> None:
    no_head = replace(ANSWER, log=LogBundle())
    with pytest.raises(DecodeError, match="head"):
        FetchBatchAnswer.decode_compact(no_head.encode_compact(ASKED), ASKED, TENANT)
    raw = ANSWER.encode_compact(ASKED)
    retention_at = _absence_at(ANSWER, ASKED) + 1 + 8
    assert raw[retention_at : retention_at + 4] == (3600).to_bytes(4, "big")
    short = raw[:retention_at] + (60).to_bytes(4, "big") + raw[retention_at + 4 :]
    with pytest.raises(DecodeError, match="cannot stand"):
        FetchBatchAnswer.decode_compact(short, ASKED, TENANT)


def test_a_relay_whose_statuses_and_signature_disagree_is_caught() -> None:
    """The relay signs slot 4 empty but tells the client slot 1 (holding its
    cell) was the empty one: the rebuilt statement does not verify."""
    lying = Absence.make(
        KEY, HEAD, 1_700_000_100, TENANT, [slot(1), slot(5)], 3600, spent=[slot(6)]
    )
    raw = ANSWER.encode_compact(ASKED)
    sig_at = _absence_at(ANSWER, ASKED) + 1 + 8 + 4
    swapped = raw[:sig_at] + lying.signature + raw[sig_at + 64 :]
    rebuilt = FetchBatchAnswer.decode_compact(swapped, ASKED, TENANT)
    with pytest.raises(SignatureError):
        Absence.decode(rebuilt.absent).verify(KEY.verify_key)
    # And for another tenant (a relay answering from someone else's tenant).
    other = FetchBatchAnswer.decode_compact(raw, ASKED, "mission-c")
    with pytest.raises(SignatureError):
        Absence.decode(other.absent).verify(KEY.verify_key)


def test_compact_fetch_request() -> None:
    compact = replace(FETCH, compact=True)
    raw = compact.encode()
    assert raw[0] == FETCH_COMPACT_VERSION
    assert FetchBatch.decode(raw) == compact
    asking = replace(compact, intake=IntakeAsk(7, 32, None))
    assert FetchBatch.decode(asking.encode()) == asking
    with pytest.raises(DecodeError):
        FetchBatch.decode(raw + b"\x00")  # after the queries: the intake ask or nothing


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 6))
def test_decoder_raises_only_decode_error(data: bytes, n: int) -> None:
    raw = bytes([COMPACT_ANSWER_VERSION]) + data
    with contextlib.suppress(DecodeError):
        FetchBatchAnswer.decode_compact(raw, ASKED[:n], TENANT)


# -- the bundle with each hash once ---------------------------------------------------


def _shared_bundle() -> LogBundle:
    """Two leaves whose proofs share their upper hashes with each other and the
    consistency proof, as a round's leaves do."""
    top = tuple(h(40 + i) for i in range(6))
    return LogBundle(
        BUNDLE.signed_head,
        {
            3: LeafProof(leaf(3), (h(1), h(2), *top)),
            5: LeafProof(leaf(5), (h(3), h(1), *top)),
        },
        (h(4), *top[2:]),
    )


def _wide_bundle() -> LogBundle:
    """Over 256 distinct hashes: indexes take two bytes."""
    hashes = [hashlib.sha256(i.to_bytes(2, "big")).digest() for i in range(300)]
    leaves = {i: LeafProof(leaf(i), tuple(hashes[50 * i : 50 * i + 60])) for i in range(6)}
    return LogBundle(BUNDLE.signed_head, leaves, tuple(hashes[:10]))


def _dedup(bundle: LogBundle) -> bytes:
    w = Writer()
    bundle.write(w, dedup=True)
    return w.bytes()


def test_each_hash_travels_once() -> None:
    bundle = _shared_bundle()
    raw = _dedup(bundle)
    full = Writer()
    bundle.write(full)
    assert LogBundle.read(Reader(raw), dedup=True) == bundle
    # 8 + 8 + 5 hashes in the proofs, 10 of them distinct: 11 fewer hashes, and
    # the table's count and one index a hash more.
    assert len(full.bytes()) - len(raw) == 11 * 32 - (2 + 21)
    wide = _wide_bundle()
    raw = _dedup(wide)
    assert LogBundle.read(Reader(raw), dedup=True) == wide
    # head, the table of 300, six leaves, two-byte indexes (five proofs of 60
    # hashes, the last of 50: the hashes run out), the consistency proof's 10, the key.
    leaves = 6 * (8 + 2 + len(leaf(0)) + 1) + 2 * (5 * 60 + 50)
    assert len(raw) == 2 + 113 + 2 + 300 * 32 + 2 + leaves + 1 + 2 * 10 + 2


def test_a_bundle_has_one_encoding() -> None:
    raw = _dedup(_shared_bundle())
    table_at = 2 + len(BUNDLE.signed_head)
    assert int.from_bytes(raw[table_at : table_at + 2], "big") == 10
    first = table_at + 2
    proofs_at = first + 10 * 32
    first_index = proofs_at + 2 + 8 + 2 + len(leaf(3)) + 1
    assert raw[first_index] == 0
    twice = bytearray(raw)  # the same hash twice in the table
    twice[first + 32 : first + 64] = raw[first : first + 32]
    unused = raw[:table_at] + (11).to_bytes(2, "big") + raw[first:proofs_at] + h(99)
    unused += raw[proofs_at:]
    out_of_range = bytearray(raw)  # the first index points past the table
    out_of_range[first_index] = 200
    out_of_order = bytearray(raw)  # the first index used is not the first hash
    out_of_order[first_index] = 1
    for bad in (bytes(twice), unused, bytes(out_of_range), bytes(out_of_order)):
        assert bad != raw
        with pytest.raises(DecodeError):
            LogBundle.read(Reader(bad), dedup=True)
    # Two hashes of the table swapped read as other proofs (which then fail
    # their verification), not as the same bundle.
    swapped = bytearray(raw)
    swapped[first : first + 64] = raw[first + 32 : first + 64] + raw[first : first + 32]
    assert LogBundle.read(Reader(bytes(swapped)), dedup=True) != _shared_bundle()


def test_a_compact_deposit_answer_lists_each_hash_once() -> None:
    answer = DepositBatchAnswer((CellResult(201, h(9), PLACE),), _shared_bundle())
    compact = answer.encode(compact=True)
    assert compact[0] == COMPACT_ANSWER_VERSION
    assert DepositBatchAnswer.decode(compact) == answer
    assert len(answer.encode()) - len(compact) == 11 * 32 - (2 + 21)
    deposit = DepositBatch(7, (DepositCell("mission-b", slot(1), b"cell"),), compact=True)
    raw = deposit.encode()
    assert raw[0] == DEPOSIT_COMPACT_VERSION
    assert DepositBatch.decode(raw) == deposit
