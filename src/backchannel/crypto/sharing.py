"""Threshold splitting of a 32-byte content key across a mission's officers.

* ``k == n``: XOR splitting. ``n - 1`` shares are uniformly random and the last
  is the key XOR all of them; any ``n - 1`` shares are independent of the key.
  Deterministic given the random bytes, so vectors pin it.
* ``k < n``: Shamir's scheme from PyCryptodome (``Crypto.Protocol.SecretSharing``),
  a maintained, audited implementation over GF(2^128). It takes 16-byte
  secrets, so the 32-byte key is split as two independent halves under the same
  share indices. Fewer than ``k`` shares reveal nothing about either half.
  PyCryptodome draws its own coefficients, so only combining is pinned by
  vectors. We chose a vetted library over writing GF(2^8) arithmetic ourselves.

A share is ``scheme (1) || index (1) || 32 bytes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from Crypto.Protocol.SecretSharing import Shamir

from backchannel.errors import DecodeError, LocalProtocolError, NotEnoughShares

SECRET_LEN = 32
SHARE_LEN = 34
SCHEME_XOR = 1
SCHEME_SHAMIR = 2


@dataclass(frozen=True, slots=True)
class Share:
    scheme: int
    index: int  # 1-based officer position in the recipient roster
    data: bytes

    def encode(self) -> bytes:
        return bytes([self.scheme, self.index]) + self.data

    @classmethod
    def decode(cls, raw: bytes) -> Share:
        if len(raw) != SHARE_LEN or raw[0] not in (SCHEME_XOR, SCHEME_SHAMIR) or raw[1] == 0:
            raise DecodeError("malformed key share")
        return cls(raw[0], raw[1], raw[2:])

    def __repr__(self) -> str:
        return f"Share(scheme={self.scheme}, index={self.index}, data=<secret>)"


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def split(secret: bytes, k: int, n: int, rng: Callable[[int], bytes]) -> list[Share]:
    """Split ``secret`` into ``n`` shares, any ``k`` of which recover it."""
    if len(secret) != SECRET_LEN:
        raise LocalProtocolError("only 32-byte secrets are split")
    if not 1 <= k <= n <= 255:
        raise LocalProtocolError("threshold must satisfy 1 <= k <= n <= 255")
    if k == n:
        parts = [rng(SECRET_LEN) for _ in range(n - 1)]
        last = secret
        for p in parts:
            last = _xor(last, p)
        parts.append(last)
        return [Share(SCHEME_XOR, i + 1, p) for i, p in enumerate(parts)]
    lo = Shamir.split(k, n, secret[:16])
    hi = Shamir.split(k, n, secret[16:])
    return [Share(SCHEME_SHAMIR, i, a + b) for (i, a), (j, b) in zip(lo, hi, strict=True) if i == j]


def combine(shares: Sequence[Share], k: int, n: int) -> bytes:
    """Recover the secret from at least ``k`` distinct shares of a ``k``-of-``n`` split."""
    distinct = {s.index: s for s in shares if 1 <= s.index <= n}
    if len(distinct) < k:
        raise NotEnoughShares(f"{len(distinct)} of the {k} officers needed have contributed")
    scheme = SCHEME_XOR if k == n else SCHEME_SHAMIR
    if any(s.scheme != scheme for s in distinct.values()):
        raise DecodeError("key share of the wrong scheme")
    chosen = [distinct[i] for i in sorted(distinct)][:k]
    if scheme == SCHEME_XOR:
        out = bytes(SECRET_LEN)
        for s in chosen:
            out = _xor(out, s.data)
        return out
    lo = Shamir.combine([(s.index, s.data[:16]) for s in chosen])
    hi = Shamir.combine([(s.index, s.data[16:]) for s in chosen])
    return bytes(lo) + bytes(hi)
