"""Threshold splitting of a 32-byte content key across a mission's officers.

* ``k == n``: XOR splitting. ``n - 1`` shares are uniformly random and the last
  is the key XOR all of them; any ``n - 1`` shares are independent of the key.
  Deterministic given the random bytes, so vectors pin it.
* ``k < n``: Shamir's scheme over GF(2^8) as SLIP-0039 specifies it (section
  "Shamir's secret sharing"), with the field arithmetic, the interpolation and
  the share digest of ``shamir-mnemonic``, SatoshiLabs' reference
  implementation of SLIP-0039. The polynomial passes through ``k - 2`` random
  points, a digest point (4 bytes of HMAC-SHA256 over the secret keyed by 28
  random bytes, then those bytes) at x = 254 and the secret at x = 255;
  officer ``i`` holds the point at x = ``i - 1``. Every random byte comes from
  the ``rng`` the caller passes, so vectors pin the split too, and combining
  checks the digest: shares that do not belong together are refused instead
  of yielding a wrong key. The library's own split draws from
  ``secrets.token_bytes`` and takes no random source, so we lay out the points
  it would lay out, and let it interpolate and check them; a test holds our
  split and the library's to each other in both directions.
* Shares of scheme 2 (Shamir over GF(2^128) with PyCryptodome, written by
  earlier versions) still combine, so messages sealed then still open. Nothing
  splits with it any more: its pure-Python field inversion cost about 0.8 ms
  per combine, and it drew its own coefficients.

A share is ``scheme (1) || index (1) || 32 bytes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from Crypto.Protocol.SecretSharing import Shamir
from shamir_mnemonic import MnemonicError
from shamir_mnemonic.constants import (
    DIGEST_INDEX,
    DIGEST_LENGTH_BYTES,
    MAX_SHARE_COUNT,
    SECRET_INDEX,
)
from shamir_mnemonic.shamir import RawShare, _create_digest, _interpolate, _recover_secret

from backchannel.errors import AuthenticationError, DecodeError, LocalProtocolError, NotEnoughShares

SECRET_LEN = 32
SHARE_LEN = 34
SCHEME_XOR = 1
#: Shamir over GF(2^128) (PyCryptodome): combined, never split any more.
SCHEME_SHAMIR_GF128 = 2
#: Shamir over GF(2^8) with a digest point (SLIP-0039's layout).
SCHEME_SHAMIR = 3
_SCHEMES = (SCHEME_XOR, SCHEME_SHAMIR_GF128, SCHEME_SHAMIR)


@dataclass(frozen=True, slots=True)
class Share:
    scheme: int
    index: int  # 1-based officer position in the recipient roster
    data: bytes

    def encode(self) -> bytes:
        return bytes([self.scheme, self.index]) + self.data

    @classmethod
    def decode(cls, raw: bytes) -> Share:
        if len(raw) != SHARE_LEN or raw[0] not in _SCHEMES or raw[1] == 0:
            raise DecodeError("malformed key share")
        return cls(raw[0], raw[1], raw[2:])

    def __repr__(self) -> str:
        return f"Share(scheme={self.scheme}, index={self.index}, data=<secret>)"


def _xor(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise LocalProtocolError("shares of a split have one length")
    # As integers: one operation, not a Python loop over the bytes.
    return (int.from_bytes(a) ^ int.from_bytes(b)).to_bytes(len(a))


def split(secret: bytes, k: int, n: int, rng: Callable[[int], bytes]) -> list[Share]:
    """Split ``secret`` into ``n`` shares, any ``k`` of which recover it."""
    if len(secret) != SECRET_LEN:
        raise LocalProtocolError("only 32-byte secrets are split")
    if not 1 <= k <= n <= 255:
        raise LocalProtocolError("threshold must satisfy 1 <= k <= n <= 255")
    if k < n and n > MAX_SHARE_COUNT:
        raise LocalProtocolError(
            f"a k-of-n split with k < n takes at most {MAX_SHARE_COUNT} shares"
        )
    if k == n:
        parts = [rng(SECRET_LEN) for _ in range(n - 1)]
        last = secret
        for p in parts:
            last = _xor(last, p)
        parts.append(last)
        return [Share(SCHEME_XOR, i + 1, p) for i, p in enumerate(parts)]
    return [Share(SCHEME_SHAMIR, p.x + 1, p.data) for p in _slip39_points(secret, k, n, rng)]


def _slip39_points(secret: bytes, k: int, n: int, rng: Callable[[int], bytes]) -> list[RawShare]:
    """The ``n`` points of SLIP-0039's split of ``secret``, its randomness from ``rng``."""
    if k == 1:
        return [RawShare(x, secret) for x in range(n)]
    points = [RawShare(x, rng(SECRET_LEN)) for x in range(k - 2)]
    random_part = rng(SECRET_LEN - DIGEST_LENGTH_BYTES)
    base = [
        *points,
        RawShare(DIGEST_INDEX, _create_digest(random_part, secret) + random_part),
        RawShare(SECRET_INDEX, secret),
    ]
    return points + [RawShare(x, _interpolate(base, x)) for x in range(k - 2, n)]


def combine(shares: Sequence[Share], k: int, n: int) -> bytes:
    """Recover the secret from at least ``k`` distinct shares of a ``k``-of-``n`` split."""
    distinct = {s.index: s for s in shares if 1 <= s.index <= n}
    if len(distinct) < k:
        raise NotEnoughShares(f"{len(distinct)} of the {k} officers needed have contributed")
    chosen = [distinct[i] for i in sorted(distinct)][:k]
    schemes = {s.scheme for s in distinct.values()}
    expected = {SCHEME_XOR} if k == n else {SCHEME_SHAMIR, SCHEME_SHAMIR_GF128}
    if len(schemes) != 1 or not schemes <= expected:
        raise DecodeError("key share of the wrong scheme")
    if SCHEME_XOR in schemes:
        out = bytes(SECRET_LEN)
        for s in chosen:
            out = _xor(out, s.data)
        return out
    if SCHEME_SHAMIR_GF128 in schemes:
        lo = Shamir.combine([(s.index, s.data[:16]) for s in chosen])
        hi = Shamir.combine([(s.index, s.data[16:]) for s in chosen])
        return bytes(lo) + bytes(hi)
    try:
        return bytes(_recover_secret(k, [RawShare(s.index - 1, s.data) for s in chosen]))
    except MnemonicError:
        raise AuthenticationError("decryption failed") from None
