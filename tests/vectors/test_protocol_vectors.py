"""Known-answer tests against the frozen vectors of protocol version 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backchannel.crypto import sharing
from backchannel.errors import AuthenticationError
from backchannel.protocol.identity import EpochKey
from tests.vectors import generate

VECTORS = json.loads(Path(__file__).with_name("protocol_v1.json").read_text())


@pytest.mark.parametrize("section", sorted(generate.DETERMINISTIC))
def test_deterministic_section_matches(section: str) -> None:
    assert generate.DETERMINISTIC[section]() == VECTORS[section]


def test_shamir_shares_recorded_once_still_combine() -> None:
    v = VECTORS["shamir_2_of_3"]
    shares = [sharing.Share.decode(bytes.fromhex(s)) for s in v["shares"]]
    for pair in ((0, 1), (1, 2), (0, 2)):
        got = sharing.combine([shares[i] for i in pair], v["k"], v["n"])
        assert got.hex() == v["secret"]


def test_kem_box_recorded_once_still_opens() -> None:
    v = VECTORS["kem_open"]
    ek = EpochKey.from_parts(1, bytes.fromhex(v["mlkem_seed"]), bytes.fromhex(v["x25519_private"]))
    sealed = bytes.fromhex(v["sealed"])
    info = bytes.fromhex(v["info"])
    assert ek.private_key.open(sealed, info).hex() == v["plaintext"]
    with pytest.raises(AuthenticationError):
        ek.private_key.open(sealed, info + b"x")
    with pytest.raises(AuthenticationError):
        ek.private_key.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), info)
