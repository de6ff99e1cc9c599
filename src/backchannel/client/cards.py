"""Cards: what officers and missions hand each other, as short text files.

An *officer card* carries an officer's public keys and certified epoch key,
for the founder of a mission. A *mission card* carries the mission's roster
chain (verifiable from the mission id, which the peer pins), every officer's
certified epoch key, and where the mission receives (relay and tenant), signed
by one of its officers with a hybrid signature. A card that was altered in
transit fails to verify and is refused with one line.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace

from backchannel.crypto import labels
from backchannel.crypto.primitives import equal
from backchannel.crypto.signing import HYBRID_SIG_LEN
from backchannel.errors import (
    BackchannelError,
    DecodeError,
    ProtocolError,
    RemoteProtocolError,
    RosterError,
)
from backchannel.protocol import roster as rs
from backchannel.protocol.channel import CHANNEL_ID_LEN, ChannelOffer
from backchannel.protocol.codec import Reader, Writer, expect_version
from backchannel.protocol.identity import OFFICER_ID_LEN, EpochKeyCert, Officer, OfficerPublic

OFFICER_PREFIX = "BACKCHANNEL-OFFICER-1:"
MISSION_PREFIX = "BACKCHANNEL-MISSION-1:"
OFFER_PREFIX = "BACKCHANNEL-OFFER-1:"
SIG_CARD = labels.SIG_ROSTER + b"/card"
#: 2 added the relay's key fingerprint; 3 (written only when there are any)
#: the takeovers of channels by a new sending device (protocol-v1.md §7.8).
CARD_VERSION = 2
TAKEOVER_VERSION = 3
#: Channels a card carries takeovers for, at most.
MAX_TAKEOVERS = 255


class CardError(RemoteProtocolError):
    """A card is malformed or does not verify."""


def armor(prefix: str, raw: bytes) -> str:
    return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=") + "\n"


def unarmor(prefix: str, text: str, what: str) -> bytes:
    text = text.strip()
    if not text.startswith(prefix):
        raise CardError(f"this is not {what}; check you passed the right file")
    body = text[len(prefix) :]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise CardError(f"{what} is damaged; ask for a fresh copy") from None


@dataclass(frozen=True, slots=True)
class OfficerCard:
    officer: OfficerPublic
    cert: EpochKeyCert

    def encode(self) -> str:
        raw = Writer().u8(1).var(self.officer.encode()).var(self.cert.encode()).bytes()
        return armor(OFFICER_PREFIX, raw)

    @classmethod
    def decode(cls, text: str) -> OfficerCard:
        raw = unarmor(OFFICER_PREFIX, text, "an officer card")
        try:
            r = Reader(raw)
            expect_version(r, 1, "officer card")
            officer = OfficerPublic.decode(r.var(8192))
            cert = EpochKeyCert.decode(r.var(8192))
            r.end()
            cert.verify(officer)
        except RemoteProtocolError:
            raise CardError("the officer card does not verify; ask for a fresh copy") from None
        return cls(officer, cert)


@dataclass(frozen=True, slots=True)
class MissionCard:
    mission_id: bytes
    chain: tuple[rs.SignedRoster, ...]
    certs: tuple[EpochKeyCert, ...]
    relay_url: str
    tenant_id: str
    signer_id: bytes
    signature: bytes = b""
    #: SHA-256 of the relay's log key (Ed25519 || ML-DSA-65) as the signer's device
    #: pinned it; all zeros when that device had not met the relay yet.
    relay_key: bytes = bytes(32)
    #: The layout the card was signed in (1: before the relay key was added).
    version: int = CARD_VERSION
    #: (channel id, encoded re-key) of each channel a new sending device of the
    #: mission took over and the peer has not answered yet.
    takeovers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def roster(self) -> rs.Roster:
        return self.chain[-1].roster

    def signed_part(self) -> bytes:
        w = Writer().u8(self.version).fixed(self.mission_id, 32).u8(len(self.chain))
        for s in self.chain:
            w.var(s.encode())
        w.u8(len(self.certs))
        for c in self.certs:
            w.var(c.encode())
        w.text(self.relay_url).text(self.tenant_id)
        if self.version >= 2:
            w.fixed(self.relay_key, 32)
        if self.version >= TAKEOVER_VERSION:
            w.u8(len(self.takeovers))
            for channel_id, rekey in self.takeovers:
                w.fixed(channel_id, CHANNEL_ID_LEN).var(rekey)
        w.fixed(self.signer_id, OFFICER_ID_LEN)
        return w.bytes()

    def sign(self, officer: Officer) -> MissionCard:
        card = replace(self, version=TAKEOVER_VERSION if self.takeovers else CARD_VERSION)
        return replace(
            card, signature=officer.signing_key.sign_hybrid(SIG_CARD, card.signed_part())
        )

    def encode(self) -> str:
        return armor(MISSION_PREFIX, self.signed_part() + self.signature)

    @classmethod
    def decode(cls, text: str, pinned_mission_id: bytes | None = None) -> MissionCard:
        """Decode and verify; with ``pinned_mission_id`` the chain must start there."""
        raw = unarmor(MISSION_PREFIX, text, "a mission card")
        try:
            r = Reader(raw)
            version = r.u8()
            if version not in (1, CARD_VERSION, TAKEOVER_VERSION):
                raise DecodeError("unsupported mission card version")
            mid = r.fixed(32)
            chain = tuple(rs.SignedRoster.decode(r.var(1 << 20)) for _ in range(r.u8()))
            certs = tuple(EpochKeyCert.decode(r.var(8192)) for _ in range(r.u8()))
            relay_url, tenant_id = r.text(512), r.text(64)
            # Version 1 cards (kept from before) state no relay key.
            relay_key = r.fixed(32) if version >= CARD_VERSION else bytes(32)
            takeovers: tuple[tuple[bytes, bytes], ...] = ()
            if version >= TAKEOVER_VERSION:
                takeovers = tuple((r.fixed(CHANNEL_ID_LEN), r.var(1 << 20)) for _ in range(r.u8()))
            signer, sig = r.fixed(OFFICER_ID_LEN), r.fixed(HYBRID_SIG_LEN)
            r.end()
            card = cls(mid, chain, certs, relay_url, tenant_id, signer, sig, relay_key, version,
                       takeovers)  # fmt: skip
            card.verify(pinned_mission_id or mid)
        except RosterError as exc:
            raise CardError(f"the mission card does not verify: {exc}") from None
        except RemoteProtocolError:
            raise CardError(
                "the mission card does not verify (altered or damaged); ask for a fresh copy"
            ) from None
        return card

    def verify(self, pinned: bytes) -> None:
        if not equal(self.mission_id, pinned):
            raise RosterError("the card is for another mission than the one pinned")
        rosters = rs.verify_chain(pinned, self.chain)
        current = rosters[-1]
        current.officer(self.signer_id).verify_key.verify_hybrid(
            self.signature, SIG_CARD, self.signed_part()
        )
        by_id = {c.officer_id: c for c in self.certs}
        for o in current.officers:
            cert = by_id.get(o.officer_id)
            if cert is None:
                raise DecodeError("an officer's epoch key is missing from the card")
            cert.verify(o)


def encode_text(prefix: str, raw: bytes) -> str:
    """Armor bytes as one line of text: ``prefix`` then unpadded URL-safe base64."""
    return armor(prefix, raw)


def decode_text(prefix: str, text: str, what: str) -> bytes:
    """The bytes inside :func:`encode_text`'s armor; a wrong or damaged text raises CardError."""
    return unarmor(prefix, text, what)


def encode_offer(offer: ChannelOffer) -> str:
    """A channel offer as a text file's content, to carry between the officers."""
    return encode_text(OFFER_PREFIX, offer.encode())


def decode_offer(text: str) -> ChannelOffer:
    """Decode a channel offer file (its signatures are checked on acceptance)."""
    raw = decode_text(OFFER_PREFIX, text, "a channel offer")
    try:
        return ChannelOffer.decode(raw)
    except ProtocolError:
        raise CardError("the channel offer is damaged; ask for a fresh copy") from None


def load_card_file(text: str) -> OfficerCard | MissionCard:
    if text.strip().startswith(OFFICER_PREFIX):
        return OfficerCard.decode(text)
    return MissionCard.decode(text)


__all__ = [
    "BackchannelError",
    "CardError",
    "MissionCard",
    "OfficerCard",
    "decode_offer",
    "decode_text",
    "encode_offer",
    "encode_text",
]
