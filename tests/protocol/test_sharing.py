"""The content key's k-of-n split: SLIP-0039's Shamir layout, randomness from the caller."""

from __future__ import annotations

import itertools
import json
import secrets
from pathlib import Path

import pytest
from shamir_mnemonic.shamir import RawShare, _recover_secret, _split_secret

from backchannel.crypto import sharing
from backchannel.errors import AuthenticationError, DecodeError, LocalProtocolError
from tests.conftest import DetRng

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "protocol_v1.json").read_text())
SHAPES = [(1, 3), (2, 3), (3, 5), (4, 7), (6, 7)]


@pytest.mark.parametrize(("k", "n"), SHAPES)
def test_every_k_subset_recovers_and_the_reference_agrees(k: int, n: int) -> None:
    secret = secrets.token_bytes(32)
    shares = sharing.split(secret, k, n, secrets.token_bytes)
    assert [s.index for s in shares] == list(range(1, n + 1))
    assert {s.scheme for s in shares} == {sharing.SCHEME_SHAMIR}
    for subset in itertools.combinations(shares, k):
        assert sharing.combine(list(subset), k, n) == secret
        # SatoshiLabs' reference recovers our split: officer i holds x = i - 1.
        assert _recover_secret(k, [RawShare(s.index - 1, s.data) for s in subset]) == secret


@pytest.mark.parametrize(("k", "n"), SHAPES)
def test_the_references_split_combines_here(k: int, n: int) -> None:
    secret = secrets.token_bytes(32)
    points = _split_secret(k, n, secret)
    shares = [sharing.Share(sharing.SCHEME_SHAMIR, p.x + 1, p.data) for p in points]
    for subset in itertools.combinations(shares, k):
        assert sharing.combine(list(subset), k, n) == secret


def test_the_split_takes_its_randomness_from_the_caller() -> None:
    secret = bytes(range(32))
    a = sharing.split(secret, 3, 5, DetRng(b"one"))
    assert a == sharing.split(secret, 3, 5, DetRng(b"one"))
    assert a != sharing.split(secret, 3, 5, DetRng(b"two"))
    # The first k - 2 points are the caller's random bytes themselves.
    assert a[0].data == DetRng(b"one")(32)


def test_recorded_split_is_reproduced_and_recovers() -> None:
    for v in VECTORS["shamir_gf256"].values():
        shares = [sharing.Share.decode(bytes.fromhex(s)) for s in v["shares"]]
        for subset in itertools.combinations(shares, v["k"]):
            assert sharing.combine(list(subset), v["k"], v["n"]).hex() == v["secret"]


def test_fewer_than_k_shares_are_refused() -> None:
    shares = sharing.split(secrets.token_bytes(32), 3, 5, secrets.token_bytes)
    with pytest.raises(sharing.NotEnoughShares):
        sharing.combine(shares[:2], 3, 5)
    with pytest.raises(sharing.NotEnoughShares):
        sharing.combine([shares[0], shares[0], shares[0]], 3, 5)


def test_shares_of_two_splits_do_not_combine_into_a_wrong_key() -> None:
    # A colleague who releases a share of another message (or a made-up one)
    # gets the opaque decryption error, not a wrong key.
    a = sharing.split(secrets.token_bytes(32), 2, 3, secrets.token_bytes)
    b = sharing.split(secrets.token_bytes(32), 2, 3, secrets.token_bytes)
    with pytest.raises(AuthenticationError, match=r"^decryption failed$"):
        sharing.combine([a[0], b[1]], 2, 3)
    forged = sharing.Share(
        sharing.SCHEME_SHAMIR, 2, bytes(a[1].data[:-1]) + bytes([a[1].data[-1] ^ 1])
    )
    with pytest.raises(AuthenticationError):
        sharing.combine([a[0], forged], 2, 3)


def test_schemes_are_not_mixed() -> None:
    new = sharing.split(secrets.token_bytes(32), 2, 3, secrets.token_bytes)
    old = [sharing.Share.decode(bytes.fromhex(s)) for s in VECTORS["shamir_2_of_3"]["shares"]]
    assert {s.scheme for s in old} == {sharing.SCHEME_SHAMIR_GF128}
    with pytest.raises(DecodeError, match="wrong scheme"):
        sharing.combine([old[0], new[1]], 2, 3)
    xor = sharing.split(secrets.token_bytes(32), 3, 3, secrets.token_bytes)
    with pytest.raises(DecodeError, match="wrong scheme"):
        sharing.combine([xor[0], xor[1]], 2, 3)
    with pytest.raises(DecodeError, match="wrong scheme"):
        sharing.combine(new, 3, 3)


def test_shapes_outside_the_scheme_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        sharing.split(bytes(32), 2, 17, secrets.token_bytes)
    with pytest.raises(LocalProtocolError):
        sharing.split(bytes(31), 2, 3, secrets.token_bytes)
    with pytest.raises(DecodeError):
        sharing.Share.decode(bytes([4, 1]) + bytes(32))


def test_the_largest_shapes_are_taken_and_one_more_is_refused() -> None:
    """The bounds themselves: n = 255 for k = n (XOR), MAX_SHARE_COUNT (16) for
    k < n (SLIP-0039); one share more is refused, and k = n = 17 is XOR's."""
    from shamir_mnemonic.constants import MAX_SHARE_COUNT

    rng = DetRng("bounds")
    secret = bytes(range(32))
    assert sharing.combine(sharing.split(secret, 255, 255, rng), 255, 255) == secret
    assert len(sharing.split(secret, 255, 255, rng)) == 255
    with pytest.raises(LocalProtocolError, match="n <= 255"):
        sharing.split(secret, 256, 256, rng)
    shares = sharing.split(secret, 2, MAX_SHARE_COUNT, rng)
    assert sharing.combine(shares[-2:], 2, MAX_SHARE_COUNT) == secret
    with pytest.raises(LocalProtocolError, match="at most"):
        sharing.split(secret, 2, MAX_SHARE_COUNT + 1, rng)
    assert sharing.combine(sharing.split(secret, 17, 17, rng), 17, 17) == secret
