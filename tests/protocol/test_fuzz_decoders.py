"""Fuzzing every decoder: garbage only ever raises the documented remote error,
and no error message carries key material or plaintext."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.crypto.sharing import Share
from backchannel.errors import RemoteProtocolError
from backchannel.protocol import cells
from backchannel.protocol.channel import ChannelOffer, make_offer
from backchannel.protocol.identity import EpochKeyCert, OfficerPublic
from backchannel.protocol.message import Header, SealedMessage
from backchannel.protocol.payload import Payload, note
from backchannel.protocol.roster import SignedRoster
from backchannel.protocol.sealing import Announcement
from tests.conftest import DetRng, make_pair

_PAIR = make_pair(DetRng("fuzz"))
_out = _PAIR.cosign(_PAIR.a, _PAIR.compose(_PAIR.a, 0, note("sample plaintext XYZZY")), 1)
assert _out.message is not None
SAMPLE_MESSAGE = _out.message.encode()
SAMPLE_ROSTER = _PAIR.a.mission.chain[0].encode()
SAMPLE_CERT = _PAIR.a.mission.officers[0].cert.encode()
SAMPLE_OFFICER = _PAIR.a.mission.officers[0].officer.public.encode()
# A real offer: with an empty sample the mutations never got past the first length field.
SAMPLE_OFFER = make_offer(
    _PAIR.a.mission.mission_id, _PAIR.terms, 0, _PAIR.a.mission.certs(), _PAIR.rng
)[0].encode()

DECODERS: dict[str, tuple[Callable[[bytes], object], bytes]] = {
    "header": (Header.decode, _out.message.header.encode()),
    "message": (SealedMessage.decode, SAMPLE_MESSAGE),
    "announcement": (Announcement.decode, _out.message.announcement),
    "roster": (SignedRoster.decode, SAMPLE_ROSTER),
    "epoch cert": (EpochKeyCert.decode, SAMPLE_CERT),
    "officer": (OfficerPublic.decode, SAMPLE_OFFICER),
    "payload": (Payload.decode, note("hello").encode()),
    "share": (Share.decode, bytes([1, 1]) + bytes(32)),
    "cell content": (cells.CellContent.decode, cells.CellContent().encode(4096)),
    "channel offer": (ChannelOffer.decode, SAMPLE_OFFER),
}


def _mutations(sample: bytes) -> st.SearchStrategy[bytes]:
    garbage = st.binary(max_size=6000)
    if not sample:
        return garbage

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        b = bytearray(sample)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "cut", "insert"]))
            pos = draw(st.integers(0, max(len(b) - 1, 0)))
            if op == "flip" and b:
                b[pos] ^= draw(st.integers(1, 255))
            elif op == "cut":
                del b[pos:]
            else:
                b[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        return bytes(b)

    return st.one_of(garbage, mutated())


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_raises_only_remote_errors(name: str) -> None:
    decode, sample = DECODERS[name]
    secrets = [b"XYZZY", b"sample plaintext"]

    @settings(max_examples=150, deadline=None)
    @given(raw=_mutations(sample))
    def run(raw: bytes) -> None:
        try:
            decode(raw)
        except RemoteProtocolError as exc:
            text = str(exc).encode()
            assert not any(s in text for s in secrets)
            assert raw[:16].hex() not in str(exc) or len(raw) < 8

    run()


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(min_size=4096, max_size=4096))
def test_random_cells_are_refused_with_the_opaque_error(raw: bytes) -> None:
    from backchannel.errors import AuthenticationError

    ep = _PAIR.b.endpoint
    r = ep.next_recv_round
    with pytest.raises(AuthenticationError) as info:
        ep.receive(r, raw)
    assert str(info.value) == "decryption failed"
