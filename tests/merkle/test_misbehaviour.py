"""Offline proofs of relay misbehaviour: real evidence holds, forged evidence is refused."""

from __future__ import annotations

import hashlib

import pytest

from backchannel.crypto.signing import SigningKey
from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol.merkle import MemoryLog, ProofError, TreeHead, leaf_hash
from backchannel.protocol.misbehaviour import (
    DIVERGENCE,
    FORK,
    REWIND,
    LogLeaf,
    SignedHead,
    cell_entry,
    encode_evidence,
    open_signed_head,
    sign_head,
    sign_head_compact,
    verify_cell_receipt,
    verify_misbehaviour,
)


def key(tag: bytes) -> SigningKey:
    return SigningKey(hashlib.sha256(b"ed" + tag).digest(), hashlib.sha256(b"ml" + tag).digest())


RELAY = key(b"relay")
OTHER = key(b"other")


def log_of(entries: list[bytes]) -> MemoryLog:
    log = MemoryLog()
    for e in entries:
        log.append(e)
    return log


HONEST = log_of([b"leaf %d" % i for i in range(10)])
FORKED = log_of([b"leaf %d" % i for i in range(5)] + [b"other %d" % i for i in range(5, 10)])


def head(log: MemoryLog, size: int, t: int) -> TreeHead:
    return TreeHead(size, log.root(size), t)


def signed(log: MemoryLog, size: int, t: int, signer: SigningKey = RELAY) -> bytes:
    return sign_head(signer, head(log, size, t))


def test_signed_head_round_trip_and_tamper() -> None:
    raw = signed(HONEST, 7, 120)
    assert open_signed_head(raw, RELAY.verify_key) == head(HONEST, 7, 120)
    assert SignedHead.decode(raw).encode() == raw
    with pytest.raises(SignatureError):
        open_signed_head(raw, OTHER.verify_key)
    flipped = bytearray(raw)
    flipped[5] ^= 1
    with pytest.raises(SignatureError):
        open_signed_head(bytes(flipped), RELAY.verify_key)
    with pytest.raises(DecodeError):
        open_signed_head(raw[:-1], RELAY.verify_key)


def test_fork_is_proved() -> None:
    blob = encode_evidence(FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(FORKED, 8, 60))
    assert verify_misbehaviour(blob).startswith("fork:")


def test_rewind_is_proved() -> None:
    blob = encode_evidence(REWIND, RELAY.verify_key, signed(HONEST, 9, 60), signed(HONEST, 6, 120))
    assert verify_misbehaviour(blob).startswith("rewind:")


def test_divergence_is_proved() -> None:
    a, b = signed(HONEST, 7, 60), signed(FORKED, 10, 120)
    blob = encode_evidence(
        DIVERGENCE,
        RELAY.verify_key,
        a,
        b,
        index=6,
        leaf_a=leaf_hash(b"leaf 6"),
        proof_a=HONEST.inclusion_proof(6, 7),
        leaf_b=leaf_hash(b"other 6"),
        proof_b=FORKED.inclusion_proof(6, 10),
    )
    assert verify_misbehaviour(blob).startswith("divergence:")


@pytest.mark.parametrize(
    "forged",
    [
        # same size, same root: no fork
        lambda: encode_evidence(
            FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(HONEST, 8, 120)
        ),
        # different sizes presented as a fork
        lambda: encode_evidence(
            FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(FORKED, 9, 60)
        ),
        # consistent growth presented as a rewind (larger head is later)
        lambda: encode_evidence(
            REWIND, RELAY.verify_key, signed(HONEST, 9, 120), signed(HONEST, 6, 60)
        ),
        # equal timestamps are not a rewind
        lambda: encode_evidence(
            REWIND, RELAY.verify_key, signed(HONEST, 9, 60), signed(HONEST, 6, 60)
        ),
        # consistent heads presented as divergent: the leaves are equal
        lambda: encode_evidence(
            DIVERGENCE,
            RELAY.verify_key,
            signed(HONEST, 7, 60),
            signed(HONEST, 10, 120),
            index=3,
            leaf_a=leaf_hash(b"leaf 3"),
            proof_a=HONEST.inclusion_proof(3, 7),
            leaf_b=leaf_hash(b"leaf 3"),
            proof_b=HONEST.inclusion_proof(3, 10),
        ),
        # a made-up leaf whose proof does not lead to the signed root
        lambda: encode_evidence(
            DIVERGENCE,
            RELAY.verify_key,
            signed(HONEST, 7, 60),
            signed(HONEST, 10, 120),
            index=3,
            leaf_a=leaf_hash(b"leaf 3"),
            proof_a=HONEST.inclusion_proof(3, 7),
            leaf_b=leaf_hash(b"invented"),
            proof_b=HONEST.inclusion_proof(3, 10),
        ),
    ],
)
def test_evidence_that_does_not_hold_is_refused(forged: object) -> None:
    assert callable(forged)
    with pytest.raises(ProofError):
        verify_misbehaviour(forged())


def test_heads_signed_by_another_key_are_refused() -> None:
    # A real fork, but one head is signed by somebody else: it proves nothing
    # about this relay.
    blob = encode_evidence(
        FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(FORKED, 8, 60, OTHER)
    )
    with pytest.raises(SignatureError):
        verify_misbehaviour(blob)
    # Swapping in the other key does not help either.
    blob = encode_evidence(
        FORK, OTHER.verify_key, signed(HONEST, 8, 60), signed(FORKED, 8, 60, OTHER)
    )
    with pytest.raises(SignatureError):
        verify_misbehaviour(blob)


def test_malformed_evidence_is_a_decode_error() -> None:
    blob = encode_evidence(FORK, RELAY.verify_key, signed(HONEST, 8, 60), signed(FORKED, 8, 60))
    for bad in (b"", blob[:-1], blob + b"\x00", b"\x02" + blob[1:], blob[:1] + b"\x09" + blob[2:]):
        with pytest.raises(DecodeError):
            verify_misbehaviour(bad)


def test_cell_receipt_checks_every_link() -> None:
    tenant, slot, cell = "mission-a", b"\x11" * 32, b"\x22" * 4096
    entries = [cell_entry(tenant, bytes([i]) * 32, bytes([i]) * 32) for i in range(4)]
    entries.insert(2, cell_entry(tenant, slot, hashlib.sha256(cell).digest()))
    batch = MemoryLog()
    for e in entries:
        batch.append(e)
    leaf = LogLeaf(3, len(entries), batch.root(), 600).encode()
    log = log_of([b"a", b"b", b"c"])
    log.append(leaf)
    log.append(b"later")
    h = head(log, 5, 660)
    args = {
        "tenant_id": tenant,
        "slot": slot,
        "cell": cell,
        "leaf": leaf,
        "batch_position": 2,
        "batch_proof": batch.inclusion_proof(2),
        "inclusion_proof": log.inclusion_proof(3, 5),
        "head": h,
    }
    assert verify_cell_receipt(**args).batch_index == 3  # type: ignore[arg-type]
    for change in (
        {"cell": b"\x23" * 4096},
        {"tenant_id": "mission-b"},
        {"batch_position": 1},
        {"head": head(FORKED, 5, 660)},
    ):
        with pytest.raises(ProofError):
            verify_cell_receipt(**{**args, **change})  # type: ignore[arg-type]


def test_compact_head_is_the_prefix_of_the_full_head() -> None:
    h = head(HONEST, 7, 120)
    full, compact = sign_head(RELAY, h), sign_head_compact(RELAY, h)
    assert len(compact) == 113 and len(full) == 3422
    assert full[:113] == compact  # Ed25519 is deterministic
    assert open_signed_head(compact, RELAY.verify_key) == h
    assert SignedHead.decode(full).compact().encode() == compact
    with pytest.raises(SignatureError):
        open_signed_head(compact, OTHER.verify_key)


def test_fork_is_proved_with_compact_heads() -> None:
    blob = encode_evidence(
        FORK,
        RELAY.verify_key,
        sign_head_compact(RELAY, head(HONEST, 8, 60)),
        signed(FORKED, 8, 60),
    )
    assert verify_misbehaviour(blob).startswith("fork:")
