"""A client's view of one relay's transparency log (``docs/spec/relay-log-v1.md`` §4).

The monitor pins the relay's key and the largest signed head it has verified.
Every head the relay hands out afterwards must be signed by that key and
consistent with the pinned head: equal roots at equal sizes, a valid
consistency proof between different sizes, and no head of a smaller size
signed later than a larger one (a rewind). Any failure raises; the caller
raises an alarm and keeps the conflicting signed heads as evidence.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from backchannel.crypto.primitives import equal
from backchannel.protocol.merkle import ProofError, TreeHead, verify_consistency
from backchannel.protocol.misbehaviour import SignedHead, relay_key_from_bytes


@dataclass(frozen=True, slots=True)
class LogMonitor:
    relay_key: bytes  # Ed25519 (32) || ML-DSA-65 (1,952), pinned on first contact
    pinned: bytes = b""  # the largest verified signed head (compact), or nothing yet

    def open(self, signed: bytes) -> TreeHead:
        """Decode and verify a signed head under the pinned key."""
        return _open(self.relay_key, signed)

    @property
    def head(self) -> TreeHead | None:
        return SignedHead.decode(self.pinned).head if self.pinned else None

    def proof_needed(self, new: TreeHead) -> tuple[int, int] | None:
        """The consistency proof (first, second) the caller must fetch, if any."""
        old = self.head
        if old is None or old.size == new.size or 0 in (old.size, new.size):
            return None
        return (min(old.size, new.size), max(old.size, new.size))

    def advance(self, signed: bytes, proof: Sequence[bytes] = ()) -> LogMonitor:
        """Accept ``signed`` if it is consistent with the pinned head; pin the larger."""
        new = self.open(signed)
        old = self.head
        if old is None:
            return replace(self, pinned=signed)
        if new.size == old.size:
            if not equal(new.root, old.root):
                raise ProofError("the relay signed two different logs of the same size: a fork")
            return self
        small, large = (new, old) if new.size < old.size else (old, new)
        if small is new and new.timestamp > old.timestamp:
            raise ProofError("the relay signed a shorter log later than a longer one: a rewind")
        if small.size > 0:
            verify_consistency(small.size, large.size, small.root, large.root, proof)
        return replace(self, pinned=signed) if large is new else self


@functools.lru_cache(maxsize=64)
def _open(relay_key: bytes, signed: bytes) -> TreeHead:
    """A signed head verified under ``relay_key``; raises if it is not.

    A round's answers hand a device the same signed head to check several
    times (the answer, its gossip, its monitor); the verdict on the same bytes
    under the same key cannot change, so it is kept for the heads seen last
    (a failure is not kept: it raises every time).
    """
    head = SignedHead.decode(signed)
    head.verify(relay_key_from_bytes(relay_key))
    return head.head
