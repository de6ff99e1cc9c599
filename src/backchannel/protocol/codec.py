"""Canonical binary encoding: fixed-width big-endian integers and
length-prefixed byte strings.

One writer and one reader, so that every object has exactly one encoding and
signatures cover that encoding. The reader raises :class:`DecodeError` on any
truncation, overlong length or trailing byte, and never anything else.
"""

from __future__ import annotations

from backchannel.errors import DecodeError

#: Upper bound on any length-prefixed field; nothing legitimate comes close.
MAX_FIELD = 1 << 20


class Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        self._parts.append(v.to_bytes(1, "big"))
        return self

    def u16(self, v: int) -> Writer:
        self._parts.append(v.to_bytes(2, "big"))
        return self

    def u32(self, v: int) -> Writer:
        self._parts.append(v.to_bytes(4, "big"))
        return self

    def u64(self, v: int) -> Writer:
        self._parts.append(v.to_bytes(8, "big"))
        return self

    def fixed(self, b: bytes, length: int) -> Writer:
        if len(b) != length:
            raise ValueError(f"field must be {length} bytes")
        self._parts.append(b)
        return self

    def var(self, b: bytes) -> Writer:
        if len(b) > MAX_FIELD:
            raise ValueError("field too long")
        self._parts.append(len(b).to_bytes(4, "big"))
        self._parts.append(b)
        return self

    def text(self, s: str) -> Writer:
        return self.var(s.encode("utf-8"))

    def bytes(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise DecodeError("truncated data")
        out = bytes(self._data[self._pos : end])
        self._pos = end
        return out

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self._take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def fixed(self, n: int) -> bytes:
        return self._take(n)

    def var(self, max_len: int = MAX_FIELD) -> bytes:
        n = self.u32()
        if n > max_len:
            raise DecodeError("field too long")
        return self._take(n)

    def text(self, max_len: int = 4096) -> str:
        raw = self.var(max_len)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("text is not UTF-8") from None

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def peek(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end), without reading them."""
        return bytes(self._data[self._pos : self._pos + n])

    def rest(self) -> bytes:
        return self._take(self.remaining())

    def end(self) -> None:
        if self._pos != len(self._data):
            raise DecodeError("trailing bytes")


def expect_version(r: Reader, version: int, what: str) -> None:
    got = r.u8()
    if got != version:
        raise DecodeError(f"unsupported {what} version {got}; expected {version}")
