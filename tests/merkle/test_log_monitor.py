"""The client's log monitor: growth accepted; forks, rewinds, bad proofs and keys refused."""

from __future__ import annotations

import pytest

from backchannel.crypto.signing import SigningKey
from backchannel.errors import SignatureError
from backchannel.protocol.log_monitor import LogMonitor
from backchannel.protocol.merkle import (
    MemoryLog,
    ProofError,
    TreeHead,
    consistency_proof,
    tree_root,
)
from backchannel.protocol.misbehaviour import relay_key_bytes, sign_head_compact

KEY = SigningKey(b"\x01" * 32, b"\x02" * 32)
OTHER = SigningKey(b"\x03" * 32, b"\x04" * 32)


def _log(n: int, salt: bytes = b"") -> MemoryLog:
    log = MemoryLog()
    for i in range(n):
        log.append(salt + i.to_bytes(4, "big"))
    return log


def _signed(log: MemoryLog, size: int, ts: int, key: SigningKey = KEY) -> bytes:
    return sign_head_compact(key, TreeHead(size, tree_root(log, size), ts))


def _monitor() -> LogMonitor:
    return LogMonitor(relay_key_bytes(KEY.verify_key))


def test_growing_log_is_followed() -> None:
    log = _log(20)
    m = _monitor().advance(_signed(log, 5, 100))
    for size, ts in ((9, 160), (20, 200)):
        new = m.open(_signed(log, size, ts))
        first, second = m.proof_needed(new) or (0, 0)
        m = m.advance(_signed(log, size, ts), consistency_proof(log, first, second))
        assert m.head is not None and m.head.size == size
    # An older head, consistent and signed earlier, is fine and does not unpin.
    older = _signed(log, 9, 160)
    assert m.advance(older, consistency_proof(log, 9, 20)).head == m.head


def test_fork_same_size_different_root_is_refused() -> None:
    a, b = _log(8), _log(8, b"x")
    m = _monitor().advance(_signed(a, 8, 100))
    with pytest.raises(ProofError, match="fork"):
        m.advance(_signed(b, 8, 100))


def test_inconsistent_history_is_refused() -> None:
    a, b = _log(12), _log(12, b"x")
    m = _monitor().advance(_signed(a, 6, 100))
    with pytest.raises(ProofError):
        m.advance(_signed(b, 12, 200), consistency_proof(b, 6, 12))


def test_rewind_is_refused() -> None:
    log = _log(10)
    m = _monitor().advance(_signed(log, 10, 100))
    with pytest.raises(ProofError, match="rewind"):
        m.advance(_signed(log, 4, 150), consistency_proof(log, 4, 10))


def test_head_signed_by_another_key_is_refused() -> None:
    log = _log(4)
    m = _monitor().advance(_signed(log, 2, 100))
    with pytest.raises(SignatureError):
        m.advance(_signed(log, 4, 120, OTHER), consistency_proof(log, 2, 4))
