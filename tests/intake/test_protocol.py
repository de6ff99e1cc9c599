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


def test_an_answer_is_kept_at_the_hash_of_its_name() -> None:
    # The relay reads answer_slot(name) for whoever names it: the slot is
    # neither the name nor anything a name can be chosen to hit.
    name = pi.reply_id(CARD, pi.new_reply_code(secrets.token_bytes))
    slot = pi.answer_slot(name)
    assert len(slot) == pi.REPLY_ID_LEN and slot != name
    assert slot == pi.answer_slot(name)
    assert slot != pi.answer_slot(pi.reply_id(CARD, pi.new_reply_code(secrets.token_bytes)))
    for wrong in (name[:-1], name + b"\x00"):
        with pytest.raises(DecodeError):
            pi.answer_slot(wrong)


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


# -- each rule alone, and the formats as intake-v1.md writes them --------------------------


def _leading_zero_bits(digest: bytes) -> int:
    """Counted the slow way, bit by bit: the specification's 'begins with n zero bits'."""
    bits = "".join(f"{b:08b}" for b in digest)
    return len(bits) - len(bits.lstrip("0"))


@pytest.mark.parametrize(
    "digest",
    [b"\x80" + bytes(31), b"\x01" + bytes(31), b"\x00\x01" + bytes(30), b"\x00\x00\x10" + bytes(29),
     b"\x00\xff" + bytes(30), bytes(32)],
)  # fmt: skip
def test_zero_bits_are_counted_exactly(digest: bytes) -> None:
    assert pi._zero_bits(digest) == _leading_zero_bits(digest)


def test_the_proof_of_work_is_the_one_the_specification_writes() -> None:
    import hashlib

    cell = bytes(range(256)) * 16
    prefix = pi.pow_prefix("mission-a", 100, cell)
    assert prefix == (
        b"backchannel/v1/intake/pow" + bytes([9]) + b"mission-a" + (100).to_bytes(8, "big")
        + hashlib.sha256(cell).digest()
    )  # fmt: skip
    nonce = pi.solve_pow(prefix, 10)
    digest = hashlib.sha256(prefix + nonce.to_bytes(8, "big")).digest()
    held = _leading_zero_bits(digest)
    assert held >= 10
    # Exactly as many bits as it holds pass, one more does not; and no smaller nonce held.
    assert pi.pow_ok(prefix, nonce, held) and not pi.pow_ok(prefix, nonce, held + 1)
    for smaller in range(nonce):
        zero = _leading_zero_bits(hashlib.sha256(prefix + smaller.to_bytes(8, "big")).digest())
        assert zero < 10
    # Nonce 0 is a nonce like any other, and the first one tried.
    first = _leading_zero_bits(hashlib.sha256(prefix + bytes(8)).digest())
    assert pi.pow_ok(prefix, 0, first) and pi.solve_pow(prefix, first) == 0


def test_the_reply_id_and_the_intake_key_are_as_written() -> None:
    code = bytes(range(16))
    assert len(pi.reply_id(CARD, code)) == pi.REPLY_ID_LEN
    # Each generation of the mission secret's intake key is another key.
    assert pi.intake_private_key(SECRET, MISSION, 1).public_key != KEY.public_key
    assert pi.intake_seed(SECRET, MISSION, 1) != pi.intake_seed(SECRET, MISSION, 0)


@pytest.mark.parametrize(
    "text", ["ABCDE-FGHIJ-KLMNO-PQRST-UVWXY", "ABCDE-FGHIJ-KLMNO-PQRST-UVWXYZ2"]
)
def test_a_reply_code_of_the_wrong_length_is_refused_even_in_good_letters(text: str) -> None:
    with pytest.raises(DecodeError, match="26 letters"):
        pi.parse_reply_code(text)


def test_texts_exactly_at_their_limit_are_taken() -> None:
    full = pi.IntakeRequest(pi.Kind.MEDIA_TOUR, "s" * pi.MAX_SUBJECT, "b", "c" * pi.MAX_CONTACT,
                            bytes(16))  # fmt: skip
    assert pi.IntakeRequest.decode(full.encode()) == full
    assert pi.check_answer_text("a" * pi.MAX_ANSWER_TEXT) == "a" * pi.MAX_ANSWER_TEXT
    # The three texts together are bounded too, however they are shared out.
    body = "b" * (pi.MAX_REQUEST_TEXT - pi.MAX_SUBJECT)
    with pytest.raises(DecodeError):
        pi.IntakeRequest(pi.Kind.MEDIA_TOUR, "s" * pi.MAX_SUBJECT, body, "c", bytes(16)).encode()


def test_card_fields_at_and_past_their_bounds() -> None:
    from dataclasses import replace

    edge = replace(CARD, pow_bits=pi.MAX_POW_BITS)
    assert pi.IntakeCard.decode(edge.encode()) == edge
    with pytest.raises(DecodeError):
        replace(CARD, pow_bits=pi.MAX_POW_BITS + 1)
    for name, limit in (("mission_name", 200), ("relay_url", 2000), ("tenant_id", 200)):
        value = "https://" + "r" * (limit - 8) if name == "relay_url" else "m" * limit
        at = replace(CARD, **{name: value})
        assert pi.IntakeCard.decode(at.encode()) == at
        past = replace(CARD, **{name: value + "x"})
        with pytest.raises(DecodeError, match="too long"):
            pi.IntakeCard.decode(past.encode())


def test_the_fingerprint_and_the_page_address_are_as_written() -> None:
    import hashlib

    digest = hashlib.sha256(b"backchannel/v1/intake/card" + CARD.encode()).digest()[:16]
    expected = " ".join(digest.hex().upper()[i : i + 4] for i in range(0, 32, 4))
    assert CARD.fingerprint() == expected
    from dataclasses import replace

    slashed = replace(CARD, relay_url="https://relay.example/")
    assert slashed.page_url().startswith("https://relay.example/intake/#")
    # The card's text carries no base64 padding, and an address with a second '#'
    # in what follows the first is not a card.
    assert not CARD.to_text().endswith("=")
    assert pi.IntakeCard.from_text("https://x/intake/#" + CARD.to_text()) == CARD
    with pytest.raises(DecodeError):
        pi.IntakeCard.from_text("https://x/intake/#" + CARD.to_text() + "#more")
    with pytest.raises(DecodeError):
        pi.IntakeCard.from_text("https://x/#a#" + CARD.to_text())


def test_a_card_of_any_length_round_trips_without_padding_and_over_plain_http() -> None:
    from dataclasses import replace

    for n in range(1, 4):  # encodings of every length modulo 3
        card = replace(CARD, mission_name="M" * n, relay_url="http://127.0.0.1:8080")
        text = card.to_text()
        assert "=" not in text
        assert pi.IntakeCard.from_text(text) == card
        assert pi.IntakeCard.from_text(card.page_url()) == card


def test_request_texts_may_fill_the_cell_exactly() -> None:
    rest = pi.MAX_REQUEST_TEXT - pi.MAX_SUBJECT - pi.MAX_CONTACT
    full = pi.IntakeRequest(pi.Kind.OTHER, "s" * pi.MAX_SUBJECT, "b" * rest, "c" * pi.MAX_CONTACT,
                            bytes(16))  # fmt: skip
    assert pi.IntakeRequest.decode(full.encode()) == full
    assert len(pi.seal_request(CARD, full)) == pi.REQUEST_CELL_SIZE
