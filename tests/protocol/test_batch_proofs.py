"""Shared batch proofs: each batch's proof once, rebuilt by the reader.

An answer naming several cells of one batch sends only the subtrees the reader
cannot compute from the cells it knows (its own deposit, the cells it
fetched). The reader must rebuild exactly the RFC 9162 audit paths a whole
answer carries, refuse a shared proof of the wrong shape, and a relay that
sends a wrong node must fail the same check a wrong whole path fails.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol.batch import (
    FETCH_SHARED_VERSION,
    SHARED_VERSION,
    BatchPlace,
    CellResult,
    DepositBatch,
    DepositBatchAnswer,
    DepositCell,
    FetchBatch,
    FetchBatchAnswer,
    FetchedCell,
    LeafProof,
    LogBundle,
)
from backchannel.protocol.batch_proofs import missing, pack, path_ranges, unpack
from backchannel.protocol.merkle import MemoryLog, ProofError, leaf_hash, verify_inclusion
from backchannel.protocol.misbehaviour import LogLeaf, cell_entry
from tests.protocol.test_batch_codec import BUNDLE, SIGNED, h, slot

TENANT = "mission-b"


def _tree(entries: list[bytes]) -> MemoryLog:
    tree = MemoryLog()
    for e in entries:
        tree.append(e)
    return tree


def _entry(tenant: str, s: bytes, cell: bytes) -> bytes:
    return cell_entry(tenant, s, hashlib.sha256(cell).digest())


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 300).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1), min_size=1))
    )
)
def test_the_shared_nodes_rebuild_every_standard_path(case: tuple[int, set[int]]) -> None:
    size, known = case
    entries = [i.to_bytes(4, "big") for i in range(size)]
    tree = _tree(entries)
    paths = {i: tree.inclusion_proof(i, size) for i in known}
    nodes = pack(size, paths)
    assert len(nodes) == len(missing(size, sorted(known)))
    assert len(nodes) <= sum(len(p) for p in paths.values())
    got, batch_root = unpack(size, {i: leaf_hash(entries[i]) for i in known}, nodes)
    assert got == paths and batch_root == tree.root(size)
    for i in known:
        assert len(path_ranges(i, size)) == len(paths[i])


def test_a_devices_own_cells_side_by_side_need_only_the_subtrees_around_them() -> None:
    # Positions 4, 5 and 6 of 16: their three whole paths hold 12 hashes; the
    # reader computes 4, 5, 6 and (4, 6) itself and needs three subtrees.
    assert missing(16, [4, 5, 6]) == [(0, 4), (7, 8), (8, 16)]
    tree = _tree([bytes([i]) for i in range(16)])
    paths = {i: tree.inclusion_proof(i, 16) for i in (4, 5, 6)}
    assert sum(len(p) for p in paths.values()) == 12
    assert pack(16, paths) == [tree.root(4), tree.node(0, 7), tree.node(3, 1)]
    # Every leaf known: nothing to send.
    assert missing(5, [0, 1, 2, 3, 4]) == []


def test_a_shared_proof_of_the_wrong_shape_is_refused() -> None:
    tree = _tree([bytes([i]) for i in range(8)])
    paths = {i: tree.inclusion_proof(i, 8) for i in (1, 2)}
    nodes = pack(8, paths)
    leaves = {i: leaf_hash(bytes([i])) for i in (1, 2)}
    for wrong in (nodes[:-1], [*nodes, nodes[0]]):
        with pytest.raises(DecodeError):
            unpack(8, leaves, wrong)
    with pytest.raises(LocalProtocolError):
        pack(8, {1: paths[1][:-1]})  # a path of the wrong length
    with pytest.raises(LocalProtocolError):
        pack(8, {1: paths[1], 2: [*paths[2][:2], bytes(32)]})  # disagreeing on (4, 8)
    with pytest.raises(LocalProtocolError):
        pack(8, {8: paths[1]})  # outside the batch


# -- the shared deposit answer -----------------------------------------------------

#: A batch of six cells of which the deposit's three sit at 2, 3 and 4.
DEPOSITED = tuple(DepositCell(TENANT, slot(10 + i), bytes([i]) * 64) for i in range(4))
OTHERS = [_entry("mission-x", slot(30 + i), bytes([i])) for i in range(3)]
BATCH_ENTRIES = [
    OTHERS[0],
    OTHERS[1],
    *(_entry(c.tenant_id, c.slot, c.cell) for c in DEPOSITED[:3]),
    OTHERS[2],
]
BATCH = _tree(BATCH_ENTRIES)


def _bundle(*batches: tuple[int, MemoryLog, int]) -> LogBundle:
    """A bundle whose leaves are these (leaf index, batch tree, batch size), beside
    the codec tests' leaf 2, which no place of these tests names."""
    leaves = {
        i: LeafProof(LogLeaf(i, size, tree.root(size), 1_700_000_000 + i).encode(), (h(i),))
        for i, tree, size in batches
    }
    return LogBundle(SIGNED, {2: BUNDLE.leaves[2], **leaves}, (h(40),))


def _place(leaf: int, position: int, tree: MemoryLog = BATCH, size: int = 6) -> BatchPlace:
    return BatchPlace(leaf, position, size, tuple(tree.inclusion_proof(position, size)))


def _deposit_answer() -> DepositBatchAnswer:
    results = (
        CellResult(201, hashlib.sha256(DEPOSITED[0].cell).digest(), _place(7, 2)),
        CellResult(201, hashlib.sha256(DEPOSITED[1].cell).digest(), _place(7, 3)),
        CellResult(200, hashlib.sha256(DEPOSITED[2].cell).digest(), _place(7, 4)),
        CellResult(409),
    )
    return DepositBatchAnswer(results, _bundle((7, BATCH, 6)))


def test_a_shared_deposit_answer_rebuilds_the_whole_answer_from_the_deposit() -> None:
    batch = DepositBatch(5, DEPOSITED, compact=True, shared=True)
    raw = batch.encode()
    assert raw[0] == SHARED_VERSION and DepositBatch.decode(raw) == batch
    answer = _deposit_answer()
    shared = answer.encode(shared=True)
    assert shared[0] == SHARED_VERSION
    assert DepositBatchAnswer.decode(shared, batch) == answer
    # Compact: three placed results (status 2, id 32, flag 1, place 16, count 1)
    # with 3 + 3 + 2 path hashes, one refused (2 + 32 + 1), leaf 7 whole (its
    # length and 53 bytes). Shared: four results (status 2, place 16), the two
    # subtrees the deposit cannot compute, leaf 7 as its time (8); leaf 2,
    # which no result names, whole in both.
    assert missing(6, [2, 3, 4]) == [(0, 2), (5, 6)]
    compact = answer.encode(compact=True)
    assert len(compact) - len(shared) == (3 * 52 + 8 * 32 + 35 + 55) - (4 * 18 + 2 * 32 + 8)
    with pytest.raises(DecodeError):
        DepositBatchAnswer.decode(shared)  # only beside its deposit
    with pytest.raises(DecodeError):
        DepositBatchAnswer.decode(shared, replace(batch, cells=DEPOSITED[:3]))


def test_a_wrong_shared_node_fails_as_a_wrong_path_would() -> None:
    batch = DepositBatch(5, DEPOSITED, compact=True, shared=True)
    shared = bytearray(_deposit_answer().encode(shared=True))
    # The first shared node (subtree (0, 2)) follows the four results.
    at = 1 + 2 + 4 * (2 + 16)
    shared[at] ^= 1
    lied = DepositBatchAnswer.decode(bytes(shared), batch)
    root = BATCH.root(6)
    for cell, result in zip(DEPOSITED[:3], lied.results, strict=False):
        assert result.place is not None
        with pytest.raises(ProofError):
            verify_inclusion(
                leaf_hash(_entry(cell.tenant_id, cell.slot, cell.cell)),
                result.place.batch_position,
                6,
                result.place.batch_proof,
                root,
            )


def test_a_relay_cannot_answer_a_cell_it_refused_or_put_two_cells_in_one_place() -> None:
    batch = DepositBatch(5, DEPOSITED, compact=True, shared=True)
    answer = _deposit_answer()
    twice = replace(
        answer,
        results=(
            answer.results[0],
            replace(answer.results[1], place=_place(7, 2)),
            *answer.results[2:],
        ),
    )
    two_sizes = replace(
        answer,
        results=(
            answer.results[0],
            replace(answer.results[1], place=replace(_place(7, 3), batch_size=7)),
            *answer.results[2:],
        ),
    )
    with pytest.raises(LocalProtocolError):
        two_sizes.encode(shared=True)
    # Two different cells in one place: the relay may say it, the device refuses it.
    with pytest.raises(DecodeError):
        DepositBatchAnswer.decode(twice.encode(shared=True), batch)
    raw = answer.encode(shared=True)
    # Result 0 says 409 but keeps its place; results 0 and 1 share position 2.
    refused_placed = raw[:3] + (409).to_bytes(2, "big") + raw[5:]
    second_at = 3 + 18 + 2 + 8
    same_place = raw[:second_at] + (2).to_bytes(4, "big") + raw[second_at + 4 :]
    for bad_raw in (refused_placed, same_place):
        with pytest.raises(DecodeError):
            DepositBatchAnswer.decode(bad_raw, batch)


# -- the shared fetch answer ---------------------------------------------------------

ASKED = (slot(1), slot(2), slot(3), slot(4))
FETCHED = [bytes([0xC0 + i]) * 100 for i in range(3)]
FETCH_ENTRIES = [_entry(TENANT, slot(1 + i), FETCHED[i]) for i in range(3)]
FETCH_TREE = _tree([OTHERS[0], *FETCH_ENTRIES[:2], OTHERS[1], OTHERS[2]])
OLD_TREE = _tree([OTHERS[0], FETCH_ENTRIES[2]])


def _fetch_answer() -> FetchBatchAnswer:
    cells = (
        FetchedCell(slot(1), _place(9, 1, FETCH_TREE, 5), FETCHED[0]),
        FetchedCell(slot(2), _place(9, 2, FETCH_TREE, 5), FETCHED[1]),
        FetchedCell(slot(3), _place(4, 1, OLD_TREE, 2), FETCHED[2]),
        FetchedCell(slot(4), None, b"a cell stored without a log"),
    )
    return FetchBatchAnswer(cells, log=_bundle((9, FETCH_TREE, 5), (4, OLD_TREE, 2)))


def test_a_shared_fetch_answer_rebuilds_the_whole_answer_from_the_cells() -> None:
    asked = ASKED
    fetch = FetchBatch(5, 64, asked, (), compact=True, shared=True)
    raw = fetch.encode()
    assert raw[0] == FETCH_SHARED_VERSION and FetchBatch.decode(raw) == fetch
    answer = _fetch_answer()
    shared = answer.encode_compact(asked, 64, shared=True)
    assert shared[0] == SHARED_VERSION and len(shared) % 64 == 0
    assert FetchBatchAnswer.decode_compact(shared, asked, TENANT, 64) == answer
    assert answer.encode_compact(asked, 64) != shared
    # Compact: four places (16 and a count) with 3 + 3 + 1 path hashes, leaves
    # 4 and 9 whole (2 + 53 each). Shared: four places (16), leaf 4's one
    # subtree and leaf 9's three, the two leaves as their times (8 each).
    unpadded = answer.encode_compact(asked, 1, shared=True)
    assert len(answer.encode_compact(asked, 1)) - len(unpadded) == (4 * 17 + 7 * 32 + 2 * 55) - (
        4 * 16 + 4 * 32 + 2 * 8
    )
    # Read from another tenant, the same bytes name other entries: the rebuilt
    # paths then fail against the batch root.
    other = FetchBatchAnswer.decode_compact(shared, asked, "mission-c", 64)
    place = other.cells[0].place
    assert place is not None
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(FETCH_ENTRIES[0]), 1, 5, place.batch_proof, FETCH_TREE.root(5))


def test_a_truncated_or_overlong_shared_fetch_answer_is_refused() -> None:
    asked = ASKED
    answer = FetchBatchAnswer(_fetch_answer().cells, log=LogBundle())
    raw = answer.encode_compact(asked, shared=True)
    assert FetchBatchAnswer.decode_compact(raw, asked, TENANT) == answer
    for bad in (raw[:-1], raw + b"\x00", raw[:-40] + raw[-8:]):
        with pytest.raises(DecodeError):
            FetchBatchAnswer.decode_compact(bad, asked, TENANT)


def test_a_shared_answer_placing_a_cell_that_has_no_entry_is_malformed() -> None:
    # A relay must refuse a cell to the empty tenant id; a shared answer that
    # stores and places it cannot be read (the entry cannot exist).
    nameless = DepositBatch(0, (DepositCell("", slot(1), b"cell"),), compact=True, shared=True)
    placed = CellResult(201, hashlib.sha256(b"cell").digest(), BatchPlace(0, 0, 1, ()))
    raw = DepositBatchAnswer((placed,), LogBundle()).encode(shared=True)
    with pytest.raises(DecodeError):
        DepositBatchAnswer.decode(raw, nameless)
    refused = DepositBatchAnswer((CellResult(400),), LogBundle()).encode(shared=True)
    assert DepositBatchAnswer.decode(refused, nameless).results == (CellResult(400),)


def test_a_leaf_the_relay_logged_otherwise_fails_its_inclusion() -> None:
    # The relay's log holds, at index 1, a leaf for another batch than the one
    # the device's cells make. The shared answer sends the leaf as its time;
    # the device rebuilds it from its own cells, and that leaf is not in the
    # relay's tree.
    other = _tree([b"another batch"] * 6)
    logged = LogLeaf(1, 6, other.root(6), 1_700_000_001).encode()
    log = _tree([LogLeaf(0, 1, bytes(32), 1_700_000_000).encode(), logged])
    results = tuple(
        CellResult(201, hashlib.sha256(c.cell).digest(), _place(1, i + 2))
        for i, c in enumerate(DEPOSITED[:3])
    )
    bundle = LogBundle(SIGNED, {1: LeafProof(logged, tuple(log.inclusion_proof(1, 2)))})
    batch = DepositBatch(0, DEPOSITED[:3], compact=True, shared=True)
    read = DepositBatchAnswer.decode(DepositBatchAnswer(results, bundle).encode(shared=True), batch)
    rebuilt = read.log.leaves[1]
    assert rebuilt.leaf == LogLeaf(1, 6, BATCH.root(6), 1_700_000_001).encode() != logged
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(rebuilt.leaf), 1, 2, rebuilt.inclusion_proof, log.root(2))


def test_a_relay_cannot_send_a_leaf_of_another_index_as_its_time() -> None:
    answer = _deposit_answer()
    wrong = LeafProof(LogLeaf(8, 6, BATCH.root(6), 1).encode(), (h(1),))
    moved = replace(answer, log=replace(answer.log, leaves={**answer.log.leaves, 7: wrong}))
    with pytest.raises(LocalProtocolError):
        moved.encode(shared=True)


def test_the_same_cell_twice_in_one_deposit_is_one_cell_in_one_place() -> None:
    cell = DEPOSITED[0]
    batch = DepositBatch(5, (cell, cell), compact=True, shared=True)
    tree = _tree([OTHERS[0], _entry(cell.tenant_id, cell.slot, cell.cell)])
    place = _place(3, 1, tree, 2)
    cell_id = hashlib.sha256(cell.cell).digest()
    answer = DepositBatchAnswer(
        (CellResult(201, cell_id, place), CellResult(200, cell_id, place)),
        _bundle((3, tree, 2)),
    )
    raw = answer.encode(shared=True)
    assert DepositBatchAnswer.decode(raw, batch) == answer
    other = replace(place, batch_proof=(h(9),))
    with pytest.raises(LocalProtocolError):
        replace(answer, results=(answer.results[0], CellResult(200, cell_id, other))).encode(
            shared=True
        )
