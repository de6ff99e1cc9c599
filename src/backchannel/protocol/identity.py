"""Officer identities and their rotating epoch (HPKE) keys.

An officer holds a long-term signing pair (Ed25519 + ML-DSA-65) and, for each
key epoch, an HPKE key pair (ML-KEM-768 + X25519) whose public half is
certified by a hybrid signature. Old epoch private keys are erased once their
messages are opened, which gives forward secrecy against a later device theft.

Randomness is a parameter (``rng(n) -> n bytes``); ``*_from_parts`` entry points
take the seeds directly for vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from backchannel.crypto import labels
from backchannel.crypto.kem import (
    MLKEM_SEED_LEN,
    PUBLIC_LEN,
    X25519_LEN,
    KemPrivateKey,
    KemPublicKey,
)
from backchannel.crypto.primitives import equal, sha256
from backchannel.crypto.signing import (
    ED25519_PUBLIC_LEN,
    HYBRID_SIG_LEN,
    MLDSA65_PUBLIC_LEN,
    SEED_LEN,
    SigningKey,
    VerifyKey,
)
from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol.codec import Reader, Writer, expect_version

Rng = Callable[[int], bytes]

OFFICER_ID_LEN = 16
MAX_NAME_BYTES = 64
_PUBLIC_VERSION = 1
_SECRET_VERSION = 1
_CERT_VERSION = 1


def _check_name(name: str) -> str:
    if not name or len(name.encode("utf-8")) > MAX_NAME_BYTES or not name.isprintable():
        raise DecodeError("officer name must be 1-64 bytes of printable text")
    return name


@dataclass(frozen=True, slots=True)
class OfficerPublic:
    """What everybody may know of an officer."""

    name: str
    verify_key: VerifyKey
    #: Derived from the keys once; rosters look officers up by id constantly.
    officer_id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vk = self.verify_key
        oid = sha256(labels.OFFICER_ID, vk.ed25519, vk.mldsa65)[:OFFICER_ID_LEN]
        object.__setattr__(self, "officer_id", oid)

    def encode(self) -> bytes:
        w = Writer().u8(_PUBLIC_VERSION).text(_check_name(self.name))
        w.fixed(self.verify_key.ed25519, ED25519_PUBLIC_LEN)
        w.fixed(self.verify_key.mldsa65, MLDSA65_PUBLIC_LEN)
        return w.bytes()

    @classmethod
    def read(cls, r: Reader) -> OfficerPublic:
        expect_version(r, _PUBLIC_VERSION, "officer")
        name = _check_name(r.text(MAX_NAME_BYTES))
        ed = r.fixed(ED25519_PUBLIC_LEN)
        ml = r.fixed(MLDSA65_PUBLIC_LEN)
        return cls(name, VerifyKey(ed, ml))

    @classmethod
    def decode(cls, raw: bytes) -> OfficerPublic:
        r = Reader(raw)
        out = cls.read(r)
        r.end()
        return out


class Officer:
    """An officer's private identity. Lives only in the officer's keystore."""

    __slots__ = ("name", "public", "signing_key")

    def __init__(self, name: str, signing_key: SigningKey) -> None:
        self.name = _check_name(name)
        self.signing_key = signing_key
        self.public = OfficerPublic(name, signing_key.verify_key)

    def __repr__(self) -> str:
        return f"Officer({self.name!r}, <secret>)"

    @property
    def officer_id(self) -> bytes:
        return self.public.officer_id

    @classmethod
    def generate(cls, name: str, rng: Rng) -> Officer:
        return cls.from_parts(name, rng(SEED_LEN), rng(SEED_LEN))

    @classmethod
    def from_parts(cls, name: str, ed25519_seed: bytes, mldsa65_seed: bytes) -> Officer:
        return cls(name, SigningKey(ed25519_seed, mldsa65_seed))

    def encode_secret(self) -> bytes:
        """Secret serialization, for the encrypted keystore only."""
        ed, ml = self.signing_key.seeds()
        w = Writer().u8(_SECRET_VERSION).text(self.name)
        return w.fixed(ed, SEED_LEN).fixed(ml, SEED_LEN).bytes()

    @classmethod
    def decode_secret(cls, raw: bytes) -> Officer:
        r = Reader(raw)
        expect_version(r, _SECRET_VERSION, "officer secret")
        name = r.text(MAX_NAME_BYTES)
        ed = r.fixed(SEED_LEN)
        ml = r.fixed(SEED_LEN)
        r.end()
        return cls.from_parts(name, ed, ml)


@dataclass(frozen=True, slots=True)
class EpochKeyCert:
    """An officer's HPKE public key for one key epoch, hybrid-signed by the officer."""

    officer_id: bytes
    epoch: int
    public_key: KemPublicKey
    signature: bytes

    def signed_part(self) -> bytes:
        return (
            Writer()
            .u8(_CERT_VERSION)
            .fixed(self.officer_id, OFFICER_ID_LEN)
            .u32(self.epoch)
            .fixed(self.public_key.raw, PUBLIC_LEN)
            .bytes()
        )

    def encode(self) -> bytes:
        return self.signed_part() + self.signature

    @classmethod
    def decode(cls, raw: bytes) -> EpochKeyCert:
        r = Reader(raw)
        expect_version(r, _CERT_VERSION, "epoch key certificate")
        oid = r.fixed(OFFICER_ID_LEN)
        epoch = r.u32()
        pk = KemPublicKey(r.fixed(PUBLIC_LEN))
        sig = r.fixed(HYBRID_SIG_LEN)
        r.end()
        return cls(oid, epoch, pk, sig)

    def verify(self, officer: OfficerPublic) -> None:
        """Raise ``SignatureError`` unless ``officer`` certified this key."""
        if not equal(self.officer_id, officer.officer_id):
            raise SignatureError("epoch key is certified for another officer")
        officer.verify_key.verify_hybrid(self.signature, labels.SIG_EPOCH_KEY, self.signed_part())


def newest_certs(
    certs: Sequence[EpochKeyCert], others: Iterable[EpochKeyCert]
) -> tuple[EpochKeyCert, ...]:
    """``certs`` (one per officer), each replaced by a newer one of the same
    officer from ``others``; officers ``certs`` does not name are left out."""
    newest = {c.officer_id: c for c in certs}
    for cert in others:
        have = newest.get(cert.officer_id)
        if have is not None and cert.epoch > have.epoch:
            newest[cert.officer_id] = cert
    return tuple(newest[c.officer_id] for c in certs)


class EpochKey:
    """An officer's private HPKE key for one key epoch."""

    __slots__ = ("epoch", "private_key")

    def __init__(self, epoch: int, private_key: KemPrivateKey) -> None:
        self.epoch = epoch
        self.private_key = private_key

    def __repr__(self) -> str:
        return f"EpochKey(epoch={self.epoch}, <secret>)"

    @classmethod
    def generate(cls, epoch: int, rng: Rng) -> EpochKey:
        return cls.from_parts(epoch, rng(MLKEM_SEED_LEN), rng(X25519_LEN))

    @classmethod
    def from_parts(cls, epoch: int, mlkem_seed: bytes, x25519_private: bytes) -> EpochKey:
        return cls(epoch, KemPrivateKey(mlkem_seed, x25519_private))

    def certify(self, officer: Officer) -> EpochKeyCert:
        unsigned = EpochKeyCert(officer.officer_id, self.epoch, self.private_key.public_key, b"")
        sig = officer.signing_key.sign_hybrid(labels.SIG_EPOCH_KEY, unsigned.signed_part())
        return EpochKeyCert(officer.officer_id, self.epoch, self.private_key.public_key, sig)

    def encode_secret(self) -> bytes:
        m, x = self.private_key.seeds()
        return Writer().u8(_SECRET_VERSION).u32(self.epoch).fixed(m, 64).fixed(x, 32).bytes()

    @classmethod
    def decode_secret(cls, raw: bytes) -> EpochKey:
        r = Reader(raw)
        expect_version(r, _SECRET_VERSION, "epoch key")
        epoch = r.u32()
        m = r.fixed(MLKEM_SEED_LEN)
        x = r.fixed(X25519_LEN)
        r.end()
        return cls.from_parts(epoch, m, x)
