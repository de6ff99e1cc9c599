"""The batch exchange's binary codec: round trips, strictness, and fuzzing.

Every decoder must take back exactly what its encoder wrote, refuse every
truncation and every appended byte, and raise nothing but DecodeError on any
input at all.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.crypto.signing import SigningKey
from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.batch import (
    MAX_PAD_TO,
    MAX_QUERIES,
    BatchPlace,
    CellPlace,
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
    Query,
    QueryAnswer,
    QueryKind,
    SlotRead,
    decode_consistency,
    decode_entry,
    decode_slot_read,
    encode_consistency,
    encode_entry,
)
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.misbehaviour import (
    RELAY_KEY_LEN,
    Absence,
    LogLeaf,
    sign_head_compact,
)

KEY = SigningKey(bytes(range(32)), bytes(range(32, 64)))
HEAD = TreeHead(9, hashlib.sha256(b"root").digest(), 1_700_000_040)
SIGNED = sign_head_compact(KEY, HEAD)
RELAY_KEY = KEY.verify_key.ed25519 + KEY.verify_key.mldsa65


def h(i: int) -> bytes:
    return hashlib.sha256(bytes([i])).digest()


def slot(i: int) -> bytes:
    return hashlib.sha256(b"slot" + bytes([i])).digest()


def leaf(i: int) -> bytes:
    return LogLeaf(i, 3, h(i), 1_700_000_000 + i).encode()


ABSENCE = Absence.make(KEY, HEAD, 1_700_000_100, "mission-b", [slot(5), slot(4)], 3600).encode()
ONE_ABSENT = Absence.make(KEY, HEAD, 1_700_000_100, "mission-b", [slot(7)], 3600).encode()
PLACE = BatchPlace(2, 1, 3, (h(1), h(2)))
BUNDLE = LogBundle(
    SIGNED,
    {2: LeafProof(leaf(2), (h(3), h(4), h(5))), 7: LeafProof(leaf(7), (h(6),))},
    (h(7), h(8)),
    RELAY_KEY,
)

DEPOSIT = DepositBatch(
    5,
    (
        DepositCell("mission-b", slot(1), b"cell one"),
        DepositCell("mission-a", slot(2), b"cell two!"),
        DepositCell("", slot(3), b""),  # refused by the relay, but well-formed
    ),
)
DEPOSIT_ANSWER = DepositBatchAnswer(
    (
        CellResult(201, h(10), PLACE),
        CellResult(200, h(11), BatchPlace(7, 0, 1, ())),
        CellResult(201, h(12)),  # stored without a log
        CellResult(404),
        CellResult(409),
        CellResult(507),
    ),
    BUNDLE,
)
QUERIES = (
    Query.none(),
    Query.consistency(3, 9),
    Query.head_at(4),
    Query.entry(2, 1, 9),
    Query.absence(slot(7)),
    Query.leaf(2),
    Query.absence(slot(8)),
    Query.absence(slot(9)),
)
FETCH = FetchBatch(9, 512, (slot(1), slot(2), slot(4), slot(5), slot(6)), QUERIES)
SLOT_CELL = SlotRead(b"cell at 8", PLACE, leaf(2), (h(3), h(4), h(5)))
ANSWERS = (
    QueryAnswer(QueryKind.NONE, True),
    QueryAnswer(QueryKind.CONSISTENCY, True, encode_consistency([h(1), h(2), h(3)])),
    QueryAnswer.refused(QueryKind.HEAD_AT, "need 0 < size <= the current log size"),
    QueryAnswer(QueryKind.ENTRY, True, encode_entry(leaf(2), [h(1)], [h(2), h(3)])),
    QueryAnswer(QueryKind.ABSENCE, True, SlotRead(absence=ONE_ABSENT).encode()),
    QueryAnswer(QueryKind.LEAF, True, leaf(2)),
    QueryAnswer(QueryKind.ABSENCE, True, SLOT_CELL.encode()),
    QueryAnswer(QueryKind.ABSENCE, True, SlotRead(spent=True).encode()),
)
FETCH_ANSWER = FetchBatchAnswer(
    (
        FetchedCell(slot(1), PLACE, b"first cell"),
        FetchedCell(slot(2), None, b"second cell, no log"),
    ),
    (slot(6),),
    ABSENCE,
    BUNDLE,
    ANSWERS,
)


FETCH_INTAKE = replace(FETCH, intake=IntakeAsk(7, 32, True))
FETCH_ANSWER_INTAKE = replace(FETCH_ANSWER, intake=((8, b"a sealed request"), (9, bytes(4096))))


def test_the_intake_part_is_asked_for_and_answered_exactly() -> None:
    # A fetch without the intake keeps version 1's bytes; one with it is version 2.
    assert FETCH.encode()[0] == 1 and FETCH_INTAKE.encode()[0] == 2
    assert FetchBatch.decode(FETCH_INTAKE.encode()).intake == IntakeAsk(7, 32, True)
    # An answer to a fetch that asked must carry the part, and one that did not, not.
    with pytest.raises(DecodeError):
        FetchBatchAnswer.decode(FETCH_ANSWER.encode(64), 64, True)
    with pytest.raises(DecodeError):
        FetchBatchAnswer.decode(FETCH_ANSWER_INTAKE.encode(64), 64, False)
    for bad in (IntakeAsk(0, 0, True), IntakeAsk(0, 257, False), IntakeAsk(-1, 1, True)):
        with pytest.raises(LocalProtocolError):
            replace(FETCH, intake=bad).encode()
    unstated = replace(FETCH, intake=IntakeAsk(7, 32, None))
    assert FetchBatch.decode(unstated.encode()) == unstated
    raw = bytearray(FETCH_INTAKE.encode())
    raw[-1] = 3  # open is 0, 1 or 2 (unstated)
    with pytest.raises(DecodeError):
        FetchBatch.decode(bytes(raw))
    raw[0] = 3  # an unknown version
    with pytest.raises(DecodeError):
        FetchBatch.decode(bytes(raw))


def samples() -> dict[str, tuple[Callable[[bytes], object], bytes, object]]:
    """name -> (decoder, valid encoding, the object it encodes)."""
    no_log = LogBundle()
    plain_answer = FetchBatchAnswer((), (), b"", no_log, ())
    return {
        "deposit": (DepositBatch.decode, DEPOSIT.encode(), DEPOSIT),
        "deposit answer": (DepositBatchAnswer.decode, DEPOSIT_ANSWER.encode(), DEPOSIT_ANSWER),
        "deposit answer, no log": (
            DepositBatchAnswer.decode,
            DepositBatchAnswer((CellResult(201, h(1)),), no_log).encode(),
            DepositBatchAnswer((CellResult(201, h(1)),), no_log),
        ),
        "fetch": (FetchBatch.decode, FETCH.encode(), FETCH),
        "fetch answer": (FetchBatchAnswer.decode, FETCH_ANSWER.encode(), FETCH_ANSWER),
        "fetch answer padded": (
            lambda raw: FetchBatchAnswer.decode(raw, 512),
            FETCH_ANSWER.encode(512),
            FETCH_ANSWER,
        ),
        "fetch answer, nothing": (FetchBatchAnswer.decode, plain_answer.encode(), plain_answer),
        "fetch with intake": (FetchBatch.decode, FETCH_INTAKE.encode(), FETCH_INTAKE),
        "fetch answer with intake": (
            lambda raw: FetchBatchAnswer.decode(raw, 64, True),
            FETCH_ANSWER_INTAKE.encode(64),
            FETCH_ANSWER_INTAKE,
        ),
        "fetch answer with no intake rows": (
            lambda raw: FetchBatchAnswer.decode(raw, 1, True),
            replace(plain_answer, intake=()).encode(),
            replace(plain_answer, intake=()),
        ),
        "entry": (
            decode_entry,
            encode_entry(leaf(1), [h(1)], [h(2)]),
            (leaf(1), (h(1),), (h(2),)),
        ),
        "slot read, cell": (decode_slot_read, SLOT_CELL.encode(), SLOT_CELL),
        "slot read, absent": (
            decode_slot_read,
            SlotRead(absence=ONE_ABSENT).encode(),
            SlotRead(absence=ONE_ABSENT),
        ),
    }


SAMPLES = samples()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(name: str) -> None:
    decode, raw, value = SAMPLES[name]
    assert decode(raw) == value


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_truncation_and_every_appended_byte_is_refused(name: str) -> None:
    decode, raw, _ = SAMPLES[name]
    for end in range(len(raw)):
        with pytest.raises(DecodeError):
            decode(raw[:end])
    for extra in (b"\x00", b"\x01", b"\xff", b"\x00" * 511, b"\x00" * 512):
        with pytest.raises(DecodeError):
            decode(raw + extra)


def test_padding_makes_the_length_a_multiple_and_is_checked() -> None:
    for pad_to in (0, 1, 7, 512, MAX_PAD_TO):
        raw = FETCH_ANSWER.encode(pad_to)
        assert len(raw) % max(pad_to, 1) == 0
        assert FetchBatchAnswer.decode(raw, pad_to) == FETCH_ANSWER
    unpadded = FETCH_ANSWER.encode()
    assert len(FETCH_ANSWER.encode(512)) - len(unpadded) < 512
    with pytest.raises(DecodeError):
        FetchBatchAnswer.decode(unpadded + b"\x00" * 3, 512)  # too little padding
    padded = bytearray(FETCH_ANSWER.encode(512))
    padded[-1] = 1
    with pytest.raises(DecodeError):
        FetchBatchAnswer.decode(bytes(padded), 512)  # padding that is not zeros


def test_accessors() -> None:
    places = DEPOSIT_ANSWER.places()
    assert places[0] == CellPlace(2, 1, 3, (h(1), h(2)), (h(3), h(4), h(5)))
    assert places[1] == CellPlace(7, 0, 1, (), (h(6),))
    assert places[2:] == [None, None, None, None]
    assert [r.stored for r in DEPOSIT_ANSWER.results] == [True] * 3 + [False] * 3
    assert BUNDLE.head() == HEAD and LogBundle().head() is None
    assert BUNDLE.leaf(7) == leaf(7) and BUNDLE.leaf(3) is None
    assert FETCH_ANSWER.cell_map() == {slot(1): b"first cell", slot(2): b"second cell, no log"}
    assert FETCH_ANSWER.places() == {slot(1): places[0]}
    absence = FETCH_ANSWER.absence()
    assert absence is not None and absence.slots == tuple(sorted([slot(4), slot(5)]))
    assert FETCH_ANSWER.answers_match(QUERIES)
    assert not FETCH_ANSWER.answers_match(QUERIES[:-1])
    assert not FETCH_ANSWER.answers_match((Query.leaf(1), *QUERIES[1:]))
    reads = FETCH_ANSWER.slot_reads(QUERIES)
    assert reads[slot(7)].absence == ONE_ABSENT and reads[slot(8)] == SLOT_CELL
    assert reads[slot(9)].spent
    assert ANSWERS[2].reason.startswith("need 0 < size") and ANSWERS[1].reason == ""
    assert decode_consistency(ANSWERS[1].payload) == (h(1), h(2), h(3))


def test_queries_carry_their_parameters() -> None:
    assert Query.consistency(3, 9).numbers == (3, 9)
    assert Query.entry(2, 1, 9).numbers == (2, 1, 9)
    assert Query.head_at(4).numbers == (4,) and Query.leaf(5).numbers == (5,)
    assert Query.absence(slot(1)).slot == slot(1) and Query.none().numbers == ()
    assert all(len(q.encode()) == 33 for q in QUERIES)
    assert len({*QUERIES, Query.head_at(4)}) == len(QUERIES)  # hashable, by value
    with pytest.raises(LocalProtocolError):
        Query.head_at(1 << 64)
    with pytest.raises(LocalProtocolError):
        Query.leaf(1).slot  # noqa: B018


@pytest.mark.parametrize(
    "raw",
    [
        bytes([7]) + bytes(32),  # unknown kind
        bytes([0, 1]) + bytes(31),  # NONE with parameters
        bytes([2]) + (5).to_bytes(8, "big") + b"\x01" + bytes(23),  # HEAD_AT, dirty padding
    ],
)
def test_malformed_queries_are_refused(raw: bytes) -> None:
    body = FetchBatch(0, 0, (), ()).encode()[:-1] + b"\x01" + raw
    with pytest.raises(DecodeError):
        FetchBatch.decode(body)


def test_limits_are_enforced_both_ways() -> None:
    with pytest.raises(LocalProtocolError):
        FetchBatch(0, MAX_PAD_TO + 1, (), ()).encode()
    with pytest.raises(LocalProtocolError):
        FetchBatch(0, 0, (), (Query.none(),) * (MAX_QUERIES + 1)).encode()
    over = FetchBatch(0, 0, (), ()).encode()[:-1] + bytes([MAX_QUERIES + 1])
    with pytest.raises(DecodeError):
        FetchBatch.decode(over + bytes(33 * (MAX_QUERIES + 1)))
    big_pad = bytearray(FetchBatch(0, 0, (), ()).encode())
    big_pad[9:13] = (MAX_PAD_TO + 1).to_bytes(4, "big")
    with pytest.raises(DecodeError):
        FetchBatch.decode(bytes(big_pad))
    with pytest.raises(LocalProtocolError):
        DepositBatchAnswer((CellResult(404, h(1)),), LogBundle()).encode()
    with pytest.raises(LocalProtocolError):
        DepositBatchAnswer((), LogBundle(SIGNED, key=b"short")).encode()
    with pytest.raises(LocalProtocolError):
        SlotRead(b"cell", spent=True).encode()
    assert len(RELAY_KEY) == RELAY_KEY_LEN


def test_a_refused_cell_may_carry_no_id_or_place() -> None:
    raw = bytearray(DepositBatchAnswer((CellResult(201, h(1)),), LogBundle()).encode())
    raw[3:5] = (409).to_bytes(2, "big")  # a refusal that keeps the stored cell's id
    with pytest.raises(DecodeError):
        DepositBatchAnswer.decode(bytes(raw))
    raw[3:5] = (302).to_bytes(2, "big")
    with pytest.raises(DecodeError):
        DepositBatchAnswer.decode(bytes(raw))


def test_leaves_are_listed_once_each_in_order() -> None:
    raw = DepositBatchAnswer((), BUNDLE).encode()
    # Swap the two leaves' indexes (2 then 7 becomes 7 then 2).
    first = raw.index((2).to_bytes(8, "big") + (53).to_bytes(2, "big"))
    second = raw.index((7).to_bytes(8, "big") + (53).to_bytes(2, "big"))
    swapped = bytearray(raw)
    swapped[first : first + 8] = (7).to_bytes(8, "big")
    swapped[second : second + 8] = (2).to_bytes(8, "big")
    with pytest.raises(DecodeError):
        DepositBatchAnswer.decode(bytes(swapped))
    same = bytearray(raw)
    same[second : second + 8] = (2).to_bytes(8, "big")
    with pytest.raises(DecodeError):
        DepositBatchAnswer.decode(bytes(same))


# -- properties -----------------------------------------------------------------------

hashes = st.lists(st.binary(min_size=32, max_size=32), max_size=4).map(tuple)
slots = st.binary(min_size=32, max_size=32)
tenants = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=70)
queries = st.one_of(
    st.just(Query.none()),
    st.builds(Query.consistency, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
    st.builds(Query.head_at, st.integers(0, 2**64 - 1)),
    st.builds(Query.entry, st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 9)),
    st.builds(Query.absence, slots),
    st.builds(Query.leaf, st.integers(0, 2**64 - 1)),
)


@settings(max_examples=60, deadline=None)
@given(
    known=st.integers(0, 2**64 - 1),
    cells=st.lists(st.builds(DepositCell, tenants, slots, st.binary(max_size=64)), max_size=5),
)
def test_deposit_batches_round_trip(known: int, cells: list[DepositCell]) -> None:
    batch = DepositBatch(known, tuple(cells))
    assert DepositBatch.decode(batch.encode()) == batch


@settings(max_examples=60, deadline=None)
@given(
    known=st.integers(0, 2**64 - 1),
    pad_to=st.integers(0, MAX_PAD_TO),
    asked=st.lists(slots, max_size=5).map(tuple),
    asks=st.lists(queries, max_size=MAX_QUERIES).map(tuple),
)
def test_fetch_batches_round_trip(
    known: int, pad_to: int, asked: tuple[bytes, ...], asks: tuple[Query, ...]
) -> None:
    batch = FetchBatch(known, pad_to, asked, asks)
    assert FetchBatch.decode(batch.encode()) == batch


@settings(max_examples=60, deadline=None)
@given(
    leaf_index=st.integers(0, 2**64 - 1),
    size=st.integers(1, 2**32 - 1),
    proof=hashes,
    pad_to=st.integers(0, 4096),
)
def test_fetch_answers_round_trip(
    leaf_index: int, size: int, proof: tuple[bytes, ...], pad_to: int
) -> None:
    place = BatchPlace(leaf_index, size - 1, size, proof)
    answer = FetchBatchAnswer(
        (FetchedCell(slot(1), place, b"c"),), (), b"", LogBundle(SIGNED, {}, proof), ()
    )
    raw = answer.encode(pad_to)
    assert len(raw) % max(pad_to, 1) == 0
    assert FetchBatchAnswer.decode(raw, pad_to) == answer


# -- fuzzing -------------------------------------------------------------------------


def _mutated(sample: bytes) -> st.SearchStrategy[bytes]:
    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        b = bytearray(sample)
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, len(b) - 1)) if b else 0
            op = draw(st.sampled_from(["flip", "cut", "insert"]))
            if op == "flip" and b:
                b[pos] ^= draw(st.integers(1, 255))
            elif op == "cut":
                del b[pos:]
            else:
                b[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        return bytes(b)

    return st.one_of(st.binary(max_size=2000), mutate())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_random_bytes_only_ever_raise_decode_error(name: str) -> None:
    decode, sample, _ = SAMPLES[name]

    @settings(max_examples=150, deadline=None)
    @given(raw=_mutated(sample))
    def run(raw: bytes) -> None:
        with contextlib.suppress(DecodeError):
            decode(raw)

    run()
