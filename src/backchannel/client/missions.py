"""Missions, peers and channels: founding a mission, pairing with a peer, epoch keys.

Nothing here talks to a relay: registering the mission's tenant happens in
the round driver (:mod:`backchannel.client.driver`), pairing by code in
:mod:`backchannel.client.pairing`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from backchannel.client.cards import CardError, MissionCard, OfficerCard
from backchannel.client.epoch_keys import EpochKeys
from backchannel.client.mission import MissionState, Proposal, adopt, propose, sign_proposal
from backchannel.client.records import ChannelRecord, PeerRecord
from backchannel.crypto import labels
from backchannel.crypto.primitives import equal
from backchannel.errors import ConfigError, DecodeError, RemoteProtocolError
from backchannel.protocol import channel as ch
from backchannel.protocol import policy as mp
from backchannel.protocol import rekey as rk
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.identity import OfficerPublic
from backchannel.protocol.roster import signers


class Missions(EpochKeys):
    """Officer, mission, peers, channels and epoch keys."""

    def officer_card(self) -> OfficerCard:
        return OfficerCard(self.officer.public, self.home.cert)

    def propose_mission(
        self,
        name: str,
        threshold: int,
        others: list[OfficerCard],
        relay_url: str,
        recovery: Sequence[OfficerPublic] = (),
        recovery_threshold: int = 0,
    ) -> Proposal:
        if self.vault.get("mission", b"state") is not None:
            raise ConfigError("this officer already belongs to a mission")
        check_relay_url(relay_url)
        return propose(
            self.officer, self.home.cert, name, threshold, others, relay_url, recovery,
            recovery_threshold,
        )  # fmt: skip

    def sign_proposal(self, proposal: Proposal) -> Proposal:
        return sign_proposal(proposal, self.officer)

    def adopt_mission(self, proposal: Proposal) -> MissionState:
        state = adopt(proposal, self.officer, self.home.epoch_keys)
        existing = self.mission_or_none()
        if existing is not None:
            if existing.mission_id != state.mission_id:
                raise ConfigError("this officer already belongs to another mission")
            return existing
        self._put("mission", b"state", state)
        return state

    def mission_card(self) -> MissionCard:
        m = self.mission()
        card = MissionCard(
            m.mission_id,
            tuple(m.signed_chain()),
            tuple(m.epoch_certs()),
            m.relay_url,
            m.tenant_id,
            self.officer.officer_id,
            relay_key=self.log.fingerprint(m.relay_url) or bytes(32),
            takeovers=tuple((c.channel_id, c.takeover) for c in self.channels() if c.takeover),
        )
        return card.sign(self.officer)

    def add_peer(self, card_text: str) -> PeerRecord:
        card = MissionCard.decode(card_text)
        m = self.mission()
        if card.mission_id == m.mission_id:
            raise ConfigError("that is our own mission's card")
        pinned = self.log.fingerprint(card.relay_url)
        if any(card.relay_key) and pinned is not None and not equal(pinned, card.relay_key):
            raise CardError(
                f"this card names another key for the relay {card.relay_url} than the one this "
                "device pinned: one of the two is an impostor; check with the peer in person"
            )
        known: PeerRecord | None = self._get("peers", card.mission_id, PeerRecord)
        if known is not None:
            old = MissionCard.decode(known.card, pinned_mission_id=known.mission_id)
            v = old.roster.version
            if card.roster.version < v or not equal(card.chain[v].roster.hash, old.roster.hash):
                raise CardError(
                    "this card rolls the mission's roster back or forks it; keep the one you have"
                )
        rec = PeerRecord(
            card.mission_id,
            card.roster.mission_name,
            card_text,
            ch.safety_number(m.mission_id, card.mission_id),
            known.confirmed if known else False,
        )
        with self._tx():
            self._put("peers", card.mission_id, rec)
            for c in self.channels():
                if c.peer_mission == card.mission_id:
                    self._adopt_peer_roster(c, card)
                    self._take_peer_over(c, card)
        return rec

    def _take_peer_over(self, c: ChannelRecord, card: MissionCard) -> None:
        """Follow the takeover of the channel by the peer's new sending device, if
        its card carries one this device has not followed yet (``protocol-v1.md`` §7.8).
        A takeover that cannot be right refuses the card."""
        raw = next((t for cid, t in card.takeovers if equal(cid, c.channel_id)), None)
        if raw is None:
            return
        try:
            rekey = rk.ChannelRekey.decode(raw)
        except DecodeError:
            raise CardError("the card's takeover of a channel is damaged") from None
        if rekey.base_round <= c.peer_takeover:
            return
        ep = self._endpoint(c.channel_id)
        try:
            said = ep.take_peer_over(rekey, self._kem_keys())
        except RemoteProtocolError as exc:
            raise CardError(f"the card's takeover of a channel does not verify: {exc}") from None
        self._save_endpoint(c.channel_id, ep)
        fresh = self.channel(c.channel_id)
        self._put("channels", c.channel_id, replace(fresh, peer_takeover=rekey.base_round))
        self._audit(AuditKind.CHANNEL_REKEYED, c.channel_id, said)

    def _adopt_peer_roster(self, c: ChannelRecord, card: MissionCard) -> None:
        """A channel takes the peer's roster from its card; the messages that
        waited for it reach the inbox, and any that then fail are alarms."""
        ep = self._endpoint(c.channel_id)
        released = ep.adopt_peer_roster([s.roster for s in card.chain])
        self._take_in(c.channel_id, released.messages, ep.next_recv_round - 1)
        try:
            rekeyed = ep.release_rekey(self._kem_keys())
        except RemoteProtocolError as exc:
            # Forged, or not for us: it stays held, and the channel stopped. One still ahead
            # of the card that no officer of its roster signed is dropped: the channel is
            # read on.
            self._alarm(c, f"the peer's re-key of the channel that waited for its card: {exc}", [])
            rekeyed = ""
        self._save_endpoint(c.channel_id, ep)
        if rekeyed:
            self._audit(AuditKind.CHANNEL_REKEYED, c.channel_id, rekeyed)
        for why in released.refused:
            self._alarm(c, f"a message that waited for the peer's new card: {why}", [])

    def confirm_peer(self, mission_id: bytes, safety_number: str) -> PeerRecord:
        rec = self.peer(mission_id)
        typed = "".join(safety_number.split())
        if not equal(typed.encode(), "".join(rec.safety_number.split()).encode()):
            raise ConfigError(
                "the safety number does not match: do not pair; compare it again in person"
            )
        rec = replace(rec, confirmed=True)
        with self._tx():
            self._put("peers", mission_id, rec)
            confirmed = self._confirmed_card(mission_id)
            if confirmed is not None:
                self._announce_card(mission_id, *confirmed)
            self._audit(AuditKind.PEER_CONFIRMED, mission_id, f"the card of {rec.name}")
        return rec

    def find_peer(self, prefix: str) -> PeerRecord:
        p = prefix.lower()
        hits = [r for r in self.peers() if r.mission_id.hex().startswith(p) or r.name.lower() == p]
        if len(hits) != 1:
            raise ConfigError(
                f"no single peer mission matches {prefix!r}; see `backchannel peer list`"
            )
        return hits[0]

    def _terms(self, peer: MissionCard, policy: ch.Policy = ch.Policy.RECORD) -> ch.ChannelTerms:
        m = self.mission()
        return ch.ChannelTerms.between(
            m.roster, m.mission_id, peer.roster, peer.mission_id, cell_size=m.cell_size,
            policy=policy,
        )  # fmt: skip

    def is_contact(self, mission_id: bytes) -> bool:
        """Whether a peer is a Track II contact (a roster of one), by the card we hold."""
        return MissionCard.decode(self.peer(mission_id).card).roster.is_contact

    def make_offer(
        self, peer_id: bytes, *, policy: ch.Policy = ch.Policy.RECORD
    ) -> ch.ChannelOffer:
        """Our mission's half of pairing. ``policy``: for the record (signatures),
        deniable (MACs both sides can compute, ``docs/spec/deniable-v1.md``) or
        either, message by message; the colleague who co-signs the offer and the
        peer's officers see it, and the peer's offer must name the same."""
        peer = self._peer_card(peer_id)
        m = self.mission()
        _check_policy(m.roster.is_contact or peer.roster.is_contact, policy, m.policy)
        terms = self._terms(peer, policy)
        start = int(self._clock()) // terms.round_seconds
        offer, _ = ch.make_offer(
            m.mission_id, terms, start, m.epoch_certs() + list(peer.certs), secrets.token_bytes
        )
        return ch.sign_offer(offer, self.officer)

    def sign_offer(self, offer: ch.ChannelOffer) -> ch.ChannelOffer:
        m = self.mission()
        if not equal(offer.from_mission, m.mission_id):
            raise ConfigError("that offer is not our mission's")
        peer_id = (
            offer.terms.mission_b
            if offer.terms.mission_a == m.mission_id
            else offer.terms.mission_a
        )
        self._peer_card(peer_id)  # refuses an unknown or unconfirmed peer
        return ch.sign_offer(offer, self.officer)

    def offer_signers(self, offer: ch.ChannelOffer) -> set[bytes]:
        """The officers whose signatures on ``offer`` verify: of our roster if it is our
        mission's offer, else of the (confirmed) peer's that made it."""
        m = self.mission()
        if equal(offer.from_mission, m.mission_id):
            roster = m.roster
        else:
            roster = self._peer_card(offer.from_mission).roster
        body = offer.signed_part()
        return signers(
            roster,
            offer.signatures,
            lambda vk, sig: vk.verify_hybrid(sig, labels.SIG_CHANNEL_OFFER, body),
        )

    def verified_offer(self, offer: ch.ChannelOffer) -> ch.ChannelOffer:
        """``offer`` with only the signatures that verify, one per officer.

        A file may name an officer twice: counted twice, one officer's offer would
        pass for one that ``k`` officers signed.
        """
        kept: dict[bytes, bytes] = {}
        for oid, sig in offer.signatures:
            if oid not in kept and self.offer_signers(replace(offer, signatures=((oid, sig),))):
                kept[oid] = sig
        return replace(offer, signatures=tuple(kept.items()))

    def accept_channel(self, offer_x: ch.ChannelOffer, offer_y: ch.ChannelOffer) -> ChannelRecord:
        m = self.mission()
        own, theirs = (
            (offer_x, offer_y) if offer_x.from_mission == m.mission_id else (offer_y, offer_x)
        )
        if not equal(own.from_mission, m.mission_id):
            raise ConfigError("neither offer is from our mission")
        peer = self._peer_card(theirs.from_mission)
        track_two = m.roster.is_contact or peer.roster.is_contact
        _check_policy(track_two, own.terms.policy, m.policy)
        terms = self._terms(peer, own.terms.policy)
        if own.terms != terms or theirs.terms != terms:
            raise RemoteProtocolError("the two offers disagree on the channel's terms")
        ch.verify_offer(own, m.roster, m.mission_id)
        ch.verify_offer(theirs, peer.roster, peer.mission_id)
        key = self.home.epoch_keys[-1].private_key
        contributions = {
            o.from_mission: ch.open_contribution(o, self.officer.officer_id, key)
            for o in (own, theirs)
        }
        secret = ch.channel_secret(
            terms, contributions[terms.mission_a], contributions[terms.mission_b]
        )
        start = max(own.start_round, theirs.start_round)
        rec = ChannelRecord(
            terms.channel_id, peer.mission_id, terms, start, peer_contact=peer.roster.is_contact
        )
        ep = Endpoint.create(
            terms, m.mission_id, self.officer, m.roster, peer.roster, secret, start
        )
        ep.sends = self.is_runner
        with self._tx():
            self._put("channels", terms.channel_id, rec)
            self._save_endpoint(terms.channel_id, ep)
        return rec

    def channel_for(self, peer_prefix: str) -> ChannelRecord:
        peer = self.find_peer(peer_prefix)
        for c in self.channels():
            if c.peer_mission == peer.mission_id:
                return c
        raise ConfigError(f"no channel with {peer.name} yet; pair first")


def check_relay_url(url: str) -> None:
    """A relay address goes into cards and alarms: it must carry no secret."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the relay address must be http(s)://host[:port]; got {parts.scheme!r}")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError(
            "the relay address must not hold a user name, password, query or fragment: "
            "it is written into the mission card the peer receives"
        )


def _check_policy(track_two: bool, policy: ch.Policy, rules: mp.MissionPolicy) -> None:
    """A channel with a contact (a roster of one) is Track II: deniable, always; an
    official channel takes a policy the mission's own allows (k of n set it)."""
    if track_two and policy is not ch.Policy.DENIABLE:
        raise ConfigError(
            "a channel with a contact (one person, no mission) is deniable: make the offer "
            "with --policy deniable"
        )
    if not track_two and not rules.allows_official(policy):
        raise ConfigError(
            f"the mission's policy does not allow official channels that are "
            f"{policy.name.lower()} ({rules.describe()}); k officers can change it with "
            "`backchannel mission policy propose`"
        )
