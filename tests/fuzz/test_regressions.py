"""Bugs the fuzzers found in the decoders, each kept as a test of the fix.

The crashing inputs themselves are kept in tests/fuzz/regressions/<target>/
and replayed by test_fuzz_short.py.
"""

from __future__ import annotations

import pytest

from backchannel.errors import DecodeError
from backchannel.protocol.channel import ChannelOffer
from backchannel.protocol.codec import Reader, Writer
from tests.fuzz.targets import TARGETS, _pair


def _swap_missions(raw: bytes) -> bytes:
    """The same offer with mission_a and mission_b swapped in its signed part."""
    outer = Reader(raw)
    signed = bytearray(outer.var())
    a, b = slice(1 + 32, 1 + 64), slice(1 + 64, 1 + 96)
    signed[a], signed[b] = signed[b], signed[a]
    return Writer().var(bytes(signed)).bytes() + outer.rest()


def _offer() -> ChannelOffer:
    from backchannel.protocol import channel as ch

    pair = _pair()
    kit = pair.a.mission
    offer, _ = ch.make_offer(kit.mission_id, pair.terms, 0, kit.certs(), pair.rng)
    return offer


def test_an_offer_with_unsorted_missions_is_a_decode_error() -> None:
    """Was LocalProtocolError (a refusal of our own action) for bytes from outside."""
    offer = _offer()
    assert ChannelOffer.decode(offer.encode()) == offer
    with pytest.raises(DecodeError, match="sorted order"):
        ChannelOffer.decode(_swap_missions(offer.encode()))


def test_an_offer_naming_one_mission_twice_is_a_decode_error() -> None:
    offer = _offer()
    raw = bytearray(offer.encode())
    # mission_b := mission_a inside the signed part (after the 4-byte length prefix)
    start = 4 + 1 + 32
    raw[start + 32 : start + 64] = raw[start : start + 32]
    with pytest.raises(DecodeError):
        ChannelOffer.decode(bytes(raw))


def test_the_offer_target_keeps_the_contract_on_the_crash_input() -> None:
    from pathlib import Path

    folder = Path(__file__).parent / "regressions" / "channel_offer"
    crashes = sorted(folder.iterdir())
    assert crashes
    for crash in crashes:
        with pytest.raises(DecodeError, match="sorted order"):
            ChannelOffer.decode(crash.read_bytes())
        TARGETS["channel_offer"].check(crash.read_bytes())
