"""The intake's formats: cards, sealed requests, reply codes, answers and the
proof of work, each refused when forged, tampered with or mis-sized."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backchannel.crypto.kem import KemPrivateKey
from backchannel.errors import AuthenticationError, DecodeError
from backchannel.protocol import intake as pi

SECRET, MISSION = bytes(range(32)), bytes(32)
KEY = pi.intake_private_key(SECRET, MISSION)
CARD = pi.IntakeCard("Mission", MISSION, "https://relay.example", "mission-a", KEY.public_key, 16)


def request(text: str = "ten minutes?", code: bytes | None = None) -> pi.IntakeRequest:
    return pi.IntakeRequest(
        pi.Kind.INTERVIEW, "Interview", text, "", code or pi.new_reply_code(secrets.token_bytes)
    )


def test_the_card_survives_text_and_the_page_address() -> None:
    assert pi.IntakeCard.from_text(CARD.to_text()) == CARD
    assert pi.IntakeCard.from_text(CARD.page_url()) == CARD
    assert CARD.page_url().startswith("https://relay.example/intake/#BACKCHANNEL-INTAKE-1:")
    other = pi.IntakeCard("Mission", MISSION, "https://relay.example", "mission-b",
                          KEY.public_key, 16)  # fmt: skip
    assert other.fingerprint() != CARD.fingerprint() and len(CARD.fingerprint()) == 39


@pytest.mark.parametrize(
    "text",
    ["", "BACKCHANNEL-INTAKE-1:", "BACKCHANNEL-INTAKE-1:!!!!", "MISSION-CARD-1:abc",
     CARD.to_text()[:-10], CARD.to_text() + "AAAA"],
)  # fmt: skip
def test_a_damaged_card_is_refused(text: str) -> None:
    with pytest.raises(DecodeError):
        pi.IntakeCard.from_text(text)


def test_the_intake_key_is_the_mission_secrets_and_changes_with_it() -> None:
    assert pi.intake_private_key(SECRET, MISSION).public_key == KEY.public_key
    assert pi.intake_private_key(secrets.token_bytes(32), MISSION).public_key != KEY.public_key
    seed = pi.intake_seed(SECRET, MISSION)
    assert KemPrivateKey.from_xwing_seed(seed).public_key == KEY.public_key


def test_a_sealed_request_has_one_size_and_opens_only_for_the_mission() -> None:
    short = pi.seal_request(CARD, request("hi"))
    long = pi.seal_request(CARD, request("x" * (pi.MAX_REQUEST_TEXT - 9 - 2)))
    assert len(short) == len(long) == pi.REQUEST_CELL_SIZE
    assert pi.open_request(KEY, CARD, short).body == "hi"
    stranger = pi.intake_private_key(secrets.token_bytes(32), MISSION)
    with pytest.raises(AuthenticationError):
        pi.open_request(stranger, CARD, short)
    # Sealed to this key for another mission: the context differs, nothing opens.
    elsewhere = pi.IntakeCard("M", bytes([1]) * 32, "https://r", "m-x", KEY.public_key, 0)
    with pytest.raises(AuthenticationError):
        pi.open_request(KEY, CARD, pi.seal_request(elsewhere, request()))


def test_a_tampered_request_is_refused() -> None:
    cell = bytearray(pi.seal_request(CARD, request()))
    for at in (0, 1119, 1120, 2000, len(cell) - 1):
        bad = bytearray(cell)
        bad[at] ^= 1
        with pytest.raises(AuthenticationError):
            pi.open_request(KEY, CARD, bytes(bad))
    with pytest.raises(DecodeError):
        pi.open_request(KEY, CARD, bytes(cell[:-1]))


def test_a_request_too_long_is_refused_before_sealing() -> None:
    with pytest.raises(DecodeError, match="too long"):
        pi.seal_request(CARD, request("x" * (pi.MAX_REQUEST_TEXT + 1)))
    with pytest.raises(DecodeError, match="subject"):
        pi.IntakeRequest(pi.Kind.OTHER, "s" * 201, "", "", bytes(16)).encode()


def test_a_plaintext_with_junk_padding_or_kind_is_refused() -> None:
    raw = bytearray(request().encode())
    raw[-1] = 1
    with pytest.raises(DecodeError, match="padding"):
        pi.IntakeRequest.decode(bytes(raw))
    raw = bytearray(request().encode())
    raw[1] = 9
    with pytest.raises(DecodeError, match="kind"):
        pi.IntakeRequest.decode(bytes(raw))


@given(st.binary(min_size=16, max_size=16))
def test_reply_codes_round_trip(code: bytes) -> None:
    text = pi.format_reply_code(code)
    assert len(text) == 26 + 5 and pi.parse_reply_code(text) == code
    assert pi.parse_reply_code(text.lower().replace("-", " ")) == code


@pytest.mark.parametrize("text", ["", "ABCDE", "A" * 27, "ABCDE-FGHIJ-KLMNO-PQRST-UVWX1"])
def test_a_wrong_reply_code_is_refused_in_words(text: str) -> None:
    with pytest.raises(DecodeError, match="reply code"):
        pi.parse_reply_code(text)


def test_only_the_reply_code_opens_the_answer() -> None:
    code = pi.new_reply_code(secrets.token_bytes)
    cell = pi.seal_answer(CARD, code, "Agreed.", secrets.token_bytes)
    assert len(cell) == pi.ANSWER_CELL_SIZE == pi.REQUEST_CELL_SIZE
    assert pi.open_answer(CARD, code, cell) == "Agreed."
    with pytest.raises(AuthenticationError):
        pi.open_answer(CARD, pi.new_reply_code(secrets.token_bytes), cell)
    bad = bytearray(cell)
    bad[100] ^= 1
    with pytest.raises(AuthenticationError):
        pi.open_answer(CARD, code, bytes(bad))
    assert pi.reply_id(CARD, code) != pi.reply_id(CARD, pi.new_reply_code(secrets.token_bytes))
    with pytest.raises(DecodeError):
        pi.seal_answer(CARD, code, "x" * (pi.MAX_ANSWER_TEXT + 1), secrets.token_bytes)


def test_the_proof_of_work_binds_tenant_bucket_and_cell() -> None:
    cell = bytes(range(256)) * 16  # fixed inputs: the outcome below is the same every run
    prefix = pi.pow_prefix("mission-a", 100, cell)
    nonce = pi.solve_pow(prefix, 12)
    assert pi.pow_ok(prefix, nonce, 12)
    # Fewer bits hold too; the same nonce for another tenant, bucket or cell does not.
    assert pi.pow_ok(prefix, nonce, 0)
    others = [
        pi.pow_prefix("mission-b", 100, cell),
        pi.pow_prefix("mission-a", 101, cell),
        pi.pow_prefix("mission-a", 100, bytes(4096)),
    ]
    assert sum(pi.pow_ok(p, nonce, 12) for p in others) == 0
    assert not pi.pow_ok(prefix, -1, 0) and not pi.pow_ok(prefix, 1 << 64, 0)
