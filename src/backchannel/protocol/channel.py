"""Channels between two missions: pairing, the channel secret, safety numbers,
and the per-round slot chain.

Pairing is contributory. Each mission publishes a :class:`ChannelOffer`, signed
by ``k`` of its officers (hybrid signatures), that carries a fresh 32-byte
contribution sealed with HPKE to every officer of *both* missions. The channel
secret is ``HKDF(c_low || c_high, salt=pairing transcript)``, where the
transcript binds both mission ids, both roster hashes and the channel
parameters. Any one officer may learn the channel secret: it protects metadata
(slot addresses, the outer cell layer), not content, which stays split
``k``-of-``n`` by :mod:`.sealing`.

The slot chain gives each round ``r`` its slot addresses and cell keys, one per
direction. ``ck[r+1] = HMAC(ck[r], 0x01)`` ratchets forward and the old key is
dropped, so a device seized later cannot recompute past slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from backchannel.crypto import labels
from backchannel.crypto.kem import KemPrivateKey
from backchannel.crypto.primitives import HASH_LEN, KEY_LEN, equal, hkdf, hmac_sha256, sha256
from backchannel.errors import DecodeError, LocalProtocolError, RosterError, SignatureError
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.constants import CELL_SIZE, MAX_OFFICERS, ROUND_SECONDS, SLOT_LEN
from backchannel.protocol.identity import OFFICER_ID_LEN, EpochKeyCert, Officer, Rng
from backchannel.protocol.roster import Roster, read_signatures, signers, write_signatures

_OFFER_VERSION = 1
#: Offers of channels that allow deniable messages carry the policy in a byte
#: (1: deniable, 2: either); offers for the record keep version 1's layout, so
#: their bytes (and channel ids) are as before.
_OFFER_VERSION_FLAGS = 2
CHANNEL_ID_LEN = 16
MIN_CELL_SIZE = 1024
MAX_CELL_SIZE = 65536


def direction_of(sender_mission: bytes, receiver_mission: bytes) -> int:
    """0 for traffic from the mission whose id sorts first, 1 for the other."""
    if sender_mission == receiver_mission:
        raise LocalProtocolError("a mission cannot open a channel to itself")
    return 0 if sender_mission < receiver_mission else 1


class Policy(IntEnum):
    """How a channel's messages are authenticated (``docs/spec/deniable-v1.md``)."""

    #: Every message carries k officers' signatures.
    RECORD = 0
    #: Every message and receipt carries a MAC both sides could compute.
    DENIABLE = 1
    #: The author chooses, message by message; receipts are signed.
    EITHER = 2

    @property
    def label(self) -> str:
        """The word for it in files, forms and the command line."""
        return self.name.lower()

    @property
    def phrase(self) -> str:
        """What it means, in a few words, for an officer."""
        return _PHRASES[self]


_PHRASES = {
    Policy.RECORD: "for the record",
    Policy.DENIABLE: "deniable",
    Policy.EITHER: "either, message by message",
}


@dataclass(frozen=True, slots=True)
class ChannelTerms:
    """What both missions must agree on before a channel exists."""

    mission_a: bytes  # sorts first
    mission_b: bytes
    roster_hash_a: bytes
    roster_hash_b: bytes
    cell_size: int = CELL_SIZE
    round_seconds: int = ROUND_SECONDS
    #: How messages are authenticated (:class:`Policy`). Part of the pairing transcript.
    policy: Policy = Policy.RECORD

    def __post_init__(self) -> None:
        if not self.mission_a < self.mission_b:
            raise LocalProtocolError("channel terms must list the missions in sorted order")
        if not MIN_CELL_SIZE <= self.cell_size <= MAX_CELL_SIZE:
            raise DecodeError("cell size out of range")
        if not 1 <= self.round_seconds <= 86400:
            raise DecodeError("round length out of range")
        if self.policy not in set(Policy):
            raise DecodeError("unknown channel policy")

    @property
    def deniable(self) -> bool:
        """Deniable only: every message and receipt carries a MAC."""
        return self.policy is Policy.DENIABLE

    @property
    def allows_deniable(self) -> bool:
        return self.policy in (Policy.DENIABLE, Policy.EITHER)

    def refusal(self, deniable: bool) -> str | None:
        """Why the channel takes no message sent so (deniable or for the record);
        ``None`` when it takes it."""
        if deniable and self.policy is Policy.RECORD:
            return "this channel is for the record: no deniable messages"
        if not deniable and self.policy is Policy.DENIABLE:
            return "this channel takes deniable messages only"
        return None

    @classmethod
    def between(
        cls,
        roster_x: Roster,
        id_x: bytes,
        roster_y: Roster,
        id_y: bytes,
        *,
        cell_size: int = CELL_SIZE,
        round_seconds: int = ROUND_SECONDS,
        policy: Policy = Policy.RECORD,
    ) -> ChannelTerms:
        (ia, ra), (ib, rb) = sorted([(id_x, roster_x), (id_y, roster_y)], key=lambda t: t[0])
        return cls(ia, ib, ra.hash, rb.hash, cell_size, round_seconds, policy)

    def transcript(self) -> bytes:
        return sha256(
            labels.PAIRING_TRANSCRIPT,
            self.mission_a,
            self.mission_b,
            self.roster_hash_a,
            self.roster_hash_b,
            self.cell_size.to_bytes(4, "big"),
            self.round_seconds.to_bytes(4, "big"),
            bytes([self.policy]) if self.policy is not Policy.RECORD else b"",
        )

    @property
    def channel_id(self) -> bytes:
        return sha256(labels.CHANNEL_ID, self.transcript())[:CHANNEL_ID_LEN]


def safety_number(mission_x: bytes, mission_y: bytes) -> str:
    """A 60-digit number both missions compute alike, to compare out of band."""
    lo, hi = sorted([mission_x, mission_y])
    raw = hkdf(lo + hi, salt=None, info=labels.SAFETY_NUMBER, length=60)
    groups = [int.from_bytes(raw[i : i + 5], "big") % 100000 for i in range(0, 60, 5)]
    return " ".join(f"{g:05d}" for g in groups)


def mission_fingerprint(mission: bytes) -> str:
    """A 30-digit fingerprint of one mission id, for mission cards."""
    raw = hkdf(mission, salt=None, info=labels.SAFETY_NUMBER, length=30)
    return " ".join(
        f"{int.from_bytes(raw[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
    )


@dataclass(frozen=True, slots=True)
class ChannelOffer:
    """One mission's half of pairing, signed by ``k`` of its officers."""

    from_mission: bytes
    terms: ChannelTerms
    start_round: int
    sealed: tuple[tuple[bytes, bytes], ...]  # (officer_id, HPKE box of the contribution)
    signatures: tuple[tuple[bytes, bytes], ...] = ()

    def signed_part(self) -> bytes:
        t = self.terms
        version = _OFFER_VERSION if t.policy is Policy.RECORD else _OFFER_VERSION_FLAGS
        w = Writer().u8(version).fixed(self.from_mission, HASH_LEN)
        w.fixed(t.mission_a, HASH_LEN).fixed(t.mission_b, HASH_LEN)
        w.fixed(t.roster_hash_a, HASH_LEN).fixed(t.roster_hash_b, HASH_LEN)
        w.u32(t.cell_size).u32(t.round_seconds).u64(self.start_round)
        if t.policy is not Policy.RECORD:
            w.u8(t.policy)
        w.u8(len(self.sealed))
        for oid, box in self.sealed:
            w.fixed(oid, OFFICER_ID_LEN).var(box)
        return w.bytes()

    def encode(self) -> bytes:
        return write_signatures(Writer().var(self.signed_part()), self.signatures).bytes()

    @classmethod
    def decode(cls, raw: bytes) -> ChannelOffer:
        outer = Reader(raw)
        r = Reader(outer.var())
        version = r.u8()
        if version not in (_OFFER_VERSION, _OFFER_VERSION_FLAGS):
            raise DecodeError(f"unsupported channel offer version {version}; expected 1 or 2")
        frm = r.fixed(HASH_LEN)
        a, b = r.fixed(HASH_LEN), r.fixed(HASH_LEN)
        ha, hb = r.fixed(HASH_LEN), r.fixed(HASH_LEN)
        cell_size, round_seconds, start = r.u32(), r.u32(), r.u64()
        policy = Policy.RECORD
        if version == _OFFER_VERSION_FLAGS:
            raw_policy = r.u8()  # version 1 is for the record
            if raw_policy not in (Policy.DENIABLE, Policy.EITHER):
                raise DecodeError(
                    "a channel offer names a policy (flags) this version does not know"
                )
            policy = Policy(raw_policy)
        count = r.u8()
        if count > 2 * MAX_OFFICERS:
            raise DecodeError("too many sealed contributions")
        sealed = tuple((r.fixed(OFFICER_ID_LEN), r.var(4096)) for _ in range(count))
        r.end()
        sigs = read_signatures(outer, MAX_OFFICERS, "offer")
        outer.end()
        if not a < b:
            raise DecodeError("channel terms must list the missions in sorted order")
        terms = ChannelTerms(a, b, ha, hb, cell_size, round_seconds, policy)
        return cls(frm, terms, start, sealed, sigs)


def _contribution_info(terms: ChannelTerms, officer_id: bytes) -> bytes:
    return labels.HPKE_CHANNEL_CONTRIBUTION + terms.transcript() + officer_id


def make_offer(
    from_mission: bytes,
    terms: ChannelTerms,
    start_round: int,
    recipients: Sequence[EpochKeyCert],
    rng: Rng,
) -> tuple[ChannelOffer, bytes]:
    """Draw this mission's contribution and seal it to every listed officer.

    ``recipients`` must hold a verified epoch key certificate for every officer
    of both missions. Returns the unsigned offer and the contribution (which
    the proposing officer keeps, encrypted, until the channel is set up).
    """
    if from_mission not in (terms.mission_a, terms.mission_b):
        raise LocalProtocolError("the offering mission is not part of these terms")
    contribution = rng(KEY_LEN)
    sealed = tuple(
        (c.officer_id, c.public_key.seal(contribution, _contribution_info(terms, c.officer_id)))
        for c in recipients
    )
    return ChannelOffer(from_mission, terms, start_round, sealed), contribution


def sign_offer(offer: ChannelOffer, officer: Officer) -> ChannelOffer:
    sig = officer.signing_key.sign_hybrid(labels.SIG_CHANNEL_OFFER, offer.signed_part())
    others = tuple(s for s in offer.signatures if s[0] != officer.officer_id)
    return ChannelOffer(
        offer.from_mission,
        offer.terms,
        offer.start_round,
        offer.sealed,
        (*others, (officer.officer_id, sig)),
    )


def verify_offer(offer: ChannelOffer, roster: Roster, roster_mission: bytes) -> None:
    """Raise unless ``k`` officers of the offering mission's roster signed ``offer``."""
    if not equal(offer.from_mission, roster_mission):
        raise RosterError("channel offer is from another mission")
    body = offer.signed_part()
    good = signers(
        roster,
        offer.signatures,
        lambda vk, sig: vk.verify_hybrid(sig, labels.SIG_CHANNEL_OFFER, body),
    )
    if len(good) < roster.threshold:
        raise SignatureError(
            f"channel offer needs {roster.threshold} officers' signatures; {len(good)} verify"
        )


def open_contribution(offer: ChannelOffer, officer_id: bytes, key: KemPrivateKey) -> bytes:
    for oid, box in offer.sealed:
        if equal(oid, officer_id):
            return key.open(box, _contribution_info(offer.terms, officer_id))
    raise LocalProtocolError("this offer carries nothing sealed to this officer")


def channel_secret(terms: ChannelTerms, contribution_a: bytes, contribution_b: bytes) -> bytes:
    """Combine the two missions' contributions (``a`` from ``terms.mission_a``)."""
    if len(contribution_a) != KEY_LEN or len(contribution_b) != KEY_LEN:
        raise DecodeError("channel contribution has the wrong length")
    return hkdf(
        contribution_a + contribution_b, salt=terms.transcript(), info=labels.CHANNEL_SECRET
    )


@dataclass(frozen=True, slots=True)
class RoundKeys:
    """Slot addresses and cell keys of one round, indexed by direction (0, 1)."""

    round: int
    slots: tuple[bytes, bytes]
    cell_keys: tuple[bytes, bytes]

    def __repr__(self) -> str:
        return f"RoundKeys(round={self.round}, <secret>)"


@dataclass(frozen=True, slots=True)
class SlotChain:
    """The forward-only chain of round keys. Keep only the oldest round you still need."""

    round: int
    chain_key: bytes

    def __repr__(self) -> str:
        return f"SlotChain(round={self.round}, <secret>)"

    @classmethod
    def start(cls, secret: bytes, start_round: int) -> SlotChain:
        return cls(start_round, hkdf(secret, salt=None, info=labels.SLOT_CHAIN))

    def advance(self, to_round: int) -> SlotChain:
        if to_round < self.round:
            raise LocalProtocolError("the slot chain cannot go back to an erased round")
        ck = self.chain_key
        for _ in range(to_round - self.round):
            ck = hmac_sha256(ck, labels.SLOT_CHAIN_NEXT)
        return SlotChain(to_round, ck)

    def keys(self) -> RoundKeys:
        ck = self.chain_key
        slots = tuple(hmac_sha256(ck, labels.SLOT_ADDRESS, bytes([d]))[:SLOT_LEN] for d in (0, 1))
        cks = tuple(hmac_sha256(ck, labels.CELL_KEY, bytes([d])) for d in (0, 1))
        return RoundKeys(self.round, (slots[0], slots[1]), (cks[0], cks[1]))
