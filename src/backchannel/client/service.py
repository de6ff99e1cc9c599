"""The client library: one officer's device, over the pure protocol core.

Every operation persists its new state in the encrypted vault before anything
goes on the network ("persist, then send"): cells to deposit wait in the
``net_out`` queue until the relay confirms them, so a relay that is down loses
nothing and a retry never duplicates (deposits are idempotent). Receiving is
idempotent too: a round already processed is never processed again.

The CLI and the local UI are thin adapters over :class:`Client`.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from backchannel.client import statecodec
from backchannel.client.cards import CardError, MissionCard, OfficerCard
from backchannel.client.home import Home
from backchannel.client.log_watch import CellCheck, LogWatch, SlotSeen
from backchannel.client.mission import MissionState, Proposal, adopt, propose, sign_proposal
from backchannel.client.records import (
    ChannelRecord,
    CosignRequest,
    DraftRecord,
    InboxRecord,
    NetOut,
    PeerRecord,
    ShareRequest,
)
from backchannel.client.relay_client import CellLog, FetchAnswer, RelayClient
from backchannel.crypto.primitives import equal
from backchannel.crypto.sharing import Share
from backchannel.errors import (
    AuthenticationError,
    BackchannelError,
    ConfigError,
    GapDetected,
    LocalProtocolError,
    NotEnoughShares,
    NotEnoughSignatures,
    RelayRefused,
    RelayUnavailable,
    RemoteProtocolError,
    RosterError,
    TranscriptError,
)
from backchannel.protocol import channel as ch
from backchannel.protocol import joint
from backchannel.protocol.cells import Fragment, Receipt
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.identity import EpochKeyCert, Officer
from backchannel.protocol.incoming import Incoming
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.misbehaviour import (
    DepositNote,
    EntryProof,
    Gossip,
    SignedHead,
    evidence_kind,
)
from backchannel.protocol.outgoing import Outgoing
from backchannel.protocol.payload import Payload
from backchannel.protocol.roster import Roster
from backchannel.protocol.sealing import (
    Announcement,
    RecvEpoch,
    accept_announcement,
    check_draft,
    decrypt_share,
    mark_sent,
    sign,
    start_epoch,
    valid_signers,
)
from backchannel.protocol.states import SendState
from backchannel.protocol.transcript import Transcript

RelayFactory = Callable[[str, str | None, str | None], AbstractAsyncContextManager[RelayClient]]

_T = TypeVar("_T")

#: How many rounds ahead of the last one processed a sync looks for the peer's cells,
#: and how many mailbox slots one fetch asks for.
FETCH_WINDOW = 16
#: Most slots in one fetch request (relays accept at least 256).
MAX_FETCH = 256
#: Most mailbox cells one sync reads from one colleague (a joint object is at most
#: ~130 cells; the rest waits for the next sync).
MAX_MAILBOX_CELLS = 1024
#: Rounds for which a device remembers what the relay served at its inbound slots,
#: to check the peer's notes of its deposits (relay-log-v1 §5).
SEEN_ROUNDS = 64


def default_relay_factory(
    url: str, tenant: str | None, credential: str | None
) -> AbstractAsyncContextManager[RelayClient]:
    return RelayClient(url, tenant, credential)


def _id() -> bytes:
    return secrets.token_bytes(16)


@dataclass
class SyncReport:
    deposited: int = 0
    waiting: int = 0
    rounds_received: int = 0
    messages: list[str] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    joint_objects: int = 0
    alarms: list[str] = field(default_factory=list)
    relay_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "deposited": self.deposited,
            "waiting": self.waiting,
            "rounds_received": self.rounds_received,
            "messages": self.messages,
            "delivered": self.delivered,
            "joint_objects": self.joint_objects,
            "alarms": self.alarms,
            "relay_error": self.relay_error,
        }


class Client:
    """One officer's device."""

    def __init__(
        self,
        home: Home,
        relay_factory: RelayFactory = default_relay_factory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.home = home
        self.vault = home.vault
        self.officer: Officer = home.officer
        self._relay = relay_factory
        self._clock = clock
        self.log = LogWatch(self.vault, self._card_relay_keys, clock)

    # --- small vault helpers -------------------------------------------------

    def _get(self, table: str, key: bytes, tp: type[Any]) -> Any:
        raw = self.vault.get(table, key)
        return None if raw is None else statecodec.loads(tp, raw)

    def _put(self, table: str, key: bytes, value: Any) -> None:
        self.vault.put(table, key, statecodec.dumps(value))

    def _all(self, table: str, tp: type[Any]) -> list[Any]:
        return [statecodec.loads(tp, v) for _, v in self.vault.items(table)]

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self.vault.transaction():
            yield

    def _counter(self, name: bytes) -> int:
        raw = self.vault.get("counters", name)
        return int(raw) if raw else 0

    def _set_counter(self, name: bytes, value: int) -> None:
        self.vault.put("counters", name, str(value).encode())

    # --- officer and mission -------------------------------------------------

    def officer_card(self) -> OfficerCard:
        return OfficerCard(self.officer.public, self.home.cert)

    def propose_mission(
        self, name: str, threshold: int, others: list[OfficerCard], relay_url: str
    ) -> Proposal:
        if self.vault.get("mission", b"state") is not None:
            raise ConfigError("this officer already belongs to a mission")
        _check_relay_url(relay_url)
        return propose(self.officer, self.home.cert, name, threshold, others, relay_url)

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

    async def register_tenant(self) -> None:
        """Register the mission's tenant, and pin the relay's log key for the mission card."""
        m = self.mission()
        async with self._relay(m.relay_url, None, None) as relay:
            try:
                await relay.register_tenant(m.tenant_id, m.credential)
            except RelayRefused as exc:
                if getattr(exc, "status", None) != 409:
                    raise
            with contextlib.suppress(RelayRefused):  # a relay that keeps no log
                await self.log.pin(m.relay_url, relay, [])

    def _card_relay_keys(self, url: str) -> set[bytes]:
        """Relay-key fingerprints that the mission cards we hold state for ``url``."""
        out: set[bytes] = set()
        for rec in self.peers():
            card = MissionCard.decode(rec.card, pinned_mission_id=rec.mission_id)
            if card.relay_url == url and any(card.relay_key):
                out.add(card.relay_key)
        return out

    def mission_or_none(self) -> MissionState | None:
        return self._get("mission", b"state", MissionState)  # type: ignore[no-any-return]

    def mission(self) -> MissionState:
        m = self.mission_or_none()
        if m is None:
            raise ConfigError("this officer has no mission yet; see `backchannel mission --help`")
        return m

    @property
    def is_runner(self) -> bool:
        return equal(self.mission().runner_id, self.officer.officer_id)

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
        )
        return card.sign(self.officer)

    # --- peers ---------------------------------------------------------------

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
                    ep = self._endpoint(c.channel_id)
                    ep.peer_roster = card.roster
                    self._save_endpoint(c.channel_id, ep)
        return rec

    def confirm_peer(self, mission_id: bytes, safety_number: str) -> PeerRecord:
        rec = self.peer(mission_id)
        typed = "".join(safety_number.split())
        if not equal(typed.encode(), "".join(rec.safety_number.split()).encode()):
            raise ConfigError(
                "the safety number does not match: do not pair; compare it again in person"
            )
        rec = replace(rec, confirmed=True)
        self._put("peers", mission_id, rec)
        return rec

    def peers(self) -> list[PeerRecord]:
        return self._all("peers", PeerRecord)

    def peer(self, mission_id: bytes) -> PeerRecord:
        rec: PeerRecord | None = self._get("peers", mission_id, PeerRecord)
        if rec is None:
            raise ConfigError("unknown peer mission; add its card with `backchannel peer add`")
        return rec

    def find_peer(self, prefix: str) -> PeerRecord:
        p = prefix.lower()
        hits = [r for r in self.peers() if r.mission_id.hex().startswith(p) or r.name.lower() == p]
        if len(hits) != 1:
            raise ConfigError(
                f"no single peer mission matches {prefix!r}; see `backchannel peer list`"
            )
        return hits[0]

    def _peer_card(self, mission_id: bytes) -> MissionCard:
        rec = self.peer(mission_id)
        if not rec.confirmed:
            raise ConfigError(
                "the peer's safety number is not confirmed; run `backchannel peer confirm` first"
            )
        return MissionCard.decode(rec.card, pinned_mission_id=mission_id)

    # --- pairing ---------------------------------------------------------------

    def _terms(self, peer: MissionCard) -> ch.ChannelTerms:
        m = self.mission()
        return ch.ChannelTerms.between(
            m.roster, m.mission_id, peer.roster, peer.mission_id, cell_size=m.cell_size
        )

    def make_offer(self, peer_id: bytes) -> ch.ChannelOffer:
        peer = self._peer_card(peer_id)
        m = self.mission()
        terms = self._terms(peer)
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

    def accept_channel(self, offer_x: ch.ChannelOffer, offer_y: ch.ChannelOffer) -> ChannelRecord:
        m = self.mission()
        own, theirs = (
            (offer_x, offer_y) if offer_x.from_mission == m.mission_id else (offer_y, offer_x)
        )
        if not equal(own.from_mission, m.mission_id):
            raise ConfigError("neither offer is from our mission")
        peer = self._peer_card(theirs.from_mission)
        terms = self._terms(peer)
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
        rec = ChannelRecord(terms.channel_id, peer.mission_id, terms, start)
        ep = Endpoint.create(
            terms, m.mission_id, self.officer, m.roster, peer.roster, secret, start
        )
        ep.sends = self.is_runner
        with self._tx():
            self._put("channels", terms.channel_id, rec)
            self._save_endpoint(terms.channel_id, ep)
        return rec

    def _save_endpoint(self, channel_id: bytes, ep: Endpoint) -> None:
        data = {f: getattr(ep, f) for f in Endpoint.__dataclass_fields__ if f != "officer"}
        self.vault.put("endpoints", channel_id, statecodec.dumps(_EndpointData(**data)))

    def _endpoint(self, channel_id: bytes) -> Endpoint:
        raw = self.vault.get("endpoints", channel_id)
        if raw is None:
            raise ConfigError("unknown channel")
        d = statecodec.loads(_EndpointData, raw)
        return Endpoint(officer=self.officer, **{f: getattr(d, f) for f in _ENDPOINT_FIELDS})

    def channels(self) -> list[ChannelRecord]:
        return self._all("channels", ChannelRecord)

    def channel_for(self, peer_prefix: str) -> ChannelRecord:
        peer = self.find_peer(peer_prefix)
        for c in self.channels():
            if c.peer_mission == peer.mission_id:
                return c
        raise ConfigError(f"no channel with {peer.name} yet; pair first")

    # --- sending ---------------------------------------------------------------

    def compose(self, channel_id: bytes, payload: Payload) -> DraftRecord:
        """Seal and sign a draft, and ask every other officer to co-sign it."""
        if not self.is_runner:
            raise ConfigError(
                "messages are drafted on the mission's desk device (the runner); "
                "ask the officer who runs it"
            )
        rec: ChannelRecord = self._get("channels", channel_id, ChannelRecord)
        ep = self._endpoint(channel_id)
        m = self.mission()
        peer = self._peer_card(rec.peer_mission)
        pending = [
            d
            for d in self._all("drafts", DraftRecord)
            if d.channel_id == channel_id and d.outgoing.state in (SendState.SEALED,)
        ]
        if pending:
            raise ConfigError(
                "a draft on this channel is still waiting for its co-signature; "
                "approve or reject it first"
            )
        epoch = rec.send_epoch
        epoch_no = rec.epoch_no
        if (
            epoch is None
            or epoch.recipient_roster != peer.roster.version
            or _key_epochs(epoch.announcement) != {(c.officer_id, c.epoch) for c in peer.certs}
        ):
            epoch_no += 1
            epoch = start_epoch(
                channel_id,
                ep.out_direction,
                epoch_no,
                peer.roster,
                list(peer.certs),
                secrets.token_bytes,
            )
        now = int(self._clock())
        header = ep.new_header(payload.kind, epoch, now)
        out, epoch = Outgoing.draft(payload).seal(
            header, epoch, peer.roster, self.officer, m.roster, secrets.token_bytes
        )
        draft = DraftRecord(_id(), channel_id, out, now, header.seq)
        assert out.message is not None and out.content_key is not None
        with self._tx():
            self._put("channels", channel_id, replace(rec, send_epoch=epoch, epoch_no=epoch_no))
            self._put("drafts", draft.draft_id, draft)
            for o in m.roster.officers:
                if equal(o.officer_id, self.officer.officer_id):
                    continue
                body = statecodec.dumps(
                    CosignRequest(
                        b"",
                        self.officer.officer_id,
                        channel_id,
                        draft.draft_id,
                        out.message.encode(),
                        out.content_key,
                        payload.encode(),
                    )
                )
                self._send_joint(joint.JointKind.COSIGN_REQUEST, o.officer_id, body)
        return draft

    def drafts(self) -> list[DraftRecord]:
        return sorted(self._all("drafts", DraftRecord), key=lambda d: d.created_at)

    def find_draft(self, prefix: str) -> DraftRecord:
        """The one draft whose id (hex) starts with ``prefix``."""
        return _one(self.drafts(), lambda d: d.draft_id, prefix, "draft", "drafts")

    def send_now(self, draft_id: bytes) -> DraftRecord:
        """Queue a draft for the rounds: refused without ``k`` signatures."""
        draft: DraftRecord | None = self._get("drafts", draft_id, DraftRecord)
        if draft is None:
            raise ConfigError("unknown draft")
        m = self.mission()
        if draft.outgoing.state is not SendState.COSIGNED:
            out = draft.outgoing
            n = len(valid_signers(out.message, m.roster)) if out.message else 0
            raise NotEnoughSignatures(
                f"{n} of the {m.roster.threshold} officers needed have signed; "
                "ask a colleague to co-sign"
            )
        return self._queue(draft)

    def _queue(self, draft: DraftRecord) -> DraftRecord:
        rec: ChannelRecord = self._get("channels", draft.channel_id, ChannelRecord)
        ep = self._endpoint(draft.channel_id)
        msg = draft.outgoing.message
        assert msg is not None
        ep.queue(msg)
        out = draft.outgoing.queue()
        new_draft = replace(draft, outgoing=out)
        epoch = mark_sent(rec.send_epoch, msg) if rec.send_epoch else None
        with self._tx():
            self._save_endpoint(draft.channel_id, ep)
            self._put("channels", draft.channel_id, replace(rec, send_epoch=epoch))
            self._put("drafts", draft.draft_id, new_draft)
        return new_draft

    # --- co-signing ------------------------------------------------------------

    def cosign_requests(self) -> list[CosignRequest]:
        return self._all("cosign_in", CosignRequest)

    def find_cosign(self, prefix: str) -> CosignRequest:
        """The one co-sign request whose id (hex) starts with ``prefix``."""
        return _one(
            self.cosign_requests(), lambda r: r.request_id, prefix, "co-sign request", "cosign list"
        )

    def show_cosign(self, request_id: bytes) -> tuple[CosignRequest, Payload]:
        req: CosignRequest | None = self._get("cosign_in", request_id, CosignRequest)
        if req is None:
            raise ConfigError("unknown co-sign request; see `backchannel cosign list`")
        payload = Payload.decode(req.payload)
        check_draft(SealedMessage.decode(req.message), req.content_key, payload)
        return req, payload

    def approve_cosign(self, request_id: bytes) -> None:
        req, _ = self.show_cosign(request_id)
        msg = sign(SealedMessage.decode(req.message), self.officer, self.mission().roster)
        sig = next(s for oid, s in msg.signatures if equal(oid, self.officer.officer_id))
        body = req.draft_id + sig
        with self._tx():
            self._send_joint(joint.JointKind.COSIGNATURE, req.from_officer, body)
            self.vault.delete("cosign_in", request_id)

    def reject_cosign(self, request_id: bytes) -> None:
        req, _ = self.show_cosign(request_id)
        with self._tx():
            self._send_joint(joint.JointKind.NOTICE, req.from_officer, b"reject" + req.draft_id)
            self.vault.delete("cosign_in", request_id)

    def _on_cosignature(self, sender: bytes, body: bytes) -> str | None:
        draft_id, sig = body[:16], body[16:]
        draft: DraftRecord | None = self._get("drafts", draft_id, DraftRecord)
        if draft is None or draft.outgoing.message is None:
            return None
        m = self.mission()
        msg = draft.outgoing.message.with_signature(sender, sig)
        if sender not in valid_signers(msg, m.roster):
            return "a co-signature did not verify and was dropped"
        out = draft.outgoing.with_cosignature(msg, m.roster)
        draft = replace(draft, outgoing=out)
        self._put("drafts", draft_id, draft)
        if out.state is SendState.COSIGNED:
            self._queue(draft)
        return None

    def _on_notice(self, sender: bytes, body: bytes) -> None:
        if body.startswith(b"reject"):
            draft_id = body[6:22]
            draft: DraftRecord | None = self._get("drafts", draft_id, DraftRecord)
            if draft is not None and draft.outgoing.state is SendState.SEALED:
                self._put("drafts", draft_id, replace(draft, outgoing=draft.outgoing.reject()))

    # --- receiving and joint opening --------------------------------------------

    def inbox(self) -> list[InboxRecord]:
        return sorted(self._all("inbox", InboxRecord), key=lambda r: r.received_round)

    def inbox_item(self, prefix: str) -> InboxRecord:
        hits = [r for r in self.inbox() if r.message_id.hex().startswith(prefix.lower())]
        if len(hits) != 1:
            raise ConfigError(f"no single message matches {prefix!r}; see `backchannel inbox`")
        return hits[0]

    def _roster_at(self, version: int) -> Roster:
        """Our roster as it stood at ``version`` (messages name the version they used)."""
        for signed in self.mission().signed_chain():
            if signed.roster.version == version:
                return signed.roster
        raise RosterError("a message names a roster version we do not have")

    def _own_share(self, item: InboxRecord) -> tuple[Share, InboxRecord]:
        if item.own_share:
            return Share.decode(item.own_share), item
        msg = SealedMessage.decode(item.message)
        rec: ChannelRecord = self._get("channels", item.channel_id, ChannelRecord)
        key = item.channel_id + msg.header.epoch_id
        epoch: RecvEpoch | None = self._get("recv_epochs", key, RecvEpoch)
        if epoch is None:
            ann = msg.announcement or dict(rec.announcements).get(msg.header.epoch_id, b"")
            epoch = accept_announcement(
                ann,
                item.channel_id,
                msg.header.direction,
                self._roster_at(msg.header.recipient_roster),
                self.officer,
                self.home.epoch_keys,
            )
        share, epoch = decrypt_share(msg, epoch)
        item = replace(item, own_share=share.encode())
        self._put("recv_epochs", key, epoch)  # the used share key is erased from disk
        self._put("inbox", item.message_id, item)
        return share, item

    def request_open(self, message_id: bytes) -> InboxRecord:
        """Contribute our share and ask every other officer for theirs."""
        item: InboxRecord = self._get("inbox", message_id, InboxRecord)
        with self._tx():
            share, item = self._own_share(item)
            item = self._add_share(item, share)
            if not item.payload:
                version = SealedMessage.decode(item.message).header.recipient_roster
                for o in self._roster_at(version).officers:
                    if not equal(o.officer_id, self.officer.officer_id):
                        self._send_joint(
                            joint.JointKind.SHARE_REQUEST,
                            o.officer_id,
                            item.channel_id + item.message_id,
                        )
                item = replace(item, open_requested=True)
                self._put("inbox", message_id, item)
        return item

    def _add_share(self, item: InboxRecord, share: Share) -> InboxRecord:
        shares = tuple(s for s in item.shares if Share.decode(s).index != share.index)
        item = replace(item, shares=(*shares, share.encode()))
        msg = SealedMessage.decode(item.message)
        roster = self._roster_at(msg.header.recipient_roster)
        if not item.payload and len(item.shares) >= roster.threshold:
            inc = Incoming.received(SealedMessage.decode(item.message))
            for s in item.shares:
                inc = inc.add_share(Share.decode(s), roster)
            item = replace(item, payload=inc.open(roster).encode(), shares=())
        self._put("inbox", item.message_id, item)
        return item

    def forget(self, message_id: bytes) -> None:
        """Erase a message from this device: its text, its shares and its ciphertext.

        The vault deletes securely, so a device seized afterwards holds nothing
        of it (the relay's copy expires with its retention).
        """
        if not self.vault.delete("inbox", message_id):
            raise ConfigError("unknown message; see `backchannel inbox`")

    def read(self, message_id: bytes) -> Payload:
        item: InboxRecord = self._get("inbox", message_id, InboxRecord)
        if item is None or not item.payload:
            roster = self.mission().roster
            have = len(item.shares) if item else 0
            raise NotEnoughShares(
                f"{have} of the {roster.threshold} officers needed have contributed; "
                "a colleague must approve the share request"
            )
        return Payload.decode(item.payload)

    def share_requests(self) -> list[ShareRequest]:
        return self._all("share_in", ShareRequest)

    def find_share_request(self, prefix: str) -> ShareRequest:
        """The one share request whose id (hex) starts with ``prefix``."""
        return _one(
            self.share_requests(), lambda r: r.request_id, prefix, "share request", "share list"
        )

    def approve_share(self, request_id: bytes) -> None:
        req: ShareRequest | None = self._get("share_in", request_id, ShareRequest)
        if req is None:
            raise ConfigError("unknown share request; see `backchannel share list`")
        item: InboxRecord | None = self._get("inbox", req.message_id, InboxRecord)
        if item is None:
            raise ConfigError(
                "this device has not received that message yet; run `backchannel sync`"
            )
        with self._tx():
            share, _ = self._own_share(item)
            self._send_joint(
                joint.JointKind.SHARE, req.from_officer, req.message_id + share.encode()
            )
            self.vault.delete("share_in", request_id)

    # --- the mission-internal mailbox ---------------------------------------------

    def _send_joint(self, kind: joint.JointKind, recipient: bytes, body: bytes) -> None:
        m = self.mission()
        obj = joint.JointObject(kind, _id(), self.officer.officer_id, recipient, body)
        sealed = joint.seal_object(obj, self.officer, m.cert_of(recipient), m.mission_id)
        n = joint.cells_needed(len(sealed), m.cell_size)
        name = b"out" + recipient
        first = self._counter(name)
        slots = [
            joint.mailbox_slot(m.secret, self.officer.officer_id, recipient, first + i)
            for i in range(n)
        ]
        cells = joint.to_cells(
            sealed, obj.object_id, slots, m.secret, m.cell_size, secrets.token_bytes
        )
        self._set_counter(name, first + n)
        for slot, cell in zip(slots, cells, strict=True):
            self.vault.append(
                "net_out", statecodec.dumps(NetOut(m.relay_url, m.tenant_id, slot, cell))
            )

    def _on_joint(self, obj: joint.JointObject) -> str | None:
        if obj.kind is joint.JointKind.COSIGN_REQUEST:
            req = statecodec.loads(CosignRequest, obj.body)
            req = replace(req, request_id=obj.object_id, from_officer=obj.sender_id)
            self._put("cosign_in", obj.object_id, req)
        elif obj.kind is joint.JointKind.COSIGNATURE:
            return self._on_cosignature(obj.sender_id, obj.body)
        elif obj.kind is joint.JointKind.SHARE_REQUEST:
            req2 = ShareRequest(obj.object_id, obj.sender_id, obj.body[:16], obj.body[16:32])
            self._put("share_in", obj.object_id, req2)
        elif obj.kind is joint.JointKind.SHARE:
            mid, share = obj.body[:16], Share.decode(obj.body[16:])
            item: InboxRecord | None = self._get("inbox", mid, InboxRecord)
            if item is not None and not item.payload:
                self._add_share(item, share)
        elif obj.kind is joint.JointKind.NOTICE:
            self._on_notice(obj.sender_id, obj.body)
        elif obj.kind is joint.JointKind.EPOCH_CERT:
            self._on_epoch_cert(obj.sender_id, EpochKeyCert.decode(obj.body))
        return None

    # --- epoch key rotation ---------------------------------------------------------

    def rotate_epoch_key(self) -> EpochKeyCert:
        """Start a new epoch key; colleagues learn its certificate through the mailbox.

        Peers learn it from the next mission card; their next key epoch then
        seals to it. Erase the old key with :meth:`erase_epoch_keys` once the
        messages sealed to it have been opened.
        """
        key = self.home.rotate_epoch_key()
        cert = key.certify(self.officer)
        m = self.mission_or_none()
        if m is not None:
            with self._tx():
                self._store_cert(m, cert)
                for o in m.roster.officers:
                    if not equal(o.officer_id, self.officer.officer_id):
                        self._send_joint(joint.JointKind.EPOCH_CERT, o.officer_id, cert.encode())
        return cert

    def erase_epoch_keys(self, keep: int = 1) -> int:
        return self.home.erase_epoch_keys(keep)

    def _store_cert(self, m: MissionState, cert: EpochKeyCert) -> None:
        certs = [c for c in m.epoch_certs() if not equal(c.officer_id, cert.officer_id)]
        self._put("mission", b"state", replace(m, certs=tuple(c.encode() for c in (*certs, cert))))

    def _on_epoch_cert(self, sender: bytes, cert: EpochKeyCert) -> None:
        m = self.mission()
        if not equal(cert.officer_id, sender):
            return
        cert.verify(m.roster.officer(sender))
        if cert.epoch > m.cert_of(sender).epoch:
            self._store_cert(m, cert)

    async def _poll_joint(self, relay: RelayClient, report: SyncReport) -> None:
        m = self.mission()
        for o in m.roster.officers:
            if not equal(o.officer_id, self.officer.officer_id):
                await self._poll_from(relay, o.officer_id, report)

    async def _poll_from(self, relay: RelayClient, sender: bytes, report: SyncReport) -> None:
        """Fetch and act on every complete object ``sender`` left in our mailbox."""
        m = self.mission()
        name = b"in" + sender
        start = self._counter(name)
        cells: list[tuple[bytes, bytes]] = []
        # Fetch consecutive slots until the first empty one (objects span many cells).
        while len(cells) < MAX_MAILBOX_CELLS:
            base = start + len(cells)
            slots = [
                joint.mailbox_slot(m.secret, sender, self.officer.officer_id, base + i)
                for i in range(FETCH_WINDOW)
            ]
            answer = await relay.fetch_logged(slots)
            got = answer.cells
            if answer.signed_head is not None:
                await self._check_answer(m.relay_url, relay, m.tenant_id, answer, report)
            else:
                self.log.unproved(m.relay_url, report.alarms)
            for slot in slots:
                if slot not in got:
                    break
                cells.append((slot, got[slot]))
            else:
                continue
            break
        chunks: list[joint.Chunk] = []
        for i, (slot, cell) in enumerate(cells):
            try:
                chunk = joint.open_cell(cell, slot, m.secret, m.cell_size)
            except RemoteProtocolError:
                report.alarms.append("a mailbox cell failed to open (tampered?) and was skipped")
                self._set_counter(name, start + i + 1)
                chunks = []
                continue
            chunks.append(chunk)
            if len(chunks) < chunk.count:
                continue
            try:
                sealed = joint.join_chunks(chunks)
                obj = joint.open_object(
                    sealed, self.officer, self.home.epoch_keys, m.roster, m.mission_id
                )
                with self._tx():
                    note = self._on_joint(obj)
                    self._set_counter(name, start + i + 1)
                if note:
                    report.alarms.append(note)
                report.joint_objects += 1
            except RemoteProtocolError:
                report.alarms.append("a mailbox object failed to verify and was skipped")
                self._set_counter(name, start + i + 1)
            chunks = []

    # --- rounds ---------------------------------------------------------------------

    async def _flush(self, report: SyncReport) -> None:
        pending = self.vault.pending("net_out")
        report.waiting = len(pending)
        clients: dict[str, RelayClient] = {}
        try:
            for entry_id, raw in pending:
                out = statecodec.loads(NetOut, raw)
                if out.relay_url not in clients:
                    clients[out.relay_url] = await self._relay(
                        out.relay_url, None, None
                    ).__aenter__()
                client = clients[out.relay_url]
                receipt = await client.deposit(out.tenant_id, out.slot, out.cell)
                # Done only once its receipt is checked: a relay that cannot be
                # reached for the proofs gets the same (idempotent) deposit again.
                proved = None
                if receipt.log is None or receipt.signed_head is None:
                    self.log.unproved(out.relay_url, report.alarms)
                else:
                    proved = await self.log.check(
                        out.relay_url,
                        client,
                        receipt.signed_head,
                        [(out.tenant_id, out.slot, out.cell, receipt.log)],
                        report.alarms,
                    )
                with self._tx():
                    if proved and out.channel_id and receipt.log is not None:
                        self._note_deposit(out, receipt.cell_id, receipt.log)
                    self.vault.mark_done("net_out", entry_id)
                report.deposited += 1
                report.waiting -= 1
        finally:
            for c in clients.values():
                await c.aclose()

    async def sync(self, rounds: int = 1) -> SyncReport:
        """Run ``rounds`` rounds now: deposit, fetch, verify, and exchange joint objects.

        The runner's cells for the rounds are produced and persisted even when
        the relay cannot be reached: they wait in the outbox and go out, each
        exactly once, at a later sync.
        """
        report = SyncReport()
        m = self.mission()
        relay_errors = (RelayUnavailable, RelayRefused)
        try:
            await self._flush(report)
            async with self._relay(m.relay_url, m.tenant_id, m.credential) as relay:
                await self._poll_joint(relay, report)
        except relay_errors as exc:
            report.relay_error = str(exc)
        if self.is_runner:
            for rec in self.channels():
                self._produce_cells(rec.channel_id, rounds)
        if report.relay_error is None:
            try:
                await self._flush(report)
                async with self._relay(m.relay_url, m.tenant_id, m.credential) as relay:
                    for rec in self.channels():
                        await self._receive(relay, rec.channel_id, rounds, report)
                await self._flush(report)
            except relay_errors as exc:
                report.relay_error = str(exc)
        report.waiting = len(self.vault.pending("net_out"))
        return report

    def _note_deposit(self, out: NetOut, cell_id: bytes, place: CellLog) -> None:
        """Remember our latest logged deposit on a channel, to name it to the peer."""
        old: DepositNote | None = self._get("log_notes", out.channel_id, DepositNote)
        if old is None or old.round < out.round:
            note = DepositNote(out.round, cell_id, place.leaf_index, place.batch_position)
            self._put("log_notes", out.channel_id, note)

    def _produce_cells(self, channel_id: bytes, rounds: int) -> None:
        rec: ChannelRecord = self._get("channels", channel_id, ChannelRecord)
        peer = self._peer_card(rec.peer_mission)
        for _ in range(rounds):
            ep = self._endpoint(channel_id)
            note: DepositNote | None = self._get("log_notes", channel_id, DepositNote)
            r = ep.next_send_round
            slot, cell = ep.cell_for_round(
                r, secrets.token_bytes(12), self.log.gossip(peer.relay_url, note)
            )
            out = NetOut(peer.relay_url, peer.tenant_id, slot, cell, channel_id, r)
            with self._tx():
                self._save_endpoint(channel_id, ep)
                self.vault.append("net_out", statecodec.dumps(out))

    async def _check_answer(
        self, url: str, relay: RelayClient, tenant_id: str, answer: FetchAnswer, report: SyncReport
    ) -> tuple[dict[bytes, EntryProof], bool] | None:
        """Prove a fetch answer's cells and check its absence statement.

        Returns the cells' proofs and whether the absence statement holds, or
        None when the answer could not be checked (an alarm says why).
        """
        assert answer.signed_head is not None
        checks: list[CellCheck] = []
        for slot, cell in answer.cells.items():
            place = answer.places.get(slot)
            if place is None:
                self.log.alarm(
                    url, "the relay served a cell without its place in the log", report.alarms
                )
            else:
                checks.append((tenant_id, slot, cell, place))
        proved = await self.log.check(url, relay, answer.signed_head, checks, report.alarms)
        if proved is None:
            return None
        if answer.spent:
            # This client never acknowledges: a relay that says so hides cells
            # without signing that they are absent.
            text = "the relay says slots were acknowledged that this device never acknowledged"
            self.log.alarm(url, text, report.alarms)
        empty = set(answer.asked) - set(answer.cells) - answer.spent
        absent_ok = self.log.check_absence(
            url, answer.signed_head, answer.absent, tenant_id, empty, report.alarms
        )
        return proved, absent_ok

    async def _receive(
        self, relay: RelayClient, channel_id: bytes, rounds: int, report: SyncReport
    ) -> None:
        ep = self._endpoint(channel_id)
        first = ep.next_recv_round
        window = max(rounds, 1) + FETCH_WINDOW
        slots = {r: ep.slot_to_fetch(r) for r in range(first, first + window)}
        wanted = list(slots.values())
        got: dict[bytes, bytes] = {}
        seen: dict[bytes, SlotSeen] = {}
        m = self.mission()
        for i in range(0, len(wanted), MAX_FETCH):  # the relay caps one fetch
            answer = await relay.fetch_logged(wanted[i : i + MAX_FETCH])
            got.update(answer.cells)
            if answer.signed_head is None:
                self.log.unproved(m.relay_url, report.alarms)
                continue
            checked = await self._check_answer(m.relay_url, relay, m.tenant_id, answer, report)
            if checked is None:
                continue
            proved, absent_ok = checked
            for slot in answer.asked:
                if slot in proved:
                    seen[slot] = SlotSeen(slot, answer.signed_head, proved[slot])
                elif absent_ok and answer.absent is not None and slot not in answer.cells:
                    seen[slot] = SlotSeen(slot, answer.signed_head, None, answer.absent)
        present = [r for r, s in slots.items() if s in got]
        if not present:
            await self._on_gossip(relay, channel_id, report)
            return
        last = max(present)
        with self._tx():
            for r in range(first, last + 1):
                if slots[r] in seen:
                    self._put("log_seen", _round_key(channel_id, r), seen[slots[r]])
        if len(wanted) <= MAX_FETCH:  # one snapshot
            # The peer deposits its rounds in order, one cell each: a round the
            # relay calls empty while it serves a later one was dropped.
            for r in range(first, last):
                if slots[r] not in got and slots[r] in seen:
                    text = (
                        f"the relay says the peer's cell of round {r} is not there while it "
                        "serves later rounds: a dropped cell"
                    )
                    self.log.alarm(m.relay_url, text, report.alarms)
        for r in range(first, last + 1):
            self._receive_round(channel_id, r, got.get(slots[r]), report)
            report.rounds_received += 1
        await self._on_gossip(relay, channel_id, report)

    async def _on_gossip(self, relay: RelayClient, channel_id: bytes, report: SyncReport) -> None:
        """Compare the peer's view of our relay's log with ours (relay-log-v1 §5).

        The gossip of received rounds waits in the vault (``gossip_due``) until
        it is checked, so a relay that cannot be reached meanwhile delays the
        checks and loses none. The peer's heads only grow, each consistent with
        the last (its own monitor sees to that), so comparing its largest with
        ours covers the others; every note is checked.
        """
        m = self.mission()
        due = [
            (entry_id, statecodec.loads(GossipDue, raw))
            for entry_id, raw in self.vault.pending("gossip_due")
        ]
        due = [(i, g) for i, g in due if g.channel_id == channel_id]
        if due:
            gossip = [g.gossip for _, g in due]
            largest = max(gossip, key=lambda g: SignedHead.decode(g.head).head.size)
            await self.log.compare(m.relay_url, relay, largest.head, report.alarms)
            for note in {g.note for g in gossip if g.note is not None}:
                key = _round_key(channel_id, note.round)
                seen: SlotSeen | None = self._get("log_seen", key, SlotSeen)
                if seen is not None:
                    await self.log.check_note(
                        m.relay_url, relay, m.tenant_id, seen, note, report.alarms
                    )
            with self._tx():
                for entry_id, _ in due:
                    self.vault.mark_done("gossip_due", entry_id)
        # What the relay served more than SEEN_ROUNDS rounds ago is no longer needed.
        horizon = self._endpoint(channel_id).next_recv_round - SEEN_ROUNDS
        with self._tx():
            for key, _ in self.vault.items("log_seen"):
                if key[:-8] == channel_id and int.from_bytes(key[-8:], "big") < horizon:
                    self.vault.delete("log_seen", key)

    def _receive_round(
        self, channel_id: bytes, r: int, cell: bytes | None, report: SyncReport
    ) -> None:
        """Process one round; the peer's gossip it carried waits in ``gossip_due``."""
        rec: ChannelRecord = self._get("channels", channel_id, ChannelRecord)
        ep = self._endpoint(channel_id)
        try:
            res = ep.receive(r, cell)
        except GapDetected as exc:
            alarm = f"round {r}: {exc}"
            if ep.partial:
                ep.partial = []
                try:
                    res = ep.receive(r, cell)
                except BackchannelError:
                    res = ep.receive(r, None)
            else:
                res = ep.receive(r, None)
            self._alarm(rec, alarm, report)
            rec = self._get("channels", channel_id, ChannelRecord)
        except (
            AuthenticationError,
            TranscriptError,
            RemoteProtocolError,
            LocalProtocolError,
        ) as exc:
            self._alarm(rec, f"round {r}: {exc}", report)
            rec = self._get("channels", channel_id, ChannelRecord)
            res = ep.receive(r, None)
        anns = dict(rec.announcements)
        with self._tx():
            for msg in res.messages:
                if msg.announcement:
                    anns[msg.header.epoch_id] = msg.announcement
                item = InboxRecord(msg.message_id, channel_id, msg.encode(), r)
                self._put("inbox", msg.message_id, item)
                report.messages.append(msg.message_id.hex())
            if res.delivered:
                for d in self._all("drafts", DraftRecord):
                    if (
                        d.channel_id == channel_id
                        and d.seq in res.delivered
                        and d.outgoing.state is SendState.QUEUED
                    ):
                        self._put("drafts", d.draft_id, replace(d, outgoing=d.outgoing.deliver()))
                report.delivered.extend(res.delivered)
            self._put("channels", channel_id, replace(rec, announcements=tuple(anns.items())))
            self._save_endpoint(channel_id, ep)
            if res.gossip is not None:
                self.vault.append("gossip_due", statecodec.dumps(GossipDue(channel_id, res.gossip)))

    # --- the relay's transparency log ------------------------------------------------

    def relay_alarms(self) -> list[str]:
        return self.log.alarms()

    def relay_evidence(self) -> list[bytes]:
        """The proofs of relay misbehaviour this device has kept (each verifies offline)."""
        return self.log.evidence()

    def _alarm(self, rec: ChannelRecord, text: str, report: SyncReport) -> None:
        report.alarms.append(text)
        self._put("channels", rec.channel_id, replace(rec, alarms=(*rec.alarms, text)))

    def status(self) -> dict[str, Any]:
        m = self.mission_or_none()
        out: dict[str, Any] = {
            "officer": self.officer.name,
            "officer_id": self.officer.officer_id.hex(),
            "mission": m.name if m else None,
            "runner": self.is_runner if m else None,
            "waiting_cells": len(self.vault.pending("net_out")),
            "relay_alarms": self.relay_alarms(),
            "relay_evidence": [
                {"kind": evidence_kind(blob), "bytes": len(blob)} for blob in self.relay_evidence()
            ],
            "channels": [],
        }
        for rec in self.channels():
            ep = self._endpoint(rec.channel_id)
            peer = self.peer(rec.peer_mission)
            out["channels"].append(
                {
                    "channel_id": rec.channel_id.hex(),
                    "peer": peer.name,
                    "sent": ep.transcript.next_seq - 1,
                    "received": ep.transcript.received_seq,
                    "delivered": ep.delivered_seq,
                    "next_send_round": ep.next_send_round,
                    "next_receive_round": ep.next_recv_round,
                    "pending_cells": ep.pending_cells,
                    "alarms": list(rec.alarms),
                }
            )
        return out


def _one(items: list[_T], key: Callable[[_T], bytes], prefix: str, what: str, cmd: str) -> _T:
    p = prefix.lower()
    hits = [i for i in items if p and key(i).hex().startswith(p)]
    if len(hits) != 1:
        raise ConfigError(f"no single {what} matches {prefix!r}; see `backchannel {cmd}`")
    return hits[0]


@dataclass(frozen=True)
class GossipDue:
    """The peer's gossip from a received round, waiting to be checked."""

    channel_id: bytes
    gossip: Gossip


def _check_relay_url(url: str) -> None:
    """A relay address goes into cards and alarms: it must carry no secret."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the relay address must be http(s)://host[:port]; got {parts.scheme!r}")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError(
            "the relay address must not hold a user name, password, query or fragment: "
            "it is written into the mission card the peer receives"
        )


def _round_key(channel_id: bytes, round_no: int) -> bytes:
    return channel_id + max(round_no, 0).to_bytes(8, "big")


def _key_epochs(announcement: bytes) -> set[tuple[bytes, int]]:
    return {(oid, e) for oid, e, _ in Announcement.decode(announcement).boxes}


@dataclass(frozen=True)
class _EndpointData:
    terms: ch.ChannelTerms
    local_mission: bytes
    own_roster: Roster
    peer_roster: Roster
    chain: ch.SlotChain
    transcript: Transcript
    next_send_round: int
    next_recv_round: int
    outbox: list[Fragment]
    partial: list[Fragment]
    receipt_due: Receipt | None
    delivered_seq: int
    sends: bool


_ENDPOINT_FIELDS = tuple(f for f in Endpoint.__dataclass_fields__ if f != "officer")
