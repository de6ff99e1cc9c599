"""Two missions on one machine, talking through an in-memory relay.

The two-party harness behind the protocol tests and the in-memory demo: it
wires the pure protocol core together exactly as devices would, with the
randomness and the relay supplied here. Every officer keeps his own secrets;
the harness only carries bytes between them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from backchannel.crypto.sharing import Share
from backchannel.protocol import channel as ch
from backchannel.protocol import roster as rs
from backchannel.protocol.constants import CELL_SIZE
from backchannel.protocol.endpoint import Endpoint, RoundResult
from backchannel.protocol.identity import EpochKey, EpochKeyCert, Officer
from backchannel.protocol.incoming import Incoming
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.outgoing import Outgoing
from backchannel.protocol.payload import Payload
from backchannel.protocol.sealing import (
    RecvEpoch,
    SendEpoch,
    accept_announcement,
    decrypt_share,
    mark_sent,
    start_epoch,
)

Rng = Callable[[int], bytes]


def system_rng(n: int) -> bytes:
    return secrets.token_bytes(n)


@dataclass
class OfficerKit:
    officer: Officer
    epoch_keys: list[EpochKey]
    cert: EpochKeyCert
    recv_epochs: dict[bytes, RecvEpoch] = field(default_factory=dict)

    @classmethod
    def create(cls, name: str, rng: Rng) -> OfficerKit:
        officer = Officer.generate(name, rng)
        ek = EpochKey.generate(1, rng)
        return cls(officer, [ek], ek.certify(officer))


@dataclass
class MissionKit:
    name: str
    officers: list[OfficerKit]
    chain: list[rs.SignedRoster]

    @classmethod
    def create(cls, name: str, officer_names: Sequence[str], k: int, rng: Rng) -> MissionKit:
        kits = [OfficerKit.create(n, rng) for n in officer_names]
        roster = rs.new_genesis(name, [o.officer.public for o in kits], k, rng(rs.NONCE_LEN))
        sigs = tuple(rs.sign_roster(roster, o.officer) for o in kits)
        return cls(name, kits, [rs.SignedRoster(roster, sigs)])

    @property
    def roster(self) -> rs.Roster:
        return self.chain[-1].roster

    @property
    def mission_id(self) -> bytes:
        return rs.mission_id(self.chain[0].roster)

    def certs(self) -> list[EpochKeyCert]:
        return [o.cert for o in self.officers]


class InMemoryRelay:
    """A relay that stores cells by slot and remembers every deposit."""

    def __init__(self) -> None:
        self.cells: dict[bytes, bytes] = {}
        self.deposits: list[tuple[bytes, bytes]] = []

    def deposit(self, slot: bytes, cell: bytes) -> None:
        existing = self.cells.get(slot)
        if existing is not None and existing != cell:
            raise ValueError("slot already holds another cell")
        self.cells[slot] = cell
        self.deposits.append((slot, cell))

    def fetch(self, slot: bytes) -> bytes | None:
        return self.cells.get(slot)


@dataclass
class Side:
    """One mission's side of the channel. ``endpoint`` runs on its first officer's device."""

    mission: MissionKit
    endpoint: Endpoint
    send_epoch: SendEpoch | None = None
    epoch_no: int = 0
    inbox: list[Incoming] = field(default_factory=list)
    announcements: dict[bytes, bytes] = field(default_factory=dict)
    results: list[RoundResult] = field(default_factory=list)


class Pair:
    """Two paired missions and a relay; ``a`` and ``b`` are their sides."""

    def __init__(
        self,
        m1: MissionKit,
        m2: MissionKit,
        *,
        rng: Rng = system_rng,
        cell_size: int = CELL_SIZE,
        start_round: int = 0,
        relay: InMemoryRelay | None = None,
        policy: ch.Policy = ch.Policy.RECORD,
    ) -> None:
        self.rng = rng
        self.relay = relay or InMemoryRelay()
        self.round = start_round
        self.terms = ch.ChannelTerms.between(
            m1.roster, m1.mission_id, m2.roster, m2.mission_id, cell_size=cell_size,
            policy=policy,
        )  # fmt: skip
        all_certs = m1.certs() + m2.certs()
        offers: dict[bytes, ch.ChannelOffer] = {}
        for m in (m1, m2):
            offer, _ = ch.make_offer(m.mission_id, self.terms, start_round, all_certs, rng)
            for o in m.officers[: m.roster.threshold]:
                offer = ch.sign_offer(offer, o.officer)
            offers[m.mission_id] = offer
        # Each mission verifies the other's offer against the pinned roster.
        for other in (m1, m2):
            ch.verify_offer(offers[other.mission_id], other.roster, other.mission_id)
        self.secrets: dict[bytes, bytes] = {}
        for m in (m1, m2):
            for o in m.officers:
                key = o.epoch_keys[-1].private_key
                ca = ch.open_contribution(offers[self.terms.mission_a], o.officer.officer_id, key)
                cb = ch.open_contribution(offers[self.terms.mission_b], o.officer.officer_id, key)
                self.secrets[o.officer.officer_id] = ch.channel_secret(self.terms, ca, cb)
        #: Every message as it left its sender's side (signed, or with its MAC).
        self.sent_on_wire: list[SealedMessage] = []
        #: Tests keep here the signed drafts they queued (the sender's own record).
        self.sent_signed: list[SealedMessage] = []
        self.a = self._side(m1, m2, start_round)
        self.b = self._side(m2, m1, start_round)

    def _side(self, m: MissionKit, peer: MissionKit, start_round: int) -> Side:
        runner = m.officers[0].officer
        ep = Endpoint.create(
            self.terms,
            m.mission_id,
            runner,
            m.roster,
            peer.roster,
            self.secrets[runner.officer_id],
            start_round,
        )
        return Side(m, ep)

    def peer(self, side: Side) -> Side:
        return self.b if side is self.a else self.a

    # --- sending ----------------------------------------------------------------

    def compose(
        self,
        side: Side,
        author: int,
        payload: Payload,
        created_at: int = 0,
        deniable: bool | None = None,
    ) -> Outgoing:
        """Officer ``author`` (0-based) drafts, seals and signs; returns the sealed draft."""
        peer = self.peer(side)
        if side.send_epoch is None:
            side.epoch_no += 1
            side.send_epoch = start_epoch(
                self.terms.channel_id,
                side.endpoint.out_direction,
                side.epoch_no,
                peer.mission.roster,
                peer.mission.certs(),
                self.rng,
            )
        header = side.endpoint.new_header(payload.kind, side.send_epoch, created_at, deniable)
        out, side.send_epoch = Outgoing.draft(payload).seal(
            header,
            side.send_epoch,
            peer.mission.roster,
            side.mission.officers[author].officer,
            side.mission.roster,
            self.rng,
        )
        return out

    def cosign(self, side: Side, out: Outgoing, officer: int) -> Outgoing:
        return out.cosign(side.mission.officers[officer].officer, side.mission.roster)

    def send(self, side: Side, out: Outgoing) -> Outgoing:
        assert out.message is not None
        wire = side.endpoint.queue(out.message)
        if side.send_epoch is not None:
            side.send_epoch = mark_sent(side.send_epoch, out.message)
        self.sent_on_wire.append(wire)
        return out.queue()

    # --- rounds -------------------------------------------------------------------

    def run_round(self) -> tuple[RoundResult, RoundResult]:
        r = self.round
        for side in (self.a, self.b):
            slot, cell = side.endpoint.cell_for_round(r, self.rng(12))
            self.relay.deposit(slot, cell)
        out = []
        for side in (self.a, self.b):
            slot = side.endpoint.slot_to_fetch(r)
            res = side.endpoint.receive(r, self.relay.fetch(slot))
            side.results.append(res)
            for m in res.messages:
                if m.announcement:
                    side.announcements[m.header.epoch_id] = m.announcement
                side.inbox.append(Incoming.received(m))
            out.append(res)
        self.round += 1
        return out[0], out[1]

    def run_until_quiet(self, limit: int = 64) -> None:
        for _ in range(limit):
            self.run_round()
            if not (self.a.endpoint.pending_cells or self.b.endpoint.pending_cells):
                self.run_round()  # one more round carries the receipts
                return
        raise RuntimeError("channel did not drain")

    # --- joint opening ------------------------------------------------------------

    def share(self, side: Side, msg: SealedMessage, officer: int) -> Share:
        """Officer ``officer`` of ``side`` decrypts his own share of ``msg``."""
        kit = side.mission.officers[officer]
        eid = msg.header.epoch_id
        if eid not in kit.recv_epochs:
            kit.recv_epochs[eid] = accept_announcement(
                msg.announcement or side.announcements.get(eid, b""),
                self.terms.channel_id,
                msg.header.direction,
                side.mission.roster,
                kit.officer,
                kit.epoch_keys,
            )
        share, kit.recv_epochs[eid] = decrypt_share(msg, kit.recv_epochs[eid])
        return share

    def open(self, side: Side, incoming: Incoming, officers: Sequence[int]) -> Incoming:
        for i in officers:
            incoming = incoming.add_share(
                self.share(side, incoming.message, i), side.mission.roster
            )
        return incoming
