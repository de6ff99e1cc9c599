"""The tenant credential and its rotation, at their exact bounds and against their
specification (docs/spec/relay-api.md, "Credential rotation")."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backchannel.client.harness import MissionKit
from backchannel.crypto import labels
from backchannel.errors import DecodeError, RosterError
from backchannel.protocol import tenant_credential as tc
from backchannel.protocol.constants import MAX_OFFICERS
from tests.conftest import DetRng


def test_the_tenant_id_is_the_first_twelve_bytes_of_the_mission_id() -> None:
    assert tc.tenant_id_for(bytes(range(32))) == "m-000102030405060708090a0b"


def test_the_credential_is_hkdf_of_the_secret_under_its_label() -> None:
    secret = bytes(range(32))
    want = HKDF(hashes.SHA256(), 32, None, labels.TENANT_CREDENTIAL).derive(secret)
    got = tc.credential_for(secret)
    assert len(got) == 43 and "=" not in got
    assert base64.urlsafe_b64decode(got + "=") == want
    assert tc.credential_hash(got) == hashlib.sha256(want).digest()
    assert tc.credential_hash(got + "=") == hashlib.sha256(want).digest()


def test_a_credential_of_another_length_has_no_hash() -> None:
    short = base64.urlsafe_b64encode(bytes(31)).decode().rstrip("=")
    with pytest.raises(DecodeError):
        tc.credential_hash(short)


def test_the_statement_takes_every_32_bit_seq_and_nothing_past_it(rng: DetRng) -> None:
    roster = MissionKit.create("x", ["a", "b"], 2, rng).roster
    h = bytes(32)
    assert tc.statement("m-x", roster, (1 << 32) - 1, h).endswith(b"\xff" * 4 + h)
    for seq in (1 << 32, -1):
        with pytest.raises(DecodeError):
            tc.statement("m-x", roster, seq, h)
    with pytest.raises(DecodeError):
        tc.statement("m-x", roster, 0, bytes(31))


def _rotation(rng: DetRng) -> dict[str, Any]:
    mk = MissionKit.create("x", ["a", "b"], 2, rng)
    tenant = tc.tenant_id_for(mk.mission_id)
    sigs = tuple(tc.sign(o.officer, tenant, mk.roster, 0, bytes(32)) for o in mk.officers)
    return tc.Rotation(tuple(mk.chain), 0, bytes(32), sigs).to_json()


@pytest.mark.parametrize(("given", "taken"), [(960.0, 960), (0.0, 0), ((1 << 32) - 1, 2**32 - 1)])
def test_a_seq_written_as_a_whole_float_is_that_integer(
    rng: DetRng, given: float, taken: int
) -> None:
    body = {**_rotation(rng), "seq": given}
    seq = tc.Rotation.from_json(body).seq
    assert seq == taken and type(seq) is int


@pytest.mark.parametrize("seq", [1 << 32, float(1 << 32), -1, -1.0, 0.5, True, "0"])
def test_a_seq_outside_32_bits_or_not_an_integer_is_malformed(rng: DetRng, seq: object) -> None:
    with pytest.raises(DecodeError, match="seq"):
        tc.Rotation.from_json({**_rotation(rng), "seq": seq})


def test_the_chain_and_the_signatures_at_their_largest_are_well_formed(rng: DetRng) -> None:
    body = _rotation(rng)
    long_chain = body["chain"] * tc.MAX_CHAIN
    # Well formed at the bound (the rosters repeat, which verify() refuses) ...
    tc.Rotation.from_json({**body, "chain": long_chain[: tc.MAX_CHAIN]})
    with pytest.raises(DecodeError, match="chain"):
        tc.Rotation.from_json({**body, "chain": [*long_chain[: tc.MAX_CHAIN], body["chain"][0]]})
    sigs = (body["signatures"] * MAX_OFFICERS)[:MAX_OFFICERS]
    assert len(tc.Rotation.from_json({**body, "signatures": sigs}).signatures) == MAX_OFFICERS
    with pytest.raises(DecodeError, match="signatures"):
        tc.Rotation.from_json({**body, "signatures": [*sigs, sigs[0]]})


def test_base64_with_characters_outside_its_alphabet_is_malformed(rng: DetRng) -> None:
    body = _rotation(rng)
    chain = body["chain"][0]
    # A lax decoder would skip the '!' and read the roster; this one refuses.
    with pytest.raises(DecodeError):
        tc.Rotation.from_json({**body, "chain": ["!" + chain[:-4] + "!" + chain[-4:]]})
    oid, sig = body["signatures"][0]
    with pytest.raises(DecodeError):
        tc.Rotation.from_json({**body, "signatures": [[oid, sig[:8] + "!" + sig[8:]]]})


def test_a_chain_that_is_base64_of_no_roster_is_a_roster_error(rng: DetRng) -> None:
    body = _rotation(rng)
    with pytest.raises(RosterError):
        tc.Rotation.from_json({**body, "chain": [base64.b64encode(b"no roster").decode()]})
