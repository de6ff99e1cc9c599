"""The public intake: what a reporter sends a mission, and what the mission answers.

Sans I/O. A mission publishes an :class:`IntakeCard` (its intake key, its
relay and tenant, the proof of work the relay asks for). Anyone holding the
card seals an :class:`IntakeRequest` to the intake key: HPKE (RFC 9180) with
the hybrid KEM ``MLKEM768-X25519`` (X-Wing), HKDF-SHA256 and
ChaCha20-Poly1305, into a cell of :data:`REQUEST_CELL_SIZE` bytes whatever
was written. The request holds a **reply code** the submitter keeps: from it
both sides derive the name of the answer at the relay (:func:`reply_id`) and
the key that seals it (:func:`seal_answer`), so only the holder of the code
reads the answer, and an unanswered request (pending, ignored or blocked)
looks the same to him.

The intake page (``relay/static/intake/intake.js``) implements the same
formats in the browser; ``docs/spec/intake-v1.md`` is the reference for both.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass
from enum import IntEnum

from backchannel.crypto import labels
from backchannel.crypto.kem import PUBLIC_LEN, KemPrivateKey, KemPublicKey
from backchannel.crypto.primitives import aead_open, aead_seal, hkdf, sha256
from backchannel.errors import DecodeError
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.constants import CELL_SIZE, SLOT_LEN
from backchannel.protocol.identity import Rng

VERSION = 1
CARD_PREFIX = "BACKCHANNEL-INTAKE-1:"
#: A sealed request, always: HPKE's ``enc`` (1,120), the padded plaintext, the tag (16).
REQUEST_CELL_SIZE = 4096
REQUEST_PLAINTEXT_SIZE = REQUEST_CELL_SIZE - 1120 - 16
#: A sealed answer, always: nonce (12), the padded plaintext, the tag (16). It
#: is an ordinary cell of the mission's tenant, at the slot named by the reply
#: id, so it has the size of every cell.
ANSWER_CELL_SIZE = CELL_SIZE
ANSWER_PLAINTEXT_SIZE = ANSWER_CELL_SIZE - 12 - 16
REPLY_CODE_LEN = 16
REPLY_ID_LEN = SLOT_LEN
#: Bounds of what a submitter writes (bytes of UTF-8).
MAX_SUBJECT = 200
MAX_CONTACT = 200
#: The request's fixed fields: version, kind, reply code, three length prefixes.
_REQUEST_FIXED = 1 + 1 + REPLY_CODE_LEN + 3 * 4
MAX_REQUEST_TEXT = REQUEST_PLAINTEXT_SIZE - _REQUEST_FIXED
MAX_ANSWER_TEXT = ANSWER_PLAINTEXT_SIZE - 1 - 4
#: Most proof-of-work difficulty a card may name (bits of SHA-256 set to zero).
MAX_POW_BITS = 32
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class Kind(IntEnum):
    """What a submitter asks for."""

    INTERVIEW = 1
    MEDIA_TOUR = 2
    MEETING = 3
    OTHER = 4

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str) -> Kind:
        for kind in cls:
            if kind.label == text:
                return kind
        names = ", ".join(k.label for k in cls)
        raise DecodeError(f"unknown request kind {text!r}; choose one of: {names}")


# --- the card ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntakeCard:
    """What a mission publishes so that anyone can write to it."""

    mission_name: str
    mission_id: bytes
    relay_url: str
    tenant_id: str
    intake_key: KemPublicKey
    pow_bits: int

    def __post_init__(self) -> None:
        if len(self.mission_id) != 32:
            raise DecodeError("intake card: the mission id must be 32 bytes")
        if not 0 <= self.pow_bits <= MAX_POW_BITS:
            raise DecodeError(f"intake card: proof-of-work bits must be 0 to {MAX_POW_BITS}")
        if not self.relay_url.startswith(("https://", "http://")):
            raise DecodeError("intake card: the relay address must be an http(s) URL")

    def encode(self) -> bytes:
        return (
            Writer()
            .u8(VERSION)
            .text(self.mission_name)
            .fixed(self.mission_id, 32)
            .text(self.relay_url)
            .text(self.tenant_id)
            .fixed(self.intake_key.raw, PUBLIC_LEN)
            .u8(self.pow_bits)
            .bytes()
        )

    @classmethod
    def decode(cls, data: bytes) -> IntakeCard:
        r = Reader(data)
        expect_version(r, VERSION, "intake card")
        name = r.text(200)
        mission_id = r.fixed(32)
        relay_url = r.text(2000)
        tenant_id = r.text(200)
        key = KemPublicKey(r.fixed(PUBLIC_LEN))
        bits = r.u8()
        r.end()
        return cls(name, mission_id, relay_url, tenant_id, key, bits)

    def to_text(self) -> str:
        return CARD_PREFIX + base64.urlsafe_b64encode(self.encode()).decode().rstrip("=")

    @classmethod
    def from_text(cls, text: str) -> IntakeCard:
        text = text.strip()
        if "#" in text:  # the intake page's address carries the card after '#'
            text = text.split("#", 1)[1]
        if not text.startswith(CARD_PREFIX):
            raise DecodeError(f"this is not an intake card (it should start with {CARD_PREFIX})")
        body = text[len(CARD_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise DecodeError("the intake card is damaged (not base64)") from None
        return cls.decode(raw)

    def fingerprint(self) -> str:
        """What a submitter compares with the mission's published fingerprint."""
        digest = sha256(labels.INTAKE_CARD, self.encode())[:16].hex().upper()
        return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))

    def page_url(self) -> str:
        """The relay's intake page with this card after '#' (never sent to the relay)."""
        return f"{self.relay_url.rstrip('/')}/intake/#{self.to_text()}"


def intake_seed(mission_secret: bytes, mission_id: bytes, generation: int = 0) -> bytes:
    """The X-Wing seed of the mission's intake key (32 bytes)."""
    return hkdf(
        mission_secret,
        salt=None,
        info=labels.INTAKE_KEY + mission_id + generation.to_bytes(4, "big"),
    )


def intake_private_key(
    mission_secret: bytes, mission_id: bytes, generation: int = 0
) -> KemPrivateKey:
    """The mission's intake key, which every officer derives from the mission secret.

    A new mission secret (a roster change that removes an officer) makes a new
    intake key, and the old card stops reaching the mission: it must be
    published again (``docs/intake.md``).
    """
    return KemPrivateKey.from_xwing_seed(intake_seed(mission_secret, mission_id, generation))


# --- requests ----------------------------------------------------------------------


def _clean(text: str, limit: int, what: str) -> str:
    text = unicodedata.normalize("NFC", text)
    if len(text.encode("utf-8")) > limit:
        raise DecodeError(f"the {what} is too long (at most {limit} bytes of UTF-8)")
    return text


@dataclass(frozen=True, slots=True)
class IntakeRequest:
    """A request as the mission reads it. ``reply_code`` is the submitter's secret."""

    kind: Kind
    subject: str
    body: str
    contact: str
    reply_code: bytes

    def __repr__(self) -> str:
        return f"IntakeRequest({self.kind.label}, <sealed content>)"

    def encode(self) -> bytes:
        subject = _clean(self.subject, MAX_SUBJECT, "subject").encode()
        contact = _clean(self.contact, MAX_CONTACT, "contact").encode()
        body = _clean(self.body, MAX_REQUEST_TEXT, "request").encode()
        if len(subject) + len(contact) + len(body) > MAX_REQUEST_TEXT:
            raise DecodeError(
                f"the request is too long: subject, text and contact together take at most "
                f"{MAX_REQUEST_TEXT} bytes of UTF-8"
            )
        if len(self.reply_code) != REPLY_CODE_LEN:
            raise DecodeError("the reply code must be 16 bytes")
        raw = (
            Writer()
            .u8(VERSION)
            .u8(int(self.kind))
            .fixed(self.reply_code, REPLY_CODE_LEN)
            .var(subject)
            .var(body)
            .var(contact)
            .bytes()
        )
        return raw + bytes(REQUEST_PLAINTEXT_SIZE - len(raw))

    @classmethod
    def decode(cls, data: bytes) -> IntakeRequest:
        if len(data) != REQUEST_PLAINTEXT_SIZE:
            raise DecodeError("an intake request has the wrong size")
        r = Reader(data)
        expect_version(r, VERSION, "intake request")
        try:
            kind = Kind(r.u8())
        except ValueError:
            raise DecodeError("an intake request names an unknown kind") from None
        code = r.fixed(REPLY_CODE_LEN)
        subject = r.text(MAX_SUBJECT)
        body = r.text(MAX_REQUEST_TEXT)
        contact = r.text(MAX_CONTACT)
        if any(r.rest()):
            raise DecodeError("an intake request's padding is not zero")
        return cls(kind, subject, body, contact, code)


def _request_info(card: IntakeCard) -> bytes:
    return labels.INTAKE_REQUEST + card.mission_id


def seal_request(card: IntakeCard, request: IntakeRequest) -> bytes:
    """The fixed-size cell the relay stores."""
    cell = card.intake_key.seal(request.encode(), _request_info(card))
    assert len(cell) == REQUEST_CELL_SIZE
    return cell


def open_request(key: KemPrivateKey, card: IntakeCard, cell: bytes) -> IntakeRequest:
    """Raises :class:`AuthenticationError` for a cell not sealed to this card."""
    if len(cell) != REQUEST_CELL_SIZE:
        raise DecodeError("an intake cell has the wrong size")
    return IntakeRequest.decode(key.open(cell, _request_info(card)))


# --- reply codes and answers ---------------------------------------------------------


def new_reply_code(rng: Rng) -> bytes:
    return rng(REPLY_CODE_LEN)


def format_reply_code(code: bytes) -> str:
    """26 characters of base32 in groups of five (``ABCDE-FGHIJ-...``)."""
    text = base64.b32encode(code).decode().rstrip("=")
    return "-".join(text[i : i + 5] for i in range(0, len(text), 5))


def parse_reply_code(text: str) -> bytes:
    cleaned = "".join(c for c in text.upper() if c not in "- \t\r\n")
    if len(cleaned) != 26 or any(c not in _B32 for c in cleaned):
        raise DecodeError("that is not a reply code (26 letters and digits, in groups of five)")
    try:
        return base64.b32decode(cleaned + "======")
    except (binascii.Error, ValueError):
        raise DecodeError("that is not a reply code") from None


def reply_id(card: IntakeCard, code: bytes) -> bytes:
    """The answer's name at the relay: nobody without the code can compute it."""
    return hkdf(code, salt=None, info=labels.INTAKE_REPLY_ID + card.mission_id, length=REPLY_ID_LEN)


def answer_slot(reply: bytes) -> bytes:
    """The slot the answer named ``reply`` (a :func:`reply_id`) is kept at.

    The relay reads this slot for whoever names ``reply``, without a
    credential; a hash of it, not the name itself, so that naming a slot of
    the tenant's channels reads nothing: the slot a name gives is as hard to
    aim at a chosen slot as a preimage of SHA-256.
    """
    if len(reply) != REPLY_ID_LEN:
        raise DecodeError(f"a reply id is {REPLY_ID_LEN} bytes")
    return sha256(labels.INTAKE_ANSWER_SLOT, reply)


def _reply_key(card: IntakeCard, code: bytes) -> bytes:
    return hkdf(code, salt=None, info=labels.INTAKE_REPLY_KEY + card.mission_id)


#: The relay's error (``{"error": ...}``, with 404) while a tenant's intake is closed,
#: or for a tenant it does not hold: it then takes no request and shows no answer,
#: not even one the mission already sent, until the mission opens it again
#: (``docs/spec/relay-api.md``).
CLOSED_ERROR = "this mission takes no requests on this relay; check the intake card"
#: Its error (404) for a reply code with no answer in an open intake: the same for a
#: request pending, ignored or blocked, and for no request at all.
NO_ANSWER_ERROR = "no answer under this reply code (yet)"
#: What a submitter is told when the intake is closed as he looks for his answer.
CLOSED_SAID = (
    "the mission's intake is closed: while it is, no answer can be read, not even one "
    "already sent; look again once the mission has opened it again"
)

#: What an officer's tag or note may not hold: control characters (a note keeps its
#: line breaks and tabs), and the invisible direction controls (U+202A-U+202E,
#: U+2066-U+2069, U+200E, U+200F, U+061C), which turn round the text beside them
#: wherever it is shown. Letters of any script, right-to-left ones too, are fine.
_HIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def hidden_controls(text: str, lines: bool = False) -> bool:
    """Whether ``text`` holds a control character (but for newline and tab when
    ``lines``) or an invisible direction control."""
    if not lines and ("\n" in text or "\t" in text):
        return True
    return _HIDDEN.search(text) is not None


def check_answer_text(text: str) -> str:
    """The answer as it will be sealed (NFC); raises if it is too long."""
    return _clean(text, MAX_ANSWER_TEXT, "answer")


def seal_answer(card: IntakeCard, code: bytes, text: str, rng: Rng) -> bytes:
    raw = Writer().u8(VERSION).var(check_answer_text(text).encode()).bytes()
    padded = raw + bytes(ANSWER_PLAINTEXT_SIZE - len(raw))
    nonce = rng(12)
    aad = labels.INTAKE_ANSWER + reply_id(card, code)
    return nonce + aead_seal(_reply_key(card, code), nonce, padded, aad)


def open_answer(card: IntakeCard, code: bytes, cell: bytes) -> str:
    if len(cell) != ANSWER_CELL_SIZE:
        raise DecodeError("an intake answer has the wrong size")
    aad = labels.INTAKE_ANSWER + reply_id(card, code)
    padded = aead_open(_reply_key(card, code), cell[:12], cell[12:], aad)
    r = Reader(padded)
    expect_version(r, VERSION, "intake answer")
    text = r.text(MAX_ANSWER_TEXT)
    if any(r.rest()):
        raise DecodeError("an intake answer's padding is not zero")
    return text


# --- proof of work -----------------------------------------------------------------


def pow_prefix(tenant_id: str, bucket: int, cell: bytes) -> bytes:
    """What the nonce is appended to: bound to the tenant, the time bucket and the cell."""
    tenant = tenant_id.encode("ascii")
    return (
        labels.INTAKE_POW
        + len(tenant).to_bytes(1, "big")
        + tenant
        + bucket.to_bytes(8, "big")
        + sha256(cell)
    )


def _zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte:
            return bits + 8 - byte.bit_length()
        bits += 8
    return bits


def pow_ok(prefix: bytes, nonce: int, bits: int) -> bool:
    if not 0 <= nonce < 1 << 64:
        return False
    return _zero_bits(sha256(prefix, nonce.to_bytes(8, "big"))) >= bits


def solve_pow(prefix: bytes, bits: int) -> int:
    """The first nonce that meets ``bits`` (2**bits hashes on average)."""
    nonce = 0
    while not pow_ok(prefix, nonce, bits):
        nonce += 1
    return nonce
