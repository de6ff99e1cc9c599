"""Headquarters' recovery keys: kept offline, used when the mission cannot act.

A mission may name, at its founding (or by a later change its officers sign),
a recovery quorum: ``r`` of ``m`` keys that headquarters holds offline, each
in a passphrase-sealed file of its own. ``r`` of them may sign a roster
change in place of the mission's ``k`` officers (``protocol/roster.py``): a
2-of-2 mission that lost an officer, or one whose officers cannot meet.

A recovery key is an identity like an officer's (hybrid signing keys), without
an epoch key: it never reads anything, it only signs rosters. Its public half
travels as a *recovery card* (text, like an officer card) to the founder.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from pathlib import Path

from backchannel.client.cards import CardError, armor, unarmor
from backchannel.client.keystore import DEFAULT_PARAMS, KdfParams, Keystore, Passphrase
from backchannel.client.roster_change import RosterChange
from backchannel.errors import CorruptKeystore, RemoteProtocolError
from backchannel.protocol import roster as rs
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.identity import Officer, OfficerPublic

RECOVERY_PREFIX = "BACKCHANNEL-RECOVERY-KEY-1:"


def create(
    path: Path, name: str, passphrase: Passphrase | str, params: KdfParams = DEFAULT_PARAMS
) -> Officer:
    """Draw a recovery key and seal it into ``path`` (refuses to overwrite a file)."""
    key = Officer.generate(name, secrets.token_bytes)
    payload = json.dumps({"v": 1, "recovery_key": key.encode_secret().hex()}).encode()
    Keystore.create(path, passphrase, payload, params=params)
    return key


def unlock(path: Path, passphrase: Passphrase | str) -> Officer:
    raw = Keystore.open(path, passphrase)
    try:
        return Officer.decode_secret(bytes.fromhex(json.loads(raw)["recovery_key"]))
    except (ValueError, KeyError, TypeError, RemoteProtocolError):
        raise CorruptKeystore(
            f"{path} opened but holds no recovery key; is it an officer's keystore?"
        ) from None


def card(key: Officer | OfficerPublic) -> str:
    """The recovery card: the key's public half, for the mission's founder."""
    public = key.public if isinstance(key, Officer) else key
    return armor(RECOVERY_PREFIX, Writer().u8(1).var(public.encode()).bytes())


def read_card(text: str) -> OfficerPublic:
    raw = unarmor(RECOVERY_PREFIX, text, "a recovery card")
    try:
        r = Reader(raw)
        expect_version(r, 1, "recovery card")
        public = OfficerPublic.decode(r.var(8192))
        r.end()
    except RemoteProtocolError:
        raise CardError("the recovery card is damaged; ask headquarters for a fresh copy") from None
    return public


def sign(change: RosterChange, key: Officer) -> RosterChange:
    """Headquarters signs a roster change with one recovery key.

    Only the roster is signed: the relay credential's move and the channels'
    new keys are signed by the officers who stay (``roster_change.sign``),
    since only they receive the mission's new secret.
    """
    others = tuple(s for s in change.signatures if s[0] != key.officer_id)
    return replace(change, signatures=(*others, rs.sign_roster(change.new, key)))
