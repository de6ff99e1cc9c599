"""The sealed message's encoding at its edges: each range check alone, the bounds
exactly, and one signature per officer."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backchannel.client.harness import Pair
from backchannel.errors import DecodeError
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.message import Header, SealedMessage
from backchannel.protocol.payload import note


def _sealed(pair: Pair) -> SealedMessage:
    msg = pair.compose(pair.a, 0, note("x")).message
    assert msg is not None
    return msg


@pytest.mark.parametrize(("field", "value"), [("direction", 2), ("seq", 0)])
def test_a_header_out_of_range_in_one_field_alone_is_refused(
    pair: Pair, field: str, value: int
) -> None:
    header = _sealed(pair).header
    assert Header.decode(header.encode()) == header
    with pytest.raises(DecodeError, match="out of range"):
        Header.decode(replace(header, **{field: value}).encode())


def test_as_many_shares_and_signatures_as_officers_can_be_are_read(pair: Pair) -> None:
    msg = _sealed(pair)
    full = replace(
        msg,
        shares=tuple(msg.shares[0] for _ in range(MAX_OFFICERS)),
        signatures=tuple((bytes([i]) * 16, bytes(64)) for i in range(MAX_OFFICERS)),
    )
    back = SealedMessage.decode(full.encode())
    assert len(back.shares) == len(back.signatures) == MAX_OFFICERS
    with pytest.raises(DecodeError, match="too many key shares"):
        SealedMessage.decode(replace(full, shares=(*full.shares, msg.shares[0])).encode())
    more = replace(full, signatures=(*full.signatures, (bytes([99]) * 16, bytes(64))))
    with pytest.raises(DecodeError, match="too many signatures"):
        SealedMessage.decode(more.encode())


def test_a_message_with_a_mac_and_signatures_or_a_short_mac_does_not_encode(pair: Pair) -> None:
    msg = _sealed(pair)
    with pytest.raises(DecodeError):
        replace(msg, mac=bytes(32)).encode()  # the author's signature is still on it
    with pytest.raises(DecodeError):
        replace(msg, signatures=(), mac=bytes(31)).encode()
    assert SealedMessage.decode(replace(msg, signatures=(), mac=bytes(32)).encode()).deniable


def test_an_officer_signing_again_replaces_his_signature(pair: Pair) -> None:
    msg = _sealed(pair)
    [(author, _)] = msg.signatures
    again = msg.with_signature(author, bytes(64)).with_signature(author, bytes([1]) * 64)
    assert again.signatures == ((author, bytes([1]) * 64),)
    assert again.digest == msg.digest
