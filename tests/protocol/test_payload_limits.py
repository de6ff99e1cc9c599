"""A payload is refused when it is made, not when it is read: what the other
end cannot decode must never be sealed."""

from __future__ import annotations

import pytest

from backchannel.errors import DecodeError
from backchannel.protocol.payload import (
    MAX_FIELD_NAME,
    MAX_FIELD_TEXT,
    MAX_TEXT,
    MessageKind,
    Payload,
    meeting_request,
    note,
)


def test_the_longest_payloads_made_are_read_back() -> None:
    for p in (
        note("é" * (MAX_TEXT // 2)),
        meeting_request("x", "w" * MAX_FIELD_TEXT, "Geneva"),
        Payload(MessageKind.NOTE, "x", (("n" * MAX_FIELD_NAME, "v"),)),
    ):
        assert Payload.decode(p.encode()) == p


@pytest.mark.parametrize(
    "make",
    [
        lambda: note("x" * (MAX_TEXT + 1)),
        lambda: note("é" * (MAX_TEXT // 2 + 1)),  # the limit is in bytes of UTF-8
        lambda: meeting_request("x", "w" * (MAX_FIELD_TEXT + 1), "Geneva"),
        lambda: Payload(MessageKind.NOTE, "x", (("n" * (MAX_FIELD_NAME + 1), "v"),)),
        lambda: Payload(MessageKind.NOTE, "x", tuple((f"f{i}", "") for i in range(256))),
    ],
)
def test_a_payload_the_other_end_could_not_read_is_refused_when_made(make: object) -> None:
    with pytest.raises(DecodeError, match="for a message"):
        make()  # type: ignore[operator]
