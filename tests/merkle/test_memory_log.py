"""MemoryLog's and Frontier's own contract: the current size is the default
everywhere, and a leaf hash of the wrong length is refused with its reason."""

from __future__ import annotations

import pytest

from backchannel.errors import LocalProtocolError
from backchannel.protocol import merkle


def _log(n: int) -> merkle.MemoryLog:
    log = merkle.MemoryLog()
    for i in range(n):
        log.append(b"entry %d" % i)
    return log


def test_the_current_size_is_the_default() -> None:
    log = _log(11)
    assert log.size == 11
    for old in (1, 4, 7, 11):
        assert log.consistency_proof(old) == log.consistency_proof(old, 11)
        assert log.consistency_proof(old) == merkle.consistency_proof(log, old, 11)
    assert log.consistency_proof(3) != log.consistency_proof(3, 8)
    assert log.inclusion_proof(5) == log.inclusion_proof(5, 11)
    assert log.root() == log.root(11) != log.root(10)
    assert log.frontier() == log.frontier(11) != log.frontier(10)


def test_appending_a_wrong_length_leaf_hash_is_refused_with_its_reason() -> None:
    log, frontier = merkle.MemoryLog(), merkle.Frontier()
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(LocalProtocolError, match=r"^append takes a 32-byte leaf hash$"):
            frontier.append(bad)
        with pytest.raises(LocalProtocolError, match=r"^append_hash takes a 32-byte leaf hash$"):
            log.append_hash(bad)
    assert log.size == 0 and frontier.size == 0
    leaf = merkle.leaf_hash(b"ok")
    assert frontier.append(leaf).root() == merkle.root([b"ok"])
    assert log.append_hash(leaf) == 0 and log.root() == merkle.root([b"ok"])


def test_a_frontier_must_match_its_size() -> None:
    h = merkle.leaf_hash(b"x")
    assert merkle.Frontier(3, (h, h)).size == 3  # 0b11: two complete subtrees
    for size, hashes in ((3, (h,)), (3, (h, h, h)), (1, ()), (0, (h,)), (-1, ())):
        with pytest.raises(LocalProtocolError, match=r"^frontier does not match its size$"):
            merkle.Frontier(size, hashes)
    with pytest.raises(LocalProtocolError, match=r"^frontier does not match its size$"):
        merkle.Frontier(merkle.MAX_SIZE + 1, (h,) * 64)
    assert merkle.Frontier(merkle.MAX_SIZE, (h,) * 64).size == merkle.MAX_SIZE  # the largest
    with pytest.raises(LocalProtocolError, match=r"^frontier hashes must be 32 bytes$"):
        merkle.Frontier(1, (h[:31],))
