"""Officer signing keys: Ed25519 and ML-DSA-65, alone or as a hybrid pair.

Long-lived objects (rosters, epoch key certificates, channel offers) carry a
*hybrid* signature, valid only if both the Ed25519 and the ML-DSA-65 signature
verify: forging one then needs breaking both. Per-message co-signatures are
Ed25519 alone (authentication needs to hold today; 3,309-byte ML-DSA signatures
do not belong in every 4 KiB cell).

Keys are derived from 32-byte seeds so that vectors can pin them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from backchannel.errors import DecodeError, SignatureError

ED25519_PUBLIC_LEN = 32
ED25519_SIG_LEN = 64
MLDSA65_PUBLIC_LEN = 1952
MLDSA65_SIG_LEN = 3309
HYBRID_SIG_LEN = ED25519_SIG_LEN + MLDSA65_SIG_LEN
SEED_LEN = 32


@lru_cache(maxsize=1024)
def _ed25519_public(raw: bytes) -> ed25519.Ed25519PublicKey:
    """The key object of ``raw``, kept: an officer's key checks many signatures."""
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """An officer's public signing keys."""

    ed25519: bytes
    mldsa65: bytes

    def __post_init__(self) -> None:
        if len(self.ed25519) != ED25519_PUBLIC_LEN or len(self.mldsa65) != MLDSA65_PUBLIC_LEN:
            raise DecodeError("signing public key has the wrong length")

    def verify_ed25519(self, signature: bytes, context: bytes, data: bytes) -> None:
        if len(signature) != ED25519_SIG_LEN:
            raise SignatureError("signature has the wrong length")
        try:
            _ed25519_public(self.ed25519).verify(signature, context + data)
        except (InvalidSignature, ValueError):
            raise SignatureError("signature does not verify") from None

    def verify_hybrid(self, signature: bytes, context: bytes, data: bytes) -> None:
        if len(signature) != HYBRID_SIG_LEN:
            raise SignatureError("hybrid signature has the wrong length")
        self.verify_ed25519(signature[:ED25519_SIG_LEN], context, data)
        try:
            key = mldsa.MLDSA65PublicKey.from_public_bytes(self.mldsa65)
            key.verify(signature[ED25519_SIG_LEN:], data, context)
        except (InvalidSignature, ValueError):
            raise SignatureError("signature does not verify") from None


class SigningKey:
    """An officer's private signing keys (Ed25519 + ML-DSA-65)."""

    __slots__ = ("_ed", "_ed_seed", "_ml", "_ml_seed", "verify_key")

    def __init__(self, ed25519_seed: bytes, mldsa65_seed: bytes) -> None:
        if len(ed25519_seed) != SEED_LEN or len(mldsa65_seed) != SEED_LEN:
            raise DecodeError("signing seed has the wrong length")
        self._ed_seed = ed25519_seed
        self._ml_seed = mldsa65_seed
        self._ed = ed25519.Ed25519PrivateKey.from_private_bytes(ed25519_seed)
        self._ml = mldsa.MLDSA65PrivateKey.from_seed_bytes(mldsa65_seed)
        self.verify_key = VerifyKey(
            self._ed.public_key().public_bytes_raw(), self._ml.public_key().public_bytes_raw()
        )

    def __repr__(self) -> str:  # never show seeds
        return "SigningKey(<secret>)"

    def seeds(self) -> tuple[bytes, bytes]:
        """The seeds, for the caller's encrypted keystore only."""
        return self._ed_seed, self._ml_seed

    def sign_ed25519(self, context: bytes, data: bytes) -> bytes:
        return self._ed.sign(context + data)

    def sign_hybrid(self, context: bytes, data: bytes) -> bytes:
        # ML-DSA signing is hedged (randomized) inside OpenSSL; Ed25519 is deterministic.
        return self._ed.sign(context + data) + self._ml.sign(data, context)
