"""The log's heads in the C2SP formats: signed notes, checkpoints, cosignatures.

Three specifications, followed to the letter so that witness software written
elsewhere can cosign our relay's heads and verifiers written elsewhere can
check them:

* c2sp.org/signed-note: text ending in a newline, a blank line, then lines
  ``— <key name> base64(key ID [4] || signature)``. Key ID =
  ``SHA-256(name || 0x0A || type || public key)[:4]``; type 0x01 is Ed25519
  over the text. Verifier keys ("vkeys") are ``name+hex(key ID)+base64(type ||
  public key)``.
* c2sp.org/tlog-checkpoint: the text is the origin line, the tree size in
  decimal, the root hash in base64, then optional extension lines.
* c2sp.org/tlog-cosignature: a witness's statement that a checkpoint is the
  largest consistent head it has seen. Type 0x04 (Ed25519) signs
  ``cosignature/v1\\ntime <t>\\n`` || the checkpoint text; type 0x06 (ML-DSA-44,
  the post-quantum one) signs the binary ``subtree/v1`` message. Both carry
  ``timestamp u64 || signature``.
* c2sp.org/tlog-witness: the body of an ``add-checkpoint`` request, ``old
  <size>``, at most 63 consistency-proof hashes in base64, a blank line, the
  checkpoint note.

No I/O here: keys are passed in, clocks are parameters.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from backchannel.crypto.notesig import (
    ED25519_PUBLIC_LEN,
    ED25519_SIG_LEN,
    MLDSA44_PUBLIC_LEN,
    MLDSA44_SIG_LEN,
    Ed25519NoteKey,
    MLDSA44NoteKey,
    verify_ed25519,
    verify_mldsa44,
)
from backchannel.crypto.primitives import HASH_LEN, sha256
from backchannel.errors import DecodeError, SignatureError

#: Signature types of c2sp.org/signed-note.
TYPE_ED25519 = 0x01
TYPE_COSIGNATURE_ED25519 = 0x04
TYPE_COSIGNATURE_MLDSA44 = 0x06
_PUBLIC_LEN = {
    TYPE_ED25519: ED25519_PUBLIC_LEN,
    TYPE_COSIGNATURE_ED25519: ED25519_PUBLIC_LEN,
    TYPE_COSIGNATURE_MLDSA44: MLDSA44_PUBLIC_LEN,
}
#: Most signatures a note may carry (the specification asks for at least 16).
MAX_SIGNATURES = 32
#: Largest note accepted (32 ML-DSA-44 cosignatures fit with room to spare).
MAX_NOTE_LEN = 160 * 1024
#: Most consistency-proof lines in an add-checkpoint request (tlog-witness).
MAX_PROOF_LINES = 63
_DASH = "\u2014"
_MAX_U63 = 2**63 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise DecodeError(f"{what} is not base64") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decimal(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > _MAX_U63:
        raise DecodeError(f"{what} is not a decimal number without leading zeroes")
    return int(text)


def check_name(name: str) -> str:
    """A key name: non-empty, no Unicode space, no ``+`` (signed-note)."""
    if not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise DecodeError("a key name is non-empty, without spaces or '+'")
    return name


def key_id(name: str, sig_type: int, public: bytes) -> bytes:
    """``SHA-256(name || 0x0A || type || public key)[:4]``."""
    return sha256(check_name(name).encode() + b"\n" + bytes([sig_type]) + public)[:4]


@dataclass(frozen=True, slots=True)
class Verifier:
    """A public key a note signature may come from: name, type and key."""

    name: str
    sig_type: int
    public: bytes

    def __post_init__(self) -> None:
        check_name(self.name)
        if _PUBLIC_LEN.get(self.sig_type) != len(self.public):
            raise DecodeError("unknown signature type, or a public key of the wrong length")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public)

    def vkey(self) -> str:
        """The verifier key string: ``name+hex(key ID)+base64(type || public key)``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.sig_type]) + self.public)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        name, sep, rest = vkey.partition("+")
        hint, sep2, material = rest.partition("+")
        if not sep or not sep2 or not re.fullmatch(r"[0-9a-f]{8}", hint):
            raise DecodeError("a verifier key is name+hex key ID+base64 key")
        raw = _b64decode(material, "verifier key")
        if not raw:
            raise DecodeError("verifier key is empty")
        verifier = cls(name, raw[0], raw[1:])
        if verifier.key_id.hex() != hint:
            raise DecodeError("verifier key's ID does not match its name and key")
        return verifier

    def matches(self, sig: NoteSignature) -> bool:
        return sig.name == self.name and sig.key_id == self.key_id


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_id: bytes
    data: bytes

    def line(self) -> bytes:
        return f"{_DASH} {self.name} {_b64(self.key_id + self.data)}\n".encode()


@dataclass(frozen=True, slots=True)
class Note:
    """Text ending in a newline and its signature lines."""

    text: bytes
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        return self.text + b"\n" + b"".join(s.line() for s in self.signatures)

    def with_signatures(self, extra: Iterable[NoteSignature]) -> Note:
        have = {s.line() for s in self.signatures}
        more = tuple(s for s in extra if s.line() not in have)
        if len(self.signatures) + len(more) > MAX_SIGNATURES:
            raise DecodeError(f"a note carries at most {MAX_SIGNATURES} signatures")
        return Note(self.text, self.signatures + more)

    @classmethod
    def decode(cls, raw: bytes) -> Note:
        if len(raw) > MAX_NOTE_LEN:
            raise DecodeError("note too long")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("a note is UTF-8") from None
        if any(c < " " and c != "\n" for c in text):
            raise DecodeError("a note holds no control characters but newlines")
        cut = text.rfind("\n\n")
        if cut < 0 or not text.endswith("\n"):
            raise DecodeError("a note is text, a blank line, then signature lines")
        body, lines = text[: cut + 1], text[cut + 2 :].split("\n")[:-1]
        if not lines or len(lines) > MAX_SIGNATURES:
            raise DecodeError(f"a note carries 1 to {MAX_SIGNATURES} signatures")
        return cls(body.encode(), tuple(_signature_line(line) for line in lines))


def _signature_line(line: str) -> NoteSignature:
    dash, sp, rest = line.partition(" ")
    name, sp2, b64 = rest.partition(" ")
    if dash != _DASH or not sp or not sp2 or " " in b64:
        raise DecodeError("a signature line is '— <name> <base64>'")
    raw = _b64decode(b64, "signature")
    if len(raw) < 5:
        raise DecodeError("signature too short")
    return NoteSignature(check_name(name), raw[:4], raw[4:])


def sign_note(text: bytes, name: str, key: Ed25519NoteKey) -> NoteSignature:
    """An Ed25519 note signature (type 0x01) over ``text``."""
    return NoteSignature(name, key_id(name, TYPE_ED25519, key.public), key.sign(text))


def verify_note(note: Note, verifiers: Sequence[Verifier]) -> list[Verifier]:
    """The known keys whose signatures verify; raise if one fails or none is there.

    Signatures from unknown keys (name or key ID differs) are ignored, as the
    specification requires; a known key's signature that fails rejects the
    whole note. Only type 0x01 keys are checked here; cosignatures have their
    own function, since they sign a different message.
    """
    good: list[Verifier] = []
    for v in verifiers:
        if v.sig_type != TYPE_ED25519:
            raise SignatureError("verify_note checks Ed25519 note keys only")
        for sig in note.signatures:
            if v.matches(sig):
                verify_ed25519(v.public, sig.data, note.text)
                good.append(v)
    if not good:
        raise SignatureError("no signature from a known key")
    return good


# -- checkpoints ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or not self.origin.isprintable():
            raise DecodeError("a checkpoint's origin is one non-empty printable line")
        if not 0 <= self.size <= _MAX_U63 or len(self.root) != HASH_LEN:
            raise DecodeError("a checkpoint has a 63-bit size and a 32-byte root")
        if any(not e or "\n" in e or not e.isprintable() for e in self.extensions):
            raise DecodeError("extension lines are non-empty printable lines")

    def text(self) -> bytes:
        lines = [self.origin, str(self.size), _b64(self.root), *self.extensions]
        return "".join(f"{line}\n" for line in lines).encode()

    @classmethod
    def parse(cls, text: bytes) -> Checkpoint:
        try:
            lines = text.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            raise DecodeError("a checkpoint is UTF-8") from None
        if len(lines) < 4 or lines[-1] != "":
            raise DecodeError("a checkpoint is origin, size and root hash, one per line")
        origin, size, root, *ext = lines[:-1]
        raw_root = _b64decode(root, "root hash")
        cp = cls(origin, _decimal(size, "tree size"), raw_root, tuple(ext))
        if cp.text() != text:
            raise DecodeError("checkpoint is not in its canonical form")
        return cp


def sign_checkpoint(cp: Checkpoint, name: str, key: Ed25519NoteKey) -> Note:
    return Note(cp.text(), (sign_note(cp.text(), name, key),))


def open_checkpoint(raw: bytes, log: Verifier) -> tuple[Checkpoint, Note]:
    """Parse and verify a checkpoint signed by ``log`` (name = origin, type 0x01)."""
    note = Note.decode(raw)
    verify_note(note, [log])
    cp = Checkpoint.parse(note.text)
    if cp.origin != log.name:
        raise SignatureError("checkpoint's origin is not the log's key name")
    return cp, note


# -- cosignatures ----------------------------------------------------------------------


def _cosigned_ed25519(text: bytes, timestamp: int) -> bytes:
    return b"cosignature/v1\ntime %d\n" % timestamp + text


def _cosigned_mldsa44(name: str, cp: Checkpoint, timestamp: int) -> bytes:
    n, o = name.encode(), cp.origin.encode()
    if len(n) > 255 or len(o) > 255:
        raise DecodeError("cosigner name and origin are at most 255 bytes")
    return (
        b"subtree/v1\n\x00"
        + bytes([len(n)])
        + n
        + timestamp.to_bytes(8, "big")
        + bytes([len(o)])
        + o
        + (0).to_bytes(8, "big")
        + cp.size.to_bytes(8, "big")
        + cp.root
    )


def cosign(
    cp: Checkpoint, name: str, key: Ed25519NoteKey | MLDSA44NoteKey, timestamp: int
) -> NoteSignature:
    """A witness's cosignature on ``cp`` at ``timestamp`` (POSIX seconds)."""
    if not 0 <= timestamp <= _MAX_U63:
        raise DecodeError("timestamp out of range")
    ts = timestamp.to_bytes(8, "big")
    if isinstance(key, Ed25519NoteKey):
        kid = key_id(name, TYPE_COSIGNATURE_ED25519, key.public)
        return NoteSignature(name, kid, ts + key.sign(_cosigned_ed25519(cp.text(), timestamp)))
    kid = key_id(name, TYPE_COSIGNATURE_MLDSA44, key.public)
    return NoteSignature(name, kid, ts + key.sign(_cosigned_mldsa44(name, cp, timestamp)))


def verify_cosignature(note: Note, cosigner: Verifier) -> int:
    """The timestamp of ``cosigner``'s cosignature on the checkpoint ``note``; raise if none."""
    cp = Checkpoint.parse(note.text)
    sig_len = {
        TYPE_COSIGNATURE_ED25519: ED25519_SIG_LEN,
        TYPE_COSIGNATURE_MLDSA44: MLDSA44_SIG_LEN,
    }.get(cosigner.sig_type)
    if sig_len is None:
        raise SignatureError("not a cosigner key (type 0x04 or 0x06)")
    for sig in note.signatures:
        if not cosigner.matches(sig):
            continue
        if len(sig.data) != 8 + sig_len:
            raise SignatureError("cosignature has the wrong length")
        ts = int.from_bytes(sig.data[:8], "big")
        if ts > _MAX_U63:
            raise SignatureError("cosignature timestamp out of range")
        if cosigner.sig_type == TYPE_COSIGNATURE_ED25519:
            verify_ed25519(cosigner.public, sig.data[8:], _cosigned_ed25519(note.text, ts))
        else:
            verify_mldsa44(cosigner.public, sig.data[8:], _cosigned_mldsa44(cosigner.name, cp, ts))
        return ts
    raise SignatureError(f"no cosignature from {cosigner.name}")


# -- tlog-witness add-checkpoint -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """An ``add-checkpoint`` request: the size the witness has, a proof, the checkpoint."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes

    def encode(self) -> bytes:
        lines = [f"old {self.old_size}", *(_b64(h) for h in self.proof), ""]
        return "".join(f"{line}\n" for line in lines).encode() + self.note

    @classmethod
    def decode(cls, raw: bytes) -> AddCheckpoint:
        head, sep, note = raw.partition(b"\n\n")
        if not sep:
            raise DecodeError(
                "an add-checkpoint body is 'old N', proof lines, a blank line, a note"
            )
        try:
            first, *hashes = head.decode("ascii").split("\n")
        except UnicodeDecodeError:
            raise DecodeError("the request's first lines are ASCII") from None
        if not first.startswith("old "):
            raise DecodeError("the first line is 'old <size>'")
        old = _decimal(first[4:], "old size")
        if len(hashes) > MAX_PROOF_LINES:
            raise DecodeError(f"at most {MAX_PROOF_LINES} consistency-proof lines")
        proof = tuple(_b64decode(h, "proof hash") for h in hashes)
        if any(len(h) != HASH_LEN for h in proof):
            raise DecodeError("a proof hash is 32 bytes")
        return cls(old, proof, note)
