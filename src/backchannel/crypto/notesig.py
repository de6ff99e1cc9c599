"""Raw signatures for signed notes: Ed25519 and ML-DSA-44, over the message as given.

The C2SP signed-note family (checkpoints, witness cosignatures) signs text
without a context string: the formats carry their own domain separation (a
note's origin line, ``cosignature/v1``, ``subtree/v1``). Keys used here are
never used for anything else: the relay's note key is derived from its log key
under its own label (``backchannel.relay.checkpoints``), and a witness's keys
are its own.

Keys come from 32-byte seeds, like every other key of ours, so that vectors can
pin them and a key file stays small.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from backchannel.errors import DecodeError, SignatureError

SEED_LEN = 32
ED25519_PUBLIC_LEN = 32
ED25519_SIG_LEN = 64
MLDSA44_PUBLIC_LEN = 1312
MLDSA44_SIG_LEN = 2420


class Ed25519NoteKey:
    """An Ed25519 private key that signs note text as it is."""

    __slots__ = ("_key", "public")

    def __init__(self, seed: bytes) -> None:
        self._key = ed25519.Ed25519PrivateKey.from_private_bytes(_seed(seed, "Ed25519"))
        self.public = self._key.public_key().public_bytes_raw()

    def __repr__(self) -> str:  # never show the seed
        return "Ed25519NoteKey(<secret>)"

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class MLDSA44NoteKey:
    """An ML-DSA-44 private key (FIPS 204, empty context) that signs messages as they are."""

    __slots__ = ("_key", "public")

    def __init__(self, seed: bytes) -> None:
        self._key = mldsa.MLDSA44PrivateKey.from_seed_bytes(_seed(seed, "ML-DSA-44"))
        self.public = self._key.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return "MLDSA44NoteKey(<secret>)"

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def _seed(seed: bytes, what: str) -> bytes:
    if len(seed) != SEED_LEN:
        raise DecodeError(f"{what} seed has the wrong length")
    return seed


def verify_ed25519(public: bytes, signature: bytes, message: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is ``public``'s over ``message``."""
    if len(public) != ED25519_PUBLIC_LEN or len(signature) != ED25519_SIG_LEN:
        raise SignatureError("signature does not verify")
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise SignatureError("signature does not verify") from None


def verify_mldsa44(public: bytes, signature: bytes, message: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is ``public``'s over ``message``."""
    if len(public) != MLDSA44_PUBLIC_LEN or len(signature) != MLDSA44_SIG_LEN:
        raise SignatureError("signature does not verify")
    try:
        mldsa.MLDSA44PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise SignatureError("signature does not verify") from None
