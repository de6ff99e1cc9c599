"""HPKE (RFC 9180) with the hybrid post-quantum KEM ``MLKEM768-X25519``.

Suite: KEM MLKEM768X25519, KDF HKDF-SHA256, AEAD ChaCha20-Poly1305, base mode,
single-shot. A sealed box is ``enc (1,120 bytes) || ciphertext || tag``. Key
pairs come from seeds (64-byte ML-KEM seed, 32-byte X25519 scalar) so that
stored keys are small and vectors can pin them. The encapsulation randomness
is drawn inside OpenSSL and cannot be pinned; known-answer tests therefore
cover the opening direction.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from backchannel.errors import AuthenticationError, DecodeError

MLKEM_SEED_LEN = 64
#: An X-Wing private key (draft-connolly-cfrg-xwing-kem): one 32-byte seed.
XWING_SEED_LEN = 32
X25519_LEN = 32
MLKEM768_PUBLIC_LEN = 1184
PUBLIC_LEN = MLKEM768_PUBLIC_LEN + X25519_LEN
ENC_LEN = 1120
OVERHEAD = ENC_LEN + 16

_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


@dataclass(frozen=True, slots=True)
class KemPublicKey:
    """``mlkem768 public key (1,184) || x25519 public key (32)``."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PUBLIC_LEN:
            raise DecodeError("KEM public key has the wrong length")

    def _key(self) -> hpke.MLKEM768X25519PublicKey:
        try:
            return hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(self.raw[:MLKEM768_PUBLIC_LEN]),
                x25519.X25519PublicKey.from_public_bytes(self.raw[MLKEM768_PUBLIC_LEN:]),
            )
        except ValueError:
            raise DecodeError("KEM public key is not a valid key") from None

    def seal(self, plaintext: bytes, info: bytes) -> bytes:
        return _SUITE.encrypt(plaintext, self._key(), info=info)


class KemPrivateKey:
    __slots__ = ("_key", "_mlkem_seed", "_x25519", "public_key")

    def __init__(self, mlkem_seed: bytes, x25519_private: bytes) -> None:
        if len(mlkem_seed) != MLKEM_SEED_LEN or len(x25519_private) != X25519_LEN:
            raise DecodeError("KEM seed has the wrong length")
        self._mlkem_seed = mlkem_seed
        self._x25519 = x25519_private
        m = mlkem.MLKEM768PrivateKey.from_seed_bytes(mlkem_seed)
        x = x25519.X25519PrivateKey.from_private_bytes(x25519_private)
        self._key = hpke.MLKEM768X25519PrivateKey(m, x)
        self.public_key = KemPublicKey(
            m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
        )

    @classmethod
    def from_xwing_seed(cls, seed: bytes) -> KemPrivateKey:
        """The key pair an X-Wing implementation makes from ``seed``.

        X-Wing's key generation expands the seed with SHAKE256 into the ML-KEM
        seed (``d || z``, 64 bytes) and the X25519 scalar (32 bytes); the suite
        is the same (``MLKEM768-X25519`` is X-Wing's HPKE code point), so a key
        stored as its 32-byte seed interoperates with X-Wing HPKE libraries,
        the intake page's among them.
        """
        if len(seed) != XWING_SEED_LEN:
            raise DecodeError("X-Wing seed has the wrong length")
        shake = hashes.Hash(hashes.SHAKE256(MLKEM_SEED_LEN + X25519_LEN))
        shake.update(seed)
        expanded = shake.finalize()
        return cls(expanded[:MLKEM_SEED_LEN], expanded[MLKEM_SEED_LEN:])

    def __repr__(self) -> str:
        return "KemPrivateKey(<secret>)"

    def seeds(self) -> tuple[bytes, bytes]:
        """The seeds, for the caller's encrypted keystore only."""
        return self._mlkem_seed, self._x25519

    def open(self, sealed: bytes, info: bytes) -> bytes:
        if len(sealed) < OVERHEAD:
            raise AuthenticationError("decryption failed")
        try:
            return _SUITE.decrypt(sealed, self._key, info=info)
        except (InvalidTag, ValueError):
            raise AuthenticationError("decryption failed") from None
