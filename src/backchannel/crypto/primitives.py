"""Hashes, MACs, KDF and AEAD from pyca ``cryptography``.

Every decryption failure is raised as one opaque :class:`AuthenticationError`.
"""

from __future__ import annotations

import hmac as _hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _pyca_hmac
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backchannel.errors import AuthenticationError, LocalProtocolError

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
HASH_LEN = 32

# The algorithm object is stateless: one serves every hash and MAC.
_SHA256 = hashes.SHA256()


def sha256(*parts: bytes) -> bytes:
    """SHA-256 over the concatenation of ``parts``.

    Callers pass only fixed-length parts or a leading label, so plain
    concatenation is unambiguous; variable-length inputs are length-prefixed by
    the codec before they get here.
    """
    h = hashes.Hash(_SHA256)
    for p in parts:
        h.update(p)
    return h.finalize()


def hmac_sha256(key: bytes, *parts: bytes) -> bytes:
    h = _pyca_hmac.HMAC(key, _SHA256)
    for p in parts:
        h.update(p)
    return h.finalize()


def hkdf(ikm: bytes, *, salt: bytes | None, info: bytes, length: int = KEY_LEN) -> bytes:
    return HKDF(algorithm=_SHA256, length=length, salt=salt, info=info).derive(ikm)


def equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison for secrets and authenticators."""
    return _hmac.compare_digest(a, b)


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    if len(key) != KEY_LEN or len(nonce) != NONCE_LEN:
        raise LocalProtocolError("AEAD key must be 32 bytes and nonce 12 bytes")
    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    if len(key) != KEY_LEN or len(nonce) != NONCE_LEN:
        raise LocalProtocolError("AEAD key must be 32 bytes and nonce 12 bytes")
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise AuthenticationError("decryption failed") from None
