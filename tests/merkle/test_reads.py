"""Proof generation reads O(log n) nodes: a count of reads, not a timing.

Bound: at most ``2 * ceil(log2 n) + 2`` reads for a tree of ``n`` leaves,
checked for every pair in small trees and for trees up to 10**6 leaves that are
never stored (the readers compute each node on demand).
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.protocol import merkle
from tests.merkle.helpers import CountingReader, SyntheticReader, UniformReader

MAX_N = 10**6


def _bound(n: int) -> int:
    return 2 * math.ceil(math.log2(n)) + 2 if n > 1 else 2


def _inclusion_reads(n: int, index: int) -> list[tuple[int, int]]:
    reader = CountingReader(SyntheticReader(2**20), limit=n)
    merkle.inclusion_proof(reader, index, n)
    return reader.reads


def _consistency_reads(old: int, new: int) -> list[tuple[int, int]]:
    reader = CountingReader(SyntheticReader(2**20), limit=new)
    merkle.consistency_proof(reader, old, new)
    return reader.reads


def test_every_pair_in_small_trees() -> None:
    for n in range(1, 130):
        for i in range(n):
            reads = _inclusion_reads(n, i)
            assert len(reads) <= _bound(n), (i, n)
            assert len(set(reads)) == len(reads)
            reads = _consistency_reads(i + 1, n)
            assert len(reads) <= _bound(n), (i + 1, n)
            assert len(set(reads)) == len(reads)


EDGES = [MAX_N, MAX_N - 1, 2**19, 2**19 + 1, 2**20 - 1, 999_983, 777_777, 3, 2]


def test_edge_sizes_up_to_a_million() -> None:
    for n in EDGES:
        for i in {0, 1 % n, n // 3, n // 2, n - 2 if n > 1 else 0, n - 1}:
            assert len(_inclusion_reads(n, i)) <= _bound(n), (i, n)
            assert len(_consistency_reads(i + 1, n)) <= _bound(n), (i + 1, n)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_pairs_up_to_a_million(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, MAX_N))
    i = data.draw(st.integers(0, n - 1))
    old = data.draw(st.integers(1, n))
    assert len(_inclusion_reads(n, i)) <= _bound(n)
    assert len(_consistency_reads(old, n)) <= _bound(n)
    root = CountingReader(SyntheticReader(2**20), limit=n)
    merkle.tree_root(root, n)
    assert len(root.reads) == n.bit_count()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_million_leaf_proofs_verify(data: st.DataObject) -> None:
    # A real tree of identical leaves: node hashes are cheap, proofs are genuine.
    n = data.draw(st.integers(1, MAX_N))
    i = data.draw(st.integers(0, n - 1))
    old = data.draw(st.integers(1, n))
    reader = CountingReader(UniformReader(n))
    root = merkle.tree_root(reader, n)
    merkle.verify_inclusion(UniformReader.LEAF, i, n, merkle.inclusion_proof(reader, i, n), root)
    merkle.verify_consistency(
        old, n, merkle.tree_root(reader, old), root, merkle.consistency_proof(reader, old, n)
    )
    assert merkle.frontier_of(reader, n).root() == root
