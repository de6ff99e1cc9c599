"""A receipt signs exactly ``channel_id || direction || seq u64 || head`` and only an
officer on the peer's roster can give one."""

from __future__ import annotations

import hashlib

import pytest

from backchannel.crypto import labels
from backchannel.errors import SignatureError
from backchannel.protocol.cells import Receipt
from tests.conftest import DetRng, make_pair

PAIR = make_pair(DetRng("receipts"))
CHANNEL, HEAD = bytes(range(32)), hashlib.sha256(b"head").digest()


def test_the_signed_statement_is_the_documented_concatenation() -> None:
    officer = PAIR.b.mission.officers[0].officer
    r = Receipt.make(CHANNEL, 1, 300, HEAD, officer)
    data = CHANNEL + bytes([1]) + (300).to_bytes(8, "big") + HEAD
    officer.public.verify_key.verify_ed25519(r.signature, labels.SIG_RECEIPT, data)
    r.verify(CHANNEL, 1, PAIR.b.mission.roster)
    with pytest.raises(SignatureError):
        r.verify(CHANNEL, 0, PAIR.b.mission.roster)


def test_a_receipt_from_off_the_roster_is_refused() -> None:
    r = Receipt.make(CHANNEL, 1, 3, HEAD, PAIR.a.mission.officers[0].officer)
    with pytest.raises(
        SignatureError, match=r"^receipt signed by an officer not on the peer's roster$"
    ):
        r.verify(CHANNEL, 1, PAIR.b.mission.roster)
