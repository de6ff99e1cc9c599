"""What a message says: its kind and its fields (encrypted inside a message).

Kinds on the official channel are notes, meeting requests and media/tour
requests. Receipts and cover are cell-level kinds (:mod:`.cells`): they never
carry free text, so they need no co-signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from backchannel.errors import DecodeError
from backchannel.protocol.codec import Reader, Writer, expect_version

_VERSION = 1
MAX_TEXT = 256 * 1024
MAX_FIELD_TEXT = 1024
MAX_FIELD_NAME = 64


class MessageKind(IntEnum):
    NOTE = 1
    MEETING_REQUEST = 2
    MEDIA_REQUEST = 3
    RECEIPT = 4
    COVER = 5


#: Fields each kind must carry (besides the text).
REQUIRED_FIELDS: dict[MessageKind, tuple[str, ...]] = {
    MessageKind.NOTE: (),
    MessageKind.MEETING_REQUEST: ("when", "where"),
    MessageKind.MEDIA_REQUEST: ("outlet", "subject"),
}
MESSAGE_KINDS = tuple(REQUIRED_FIELDS)


@dataclass(frozen=True, slots=True)
class Payload:
    kind: MessageKind
    text: str
    fields: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.kind not in REQUIRED_FIELDS:
            raise DecodeError("this kind of message cannot carry a payload")
        names = [k for k, _ in self.fields]
        if len(set(names)) != len(names):
            raise DecodeError("a message field appears twice")
        missing = [f for f in REQUIRED_FIELDS[self.kind] if f not in names]
        if missing:
            raise DecodeError(f"a {self.kind.name.lower()} needs: {', '.join(missing)}")
        # What decode reads back, checked here too: a payload sealed past these
        # would be a message that nobody at either end could read.
        if len(self.text.encode("utf-8")) > MAX_TEXT:
            raise DecodeError(
                f"the text is too long for a message: {MAX_TEXT // 1024} KiB of UTF-8 at most"
            )
        if len(self.fields) > 255:
            raise DecodeError("too many fields for a message: 255 at most")
        for k, v in self.fields:
            if len(k.encode("utf-8")) > MAX_FIELD_NAME or len(v.encode("utf-8")) > MAX_FIELD_TEXT:
                raise DecodeError(
                    f"the field {k[:MAX_FIELD_NAME]!r} is too long for a message: "
                    f"{MAX_FIELD_TEXT} bytes of UTF-8 at most (its name {MAX_FIELD_NAME})"
                )

    def __repr__(self) -> str:  # never print content
        return f"Payload(kind={self.kind.name}, <{len(self.text)} chars>)"

    def get(self, name: str) -> str | None:
        return dict(self.fields).get(name)

    def encode(self) -> bytes:
        w = Writer().u8(_VERSION).u8(self.kind).text(self.text).u8(len(self.fields))
        for k, v in self.fields:
            w.text(k).text(v)
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> Payload:
        r = Reader(raw)
        expect_version(r, _VERSION, "payload")
        kind_raw = r.u8()
        try:
            kind = MessageKind(kind_raw)
        except ValueError:
            raise DecodeError("unknown message kind") from None
        text = r.text(MAX_TEXT)
        count = r.u8()
        fields = tuple((r.text(MAX_FIELD_NAME), r.text(MAX_FIELD_TEXT)) for _ in range(count))
        r.end()
        return cls(kind, text, fields)


def note(text: str) -> Payload:
    return Payload(MessageKind.NOTE, text)


def meeting_request(text: str, when: str, where: str) -> Payload:
    return Payload(MessageKind.MEETING_REQUEST, text, (("when", when), ("where", where)))


def media_request(text: str, outlet: str, subject: str) -> Payload:
    return Payload(MessageKind.MEDIA_REQUEST, text, (("outlet", outlet), ("subject", subject)))
