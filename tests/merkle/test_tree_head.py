"""Tree heads: encoding, version byte, and refusal of malformed bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol import merkle
from backchannel.protocol.merkle import MemoryLog, ProofError, TreeHead

ROOT = bytes(range(32))

# A fixture of the version-1 encoding: it must keep decoding in later versions.
V1_FIXTURE = bytes.fromhex(
    "01"  # version
    "0000000000000007"  # size
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"  # root
    "0000000069b0f2c0"  # timestamp
)


def test_encoding_layout() -> None:
    head = TreeHead(7, ROOT, 0x69B0F2C0)
    assert head.encode() == V1_FIXTURE
    assert len(V1_FIXTURE) == merkle.TREE_HEAD_LEN
    assert TreeHead.decode(V1_FIXTURE) == head


@settings(max_examples=100)
@given(
    size=st.integers(1, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    ts=st.integers(0, 2**64 - 1),
)
def test_round_trip(size: int, root: bytes, ts: int) -> None:
    head = TreeHead(size, root, ts)
    assert TreeHead.decode(head.encode()) == head


def test_empty_head_carries_the_empty_root() -> None:
    head = TreeHead(0, merkle.EMPTY_ROOT, 1)
    assert TreeHead.decode(head.encode()) == head
    with pytest.raises(LocalProtocolError):
        TreeHead(0, ROOT, 1)
    forged = bytearray(head.encode())
    forged[9] ^= 1
    with pytest.raises(DecodeError):
        TreeHead.decode(bytes(forged))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        V1_FIXTURE[:-1],
        V1_FIXTURE + b"\x00",
        b"\x02" + V1_FIXTURE[1:],
        b"\x00" + V1_FIXTURE[1:],
    ],
    ids=["empty", "truncated", "trailing", "version-2", "version-0"],
)
def test_malformed_encodings(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        TreeHead.decode(raw)


@settings(max_examples=300)
@given(raw=st.binary(max_size=80))
def test_garbage_only_raises_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        TreeHead.decode(raw)


def test_local_construction_checks() -> None:
    for bad in [(-1, ROOT, 0), (2**64, ROOT, 0), (1, ROOT[:31], 0), (1, ROOT, -1)]:
        with pytest.raises(LocalProtocolError):
            TreeHead(*bad)


def test_heads_check_consistency() -> None:
    log = MemoryLog()
    heads = [TreeHead(0, log.root(), 0)]
    for i in range(1, 12):
        log.append(i.to_bytes(2, "big"))
        heads.append(TreeHead(i, log.root(), i))
    heads[0].check_consistent(heads[5], [])
    for a in heads[1:]:
        for b in heads[a.size :]:
            a.check_consistent(b, log.consistency_proof(a.size, b.size))
    # A relay that rewrote entry 2 cannot connect its new head to the old ones.
    forked = MemoryLog()
    for i in range(1, 12):
        forked.append(b"rewritten" if i == 3 else i.to_bytes(2, "big"))
    fork_head = TreeHead(11, forked.root(), 11)
    with pytest.raises(ProofError):
        heads[4].check_consistent(fork_head, forked.consistency_proof(4, 11))
    with pytest.raises(ProofError, match="from the empty tree"):
        heads[0].check_consistent(heads[3], log.consistency_proof(1, 3))
