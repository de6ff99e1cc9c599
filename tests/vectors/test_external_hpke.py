"""HPKE known-answer tests against published vectors (sources: external/PROVENANCE.md).

The encapsulation randomness cannot be pinned through pyca's API, so the
vectors are checked in the opening direction: from the published recipient
key, ``enc``, ciphertext, ``info`` and ``aad``, decryption must give the
published plaintext, and any altered byte must make it fail.

The single-shot API seals and opens with sequence number 0 only, so encryption
#0 of each vector is the one that can be opened. Every published encryption #0
carries a non-empty ``aad`` (``"Count-0"``) while our wrapper binds an empty
one, so the vectors are opened with pyca's private ``_decrypt_with_aad`` and
the wrapper is held to them through the vector's key pair: it must derive the
published public key from the published seed and interoperate with pyca's raw
suite in both directions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from backchannel.crypto.kem import (
    ENC_LEN,
    MLKEM768_PUBLIC_LEN,
    PUBLIC_LEN,
    KemPrivateKey,
    KemPublicKey,
)
from backchannel.errors import AuthenticationError

EXTERNAL = Path(__file__).parent / "external"

KEM_X25519 = 0x0020
KEM_MLKEM768_X25519 = 0x647A
KDF_HKDF_SHA256 = 0x0001
AEAD_CHACHA20_POLY1305 = 0x0003

KEMS = {KEM_X25519: hpke.KEM.X25519, KEM_MLKEM768_X25519: hpke.KEM.MLKEM768_X25519}
KDFS = {KDF_HKDF_SHA256: hpke.KDF.HKDF_SHA256, 0x0011: hpke.KDF.SHAKE256}
AEADS = {AEAD_CHACHA20_POLY1305: hpke.AEAD.CHACHA20_POLY1305}

FLIP_SAMPLES = 64  # byte positions tried per field (all of them when the field is shorter)
FLIP_MASKS = (0x01, 0x80)  # lowest and highest bit of each tried byte

HYBRID_SEED_LEN = 32
MLKEM768_CT_LEN = 1088  # enc = ML-KEM-768 ciphertext (1,088) || X25519 ephemeral key (32)

_decrypt_with_aad = rust_openssl.hpke._decrypt_with_aad
_encrypt_with_aad = rust_openssl.hpke._encrypt_with_aad


def _load(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((EXTERNAL / name).read_text())["vectors"]
    return vectors


RFC9180 = _load("hpke_rfc9180.json")
HYBRID = _load("hpke_mlkem768x25519.json")
HYBRID_HKDF = [v for v in HYBRID if v["kdf_id"] == KDF_HKDF_SHA256]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def suite_of(v: dict[str, Any]) -> hpke.Suite:
    assert v["mode"] == 0, "base mode only"
    return hpke.Suite(KEMS[v["kem_id"]], KDFS[v["kdf_id"]], AEADS[v["aead_id"]])


def encryption0(v: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = v["encryptions"][0]
    assert first["seq"] == 0
    assert first["nonce"] == v["base_nonce"]  # sequence 0 uses the base nonce unchanged
    return first


def positions(length: int, extra: tuple[int, ...] = ()) -> list[int]:
    """Up to FLIP_SAMPLES positions spread evenly over the field, ends included."""
    if length <= FLIP_SAMPLES:
        return list(range(length))
    spread = {round(i * (length - 1) / (FLIP_SAMPLES - 1)) for i in range(FLIP_SAMPLES)}
    return sorted(spread | {p for p in extra if 0 <= p < length})


def flipped(data: bytes, pos: int, mask: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)


def expand_hybrid_seed(seed: bytes) -> tuple[bytes, bytes]:
    """MLKEM768-X25519 decapsulation key seed -> (ML-KEM-768 seed d||z, X25519 scalar).

    draft-irtf-cfrg-hybrid-kems ``expandDecapsKeyG`` with the components of
    draft-irtf-cfrg-concrete-hybrid-kems (MLKEM768-X25519, identical to X-Wing):
    PRG = SHAKE256 with Nout = 64 + 32; the first 64 bytes are the ML-KEM-768
    seed (``KeyGen_internal(seed[0:32], seed[32:64])``), the last 32 the X25519
    private scalar (``RandomScalar`` is the identity for Curve25519).
    """
    assert len(seed) == HYBRID_SEED_LEN
    expanded = hashlib.shake_256(seed).digest(64 + 32)
    return expanded[:64], expanded[64:]


def hybrid_private_key(v: dict[str, Any]) -> hpke.MLKEM768X25519PrivateKey:
    mlkem_seed, x25519_scalar = expand_hybrid_seed(h(v["skRm"]))
    return hpke.MLKEM768X25519PrivateKey(
        mlkem.MLKEM768PrivateKey.from_seed_bytes(mlkem_seed),
        x25519.X25519PrivateKey.from_private_bytes(x25519_scalar),
    )


def hybrid_public_key(v: dict[str, Any]) -> hpke.MLKEM768X25519PublicKey:
    pk = h(v["pkRm"])
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(pk[:MLKEM768_PUBLIC_LEN]),
        x25519.X25519PublicKey.from_public_bytes(pk[MLKEM768_PUBLIC_LEN:]),
    )


def wrapper_key(v: dict[str, Any]) -> KemPrivateKey:
    return KemPrivateKey(*expand_hybrid_seed(h(v["skRm"])))


def assert_flips_fail(
    open_box: Callable[[bytes], object],
    enc: bytes,
    ct: bytes,
    errors: tuple[type[Exception], ...],
    enc_extra: tuple[int, ...] = (),
) -> None:
    """Every sampled single-byte change of enc and of ct must be refused."""
    opened = []
    for field, pos in [("enc", p) for p in positions(len(enc), enc_extra)] + [
        ("ct", p) for p in positions(len(ct))
    ]:
        for mask in FLIP_MASKS:
            bad_enc = flipped(enc, pos, mask) if field == "enc" else enc
            bad_ct = flipped(ct, pos, mask) if field == "ct" else ct
            try:
                open_box(bad_enc + bad_ct)
            except errors:
                continue
            opened.append((field, pos, mask))
    assert opened == [], f"altered boxes opened: {opened}"


# --- RFC 9180 A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 ---------------


@pytest.mark.parametrize("v", RFC9180, ids=lambda v: v["name"])
class TestRfc9180:
    def test_suite_is_the_published_one(self, v: dict[str, Any]) -> None:
        assert (v["kem_id"], v["kdf_id"], v["aead_id"]) == (
            KEM_X25519,
            KDF_HKDF_SHA256,
            AEAD_CHACHA20_POLY1305,
        )

    def test_public_key_from_skRm(self, v: dict[str, Any]) -> None:
        sk = x25519.X25519PrivateKey.from_private_bytes(h(v["skRm"]))
        assert sk.public_key().public_bytes_raw() == h(v["pkRm"])

    def test_encryption_0_decrypts_to_published_plaintext(self, v: dict[str, Any]) -> None:
        e = encryption0(v)
        sk = x25519.X25519PrivateKey.from_private_bytes(h(v["skRm"]))
        pt = _decrypt_with_aad(
            suite_of(v), h(v["enc"]) + h(e["ct"]), sk, info=h(v["info"]), aad=h(e["aad"])
        )
        assert pt == h(e["pt"])
        assert pt == b"Beauty is truth, truth beauty"

    def test_later_sequence_numbers_do_not_open_single_shot(self, v: dict[str, Any]) -> None:
        # Encryption #1 was sealed under nonce base_nonce XOR 1; single-shot opens with seq 0.
        later = v["encryptions"][1]
        assert later["seq"] == 1
        sk = x25519.X25519PrivateKey.from_private_bytes(h(v["skRm"]))
        with pytest.raises(InvalidTag):
            _decrypt_with_aad(
                suite_of(v),
                h(v["enc"]) + h(later["ct"]),
                sk,
                info=h(v["info"]),
                aad=h(later["aad"]),
            )

    def test_flipped_bytes_fail(self, v: dict[str, Any]) -> None:
        e = encryption0(v)
        sk = x25519.X25519PrivateKey.from_private_bytes(h(v["skRm"]))
        suite, info, aad = suite_of(v), h(v["info"]), h(e["aad"])
        assert_flips_fail(
            lambda box: _decrypt_with_aad(suite, box, sk, info=info, aad=aad),
            h(v["enc"]),
            h(e["ct"]),
            (InvalidTag,),
        )

    def test_wrong_info_or_aad_fails(self, v: dict[str, Any]) -> None:
        e = encryption0(v)
        sk = x25519.X25519PrivateKey.from_private_bytes(h(v["skRm"]))
        box, info, aad = h(v["enc"]) + h(e["ct"]), h(v["info"]), h(e["aad"])
        for bad_info, bad_aad in [(info + b"x", aad), (info, aad + b"x"), (info, b"")]:
            with pytest.raises(InvalidTag):
                _decrypt_with_aad(suite_of(v), box, sk, info=bad_info, aad=bad_aad)


# --- draft-ietf-hpke-pq: MLKEM768-X25519 ---------------------------------------------------


def test_hybrid_vectors_present() -> None:
    assert {v["kdf_id"] for v in HYBRID} == {0x0001, 0x0011}
    assert len(HYBRID_HKDF) == 1  # the suite our wrapper uses


@pytest.mark.parametrize("v", HYBRID, ids=lambda v: v["name"])
class TestMlkem768X25519:
    def test_sizes_and_ids(self, v: dict[str, Any]) -> None:
        assert v["kem_id"] == KEM_MLKEM768_X25519
        assert v["aead_id"] == AEAD_CHACHA20_POLY1305
        assert len(h(v["skRm"])) == HYBRID_SEED_LEN
        assert len(h(v["pkRm"])) == PUBLIC_LEN
        assert len(h(v["enc"])) == ENC_LEN == KEMS[v["kem_id"]].enc_length()

    def test_seed_expansion_gives_published_public_key(self, v: dict[str, Any]) -> None:
        mlkem_seed, x25519_scalar = expand_hybrid_seed(h(v["skRm"]))
        m = mlkem.MLKEM768PrivateKey.from_seed_bytes(mlkem_seed)
        x = x25519.X25519PrivateKey.from_private_bytes(x25519_scalar)
        derived = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
        assert derived == h(v["pkRm"])

    def test_wrapper_derives_published_public_key(self, v: dict[str, Any]) -> None:
        assert wrapper_key(v).public_key.raw == h(v["pkRm"])

    def test_encryption_0_decrypts_to_published_plaintext(self, v: dict[str, Any]) -> None:
        e = encryption0(v)
        pt = _decrypt_with_aad(
            suite_of(v),
            h(v["enc"]) + h(e["ct"]),
            hybrid_private_key(v),
            info=h(v["info"]),
            aad=h(e["aad"]),
        )
        assert pt == h(e["pt"])

    def test_later_sequence_numbers_do_not_open_single_shot(self, v: dict[str, Any]) -> None:
        later = v["encryptions"][1]
        assert later["seq"] == 1
        with pytest.raises(InvalidTag):
            _decrypt_with_aad(
                suite_of(v),
                h(v["enc"]) + h(later["ct"]),
                hybrid_private_key(v),
                info=h(v["info"]),
                aad=h(later["aad"]),
            )

    def test_flipped_bytes_fail(self, v: dict[str, Any]) -> None:
        e = encryption0(v)
        suite, sk, info, aad = suite_of(v), hybrid_private_key(v), h(v["info"]), h(e["aad"])
        assert_flips_fail(
            lambda box: _decrypt_with_aad(suite, box, sk, info=info, aad=aad),
            h(v["enc"]),
            h(e["ct"]),
            (InvalidTag,),
            enc_extra=(MLKEM768_CT_LEN - 1, MLKEM768_CT_LEN, ENC_LEN - 1),
        )

    def test_wrong_info_or_aad_fails(self, v: dict[str, Any]) -> None:
        e = encryption0(v)
        box, info, aad = h(v["enc"]) + h(e["ct"]), h(v["info"]), h(e["aad"])
        for bad_info, bad_aad in [(info + b"x", aad), (info, aad + b"x"), (info, b"")]:
            with pytest.raises(InvalidTag):
                _decrypt_with_aad(
                    suite_of(v), box, hybrid_private_key(v), info=bad_info, aad=bad_aad
                )


# --- our wrapper, held to the published HKDF-SHA256 / ChaCha20-Poly1305 key pair ------------


@pytest.mark.parametrize("v", HYBRID_HKDF, ids=lambda v: v["name"])
class TestWrapperAgainstVector:
    def test_wrapper_suite_is_the_vector_suite(self, v: dict[str, Any]) -> None:
        assert (v["kem_id"], v["kdf_id"], v["aead_id"]) == (
            KEM_MLKEM768_X25519,
            KDF_HKDF_SHA256,
            AEAD_CHACHA20_POLY1305,
        )

    def test_published_box_with_aad_is_refused_by_wrapper(self, v: dict[str, Any]) -> None:
        # The wrapper binds an empty aad; encryption #0 was sealed with aad "Count-0".
        e = encryption0(v)
        assert h(e["aad"]) != b""
        with pytest.raises(AuthenticationError):
            wrapper_key(v).open(h(v["enc"]) + h(e["ct"]), h(v["info"]))

    def test_wrapper_opens_raw_suite_boxes(self, v: dict[str, Any]) -> None:
        e = encryption0(v)
        pt, info = h(e["pt"]), h(v["info"])
        key = wrapper_key(v)
        by_suite = suite_of(v).encrypt(pt, hybrid_public_key(v), info=info)
        assert key.open(by_suite, info) == pt
        with_empty_aad = _encrypt_with_aad(
            suite_of(v), pt, hybrid_public_key(v), info=info, aad=b""
        )
        assert key.open(with_empty_aad, info) == pt
        with_aad = _encrypt_with_aad(suite_of(v), pt, hybrid_public_key(v), info=info, aad=b"a")
        with pytest.raises(AuthenticationError):
            key.open(with_aad, info)

    def test_raw_suite_opens_wrapper_boxes(self, v: dict[str, Any]) -> None:
        e = encryption0(v)
        pt, info = h(e["pt"]), h(v["info"])
        sealed = KemPublicKey(h(v["pkRm"])).seal(pt, info)
        assert len(sealed) == ENC_LEN + len(pt) + 16
        assert suite_of(v).decrypt(sealed, hybrid_private_key(v), info=info) == pt
        assert (
            _decrypt_with_aad(suite_of(v), sealed, hybrid_private_key(v), info=info, aad=b"") == pt
        )

    def test_box_for_vector_key_does_not_open_with_another_key(self, v: dict[str, Any]) -> None:
        info = h(v["info"])
        sealed = KemPublicKey(h(v["pkRm"])).seal(b"for the vector key only", info)
        others = [w for w in HYBRID if w["skRm"] != v["skRm"]]
        assert others
        for other in others:
            with pytest.raises(AuthenticationError):
                wrapper_key(other).open(sealed, info)
        with pytest.raises(AuthenticationError):
            wrapper_key(v).open(sealed, info + b"x")

    def test_wrapper_refuses_flipped_and_truncated_boxes(self, v: dict[str, Any]) -> None:
        info = h(v["info"])
        key = wrapper_key(v)
        sealed = KemPublicKey(h(v["pkRm"])).seal(h(encryption0(v)["pt"]), info)
        assert_flips_fail(
            lambda box: key.open(box, info),
            sealed[:ENC_LEN],
            sealed[ENC_LEN:],
            (AuthenticationError,),
            enc_extra=(MLKEM768_CT_LEN - 1, MLKEM768_CT_LEN, ENC_LEN - 1),
        )
        for cut in (0, 1, ENC_LEN, ENC_LEN + 15, len(sealed) - 1):
            with pytest.raises(AuthenticationError):
                key.open(sealed[:cut], info)
