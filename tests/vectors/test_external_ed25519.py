"""Ed25519 known-answer tests: RFC 8032 section 7.1, TEST 1 to TEST 3 (external/PROVENANCE.md).

Through ``backchannel.crypto.signing``: the published seed must give the
published public key and, with an empty context, the published signature
(Ed25519 is deterministic); ``VerifyKey.verify_ed25519`` must accept it and
refuse any altered signature, message or key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backchannel.crypto.signing import ED25519_SIG_LEN, SigningKey, VerifyKey
from backchannel.errors import SignatureError

EXTERNAL = Path(__file__).parent / "external"
VECTORS: list[dict[str, Any]] = json.loads((EXTERNAL / "ed25519_rfc8032.json").read_text())[
    "vectors"
]

# Any fixed ML-DSA-65 seed: these vectors exercise the Ed25519 half only.
MLDSA_SEED = bytes(range(32))


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def signing_key(v: dict[str, Any]) -> SigningKey:
    return SigningKey(h(v["secret_key"]), MLDSA_SEED)


def published_verify_key(v: dict[str, Any]) -> VerifyKey:
    """The published Ed25519 public key, beside the fixed ML-DSA-65 key."""
    return VerifyKey(h(v["public_key"]), signing_key(v).verify_key.mldsa65)


def test_three_vectors() -> None:
    assert [v["name"] for v in VECTORS] == [f"RFC 8032 7.1 TEST {i}" for i in (1, 2, 3)]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
class TestRfc8032:
    def test_public_key(self, v: dict[str, Any]) -> None:
        assert signing_key(v).verify_key.ed25519 == h(v["public_key"])

    def test_signature(self, v: dict[str, Any]) -> None:
        sig = signing_key(v).sign_ed25519(context=b"", data=h(v["message"]))
        assert sig == h(v["signature"])

    def test_published_signature_verifies(self, v: dict[str, Any]) -> None:
        published_verify_key(v).verify_ed25519(h(v["signature"]), b"", h(v["message"]))
        signing_key(v).verify_key.verify_ed25519(h(v["signature"]), b"", h(v["message"]))

    def test_flipped_signature_refused(self, v: dict[str, Any]) -> None:
        key, sig, msg = published_verify_key(v), h(v["signature"]), h(v["message"])
        for pos in range(ED25519_SIG_LEN):
            for mask in (0x01, 0x80):
                bad = bytearray(sig)
                bad[pos] ^= mask
                with pytest.raises(SignatureError):
                    key.verify_ed25519(bytes(bad), b"", msg)

    def test_altered_message_or_context_refused(self, v: dict[str, Any]) -> None:
        key, sig, msg = published_verify_key(v), h(v["signature"]), h(v["message"])
        with pytest.raises(SignatureError):
            key.verify_ed25519(sig, b"", msg + b"\x00")
        with pytest.raises(SignatureError):
            key.verify_ed25519(sig, b"ctx", msg)
        if msg:
            with pytest.raises(SignatureError):
                key.verify_ed25519(sig, b"", bytes([msg[0] ^ 0x01]) + msg[1:])

    def test_wrong_length_signature_refused(self, v: dict[str, Any]) -> None:
        key, sig, msg = published_verify_key(v), h(v["signature"]), h(v["message"])
        for bad in (sig[:-1], sig + b"\x00", b""):
            with pytest.raises(SignatureError):
                key.verify_ed25519(bad, b"", msg)

    def test_other_vector_key_refuses(self, v: dict[str, Any]) -> None:
        sig, msg = h(v["signature"]), h(v["message"])
        for other in VECTORS:
            if other is v:
                continue
            with pytest.raises(SignatureError):
                published_verify_key(other).verify_ed25519(sig, b"", msg)
