"""What every capability of a device shares: its home, its vault, its officer, its clock.

:class:`Device` holds the small vault helpers and the lookups that sending,
receiving, the mailbox and the round engine all need (the mission, peers,
channels and their endpoint state). It does no network I/O: only the round
driver (:mod:`backchannel.client.driver`) talks to a relay.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from backchannel.client import statecodec, transcripts
from backchannel.client.cards import MissionCard
from backchannel.client.home import Home
from backchannel.client.log_watch import LogWatch
from backchannel.client.mission import MissionState
from backchannel.client.records import ChannelRecord, DraftRecord, InboxRecord, PeerRecord
from backchannel.client.relay_client import RelayClient
from backchannel.client.transcripts import TRANSCRIPTS
from backchannel.crypto.kem import KemPrivateKey
from backchannel.crypto.primitives import equal
from backchannel.errors import ConfigError, CorruptKeystore, RosterError
from backchannel.protocol import channel as ch
from backchannel.protocol.cells import Fragment, Receipt
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.identity import EpochKeyCert, Officer, newest_certs
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.rekeying import Rekeying
from backchannel.protocol.roster import Roster
from backchannel.protocol.states import SendState
from backchannel.protocol.transcript import Transcript

if TYPE_CHECKING:
    from backchannel.client.mailbox import Mailbox
    from backchannel.protocol.joint import JointKind

RelayFactory = Callable[[str, str | None, str | None], AbstractAsyncContextManager[RelayClient]]
RelayKey = tuple[str, str | None, str | None]

_T = TypeVar("_T")


def default_relay_factory(
    url: str, tenant: str | None, credential: str | None
) -> AbstractAsyncContextManager[RelayClient]:
    return RelayClient(url, tenant, credential)


def new_id() -> bytes:
    return secrets.token_bytes(16)


#: The rosters channels' states name (key: the roster's hash), kept apart from
#: ``endpoints`` too: a roster changes with a roster change, the rest of a
#: channel's state every round, and the rosters were most of its bytes.
ROSTERS = "rosters"
#: The peer's epoch key announcements (key: channel id + epoch id), each kept
#: once: a message of an epoch may come without the announcement that an
#: earlier one carried, and a channel sees a new epoch every day or so.
ANNOUNCEMENTS = "announcements"
#: The drafts not yet delivered or refused (key: channel id + draft id; value:
#: the draft id). Rounds read these, not the drafts table, which keeps every
#: message ever sent.
OPEN_DRAFTS = "drafts_open"
_OPEN_DRAFTS_INDEXED = b"drafts-open-indexed"
_OPEN = frozenset({SendState.DRAFT, SendState.SEALED, SendState.COSIGNED, SendState.QUEUED})


class Device:
    """One officer's device: the state every capability reads and writes."""

    #: The mission mailbox (set by the facade, which wires the capabilities together).
    mailbox: Mailbox

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
        #: Each channel's endpoint state last read, with the bytes it was decoded
        #: from (it holds lists, so the vault does not keep it decoded).
        self._endpoint_read: dict[bytes, tuple[bytes, _EndpointData]] = {}
        #: Each roster's hash, by the roster object it was taken of (the object
        #: is held, so its id stays its own): a channel's state names the same
        #: rosters round after round.
        self._roster_refs: dict[int, tuple[Roster, bytes]] = {}
        #: Each channel's transcript last read or kept, with its head record's
        #: bytes (equal bytes, the same transcript: ``client/transcripts.py``).
        self._transcript_read: dict[bytes, tuple[bytes, Transcript]] = {}
        #: Relay clients kept open for the rounds of one session (see Driver.relay_session).
        self._pool: dict[RelayKey, tuple[AbstractAsyncContextManager[RelayClient], RelayClient]]
        self._pool = {}
        self._pooling = False
        #: Peer cards verified, by (text, pinned mission id): they never change.
        self._cards: dict[tuple[str, bytes], MissionCard] = {}

    # --- small vault helpers -------------------------------------------------

    def _get(self, table: str, key: bytes, tp: type[Any]) -> Any:
        raw = self.vault.get(table, key)
        return None if raw is None else self._load(table, key, raw, tp)

    def _put(self, table: str, key: bytes, value: Any) -> None:
        self.vault.put(table, key, statecodec.dumps(value))

    def _all(self, table: str, tp: type[Any]) -> list[Any]:
        return [self._load(table, k, v, tp) for k, v in self.vault.items(table)]

    def _load(self, table: str, key: bytes, raw: bytes, tp: type[Any]) -> Any:
        """The record ``raw`` decoded; a record of an immutable type is decoded
        once while it stays unchanged (the vault keeps it beside the value)."""
        if statecodec.immutable(tp):
            return self.vault.decoded(table, key, raw, tp, statecodec.loads)
        return statecodec.loads(tp, raw)

    def _put_draft(self, draft: DraftRecord) -> None:
        """Store ``draft``, and keep :data:`OPEN_DRAFTS` in step with its state.

        In this order, so that outside a transaction the index can only ever
        name a draft too many (its readers check the state), never miss one.
        """
        key = draft.channel_id + draft.draft_id
        if draft.outgoing.state not in _OPEN:
            self._put("drafts", draft.draft_id, draft)
            self.vault.delete(OPEN_DRAFTS, key)
            return
        if self.vault.get(OPEN_DRAFTS, key) is None:
            self.vault.put(OPEN_DRAFTS, key, draft.draft_id)
        self._put("drafts", draft.draft_id, draft)

    def _open_drafts(self) -> list[DraftRecord]:
        """The drafts not yet delivered or refused, in no particular order.

        Read through :data:`OPEN_DRAFTS`, so a round costs the same however
        many messages went before; a home from before that index builds it
        at its first read.
        """
        if not self._counter(_OPEN_DRAFTS_INDEXED):
            with self._tx():
                for d in self._all("drafts", DraftRecord):
                    if d.outgoing.state in _OPEN:
                        self.vault.put(OPEN_DRAFTS, d.channel_id + d.draft_id, d.draft_id)
                self._set_counter(_OPEN_DRAFTS_INDEXED, 1)
        held = (self._get("drafts", i, DraftRecord) for _, i in self.vault.items(OPEN_DRAFTS))
        return [d for d in held if d is not None]

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[None]:
        with self.vault.transaction(durable=durable):
            yield

    def _counter(self, name: bytes) -> int:
        raw = self.vault.get("counters", name)
        return int(raw) if raw else 0

    def _set_counter(self, name: bytes, value: int) -> None:
        self.vault.put("counters", name, str(value).encode())

    def _send_joint(self, kind: JointKind, recipient: bytes, body: bytes) -> None:
        """Queue an object for a colleague; the next rounds carry it."""
        self.mailbox.send(kind, recipient, body)

    # --- mission ---------------------------------------------------------------

    def mission_or_none(self) -> MissionState | None:
        m: MissionState | None = self._get("mission", b"state", MissionState)
        return m

    def mission(self) -> MissionState:
        m = self.mission_or_none()
        if m is None:
            raise ConfigError("this officer has no mission yet; see `backchannel mission --help`")
        return m

    @property
    def is_runner(self) -> bool:
        return equal(self.mission().runner_id, self.officer.officer_id)

    def colleagues(self) -> list[bytes]:
        """The officer ids of the mission's other officers, in roster order."""
        me = self.officer.officer_id
        return [o.officer_id for o in self.mission().roster.officers if not equal(o.officer_id, me)]

    def _roster_at(self, version: int) -> Roster:
        """Our roster as it stood at ``version`` (messages name the version they used)."""
        for signed in self.mission().signed_chain():
            if signed.roster.version == version:
                return signed.roster
        raise RosterError("a message names a roster version we do not have")

    def _card_relay_keys(self, url: str) -> set[bytes]:
        """Relay-key fingerprints that the mission cards we hold, and our policy's
        fallback relay, state for ``url``."""
        out: set[bytes] = set()
        m = self.mission_or_none()
        if m is not None and m.policy.fallback.url == url:
            out.add(m.policy.fallback.key_fingerprint)
        for rec in self.peers():
            card = self._card(rec.card, rec.mission_id)
            if card.relay_url == url and any(card.relay_key):
                out.add(card.relay_key)
        return out

    # --- peers and channels ------------------------------------------------------

    def peers(self) -> list[PeerRecord]:
        return self._all("peers", PeerRecord)

    def peer(self, mission_id: bytes) -> PeerRecord:
        rec: PeerRecord | None = self._get("peers", mission_id, PeerRecord)
        if rec is None:
            raise ConfigError("unknown peer mission; add its card with `backchannel peer add`")
        return rec

    def _kem_keys(self) -> tuple[KemPrivateKey, ...]:
        """This officer's epoch decryption keys, newest first."""
        return tuple(k.private_key for k in reversed(self.home.epoch_keys))

    def _peer_card(self, mission_id: bytes) -> MissionCard:
        rec = self.peer(mission_id)
        if not rec.confirmed:
            raise ConfigError(
                "the peer's safety number is not confirmed; run `backchannel peer confirm` first"
            )
        card = self._card(rec.card, mission_id)
        return _with_learned(card, rec.certs) if rec.certs else card

    def _card(self, text: str, mission_id: bytes) -> MissionCard:
        """A stored peer card, decoded and verified once per text (a round reads it often)."""
        key = (text, mission_id)
        card = self._cards.get(key)
        if card is None:
            card = MissionCard.decode(text, pinned_mission_id=mission_id)
            self._cards[key] = card
        return card

    def channels(self) -> list[ChannelRecord]:
        return self._all("channels", ChannelRecord)

    def channel(self, channel_id: bytes) -> ChannelRecord:
        rec: ChannelRecord | None = self._get("channels", channel_id, ChannelRecord)
        if rec is None:
            raise ConfigError("unknown channel")
        return rec

    def _save_endpoint(self, channel_id: bytes, ep: Endpoint) -> None:
        """Store the channel's state; its transcript and its rosters apart, and
        only when they moved.

        The transcript holds a hash for every message either way, the rosters
        each officer's keys, and the rest of the state changes every round:
        stored together, every round would write them all again.
        """
        data: dict[str, Any] = {f: getattr(ep, f) for f in _ENDPOINT_FIELDS}
        t = ep.transcript
        data["transcript"] = replace(t, sent=(), received=())
        rosters = (ep.own_roster, ep.peer_roster, ep.peer_rekey_roster, *ep.peer_past)
        refs = tuple(b"" if r is None else self._roster_ref(r) for r in rosters)
        data.update(own_roster=None, peer_roster=None, peer_rekey_roster=None, peer_past=())
        record = statecodec.dumps(_EndpointData(**data, roster_refs=refs))
        new = {
            ref: r
            for ref, r in zip(refs, rosters, strict=True)
            if r is not None and self.vault.get(ROSTERS, ref) is None
        }
        held, in_parts = (
            self._transcript_kept(channel_id)
            if self.vault.get(TRANSCRIPTS, channel_id) is not None
            else (None, False)
        )
        moved = not (held is t or held == t)
        if not moved and not new:
            self.vault.put("endpoints", channel_id, record)
            return
        with self._tx():
            for ref, roster in new.items():
                self._put(ROSTERS, ref, roster)
            if moved:
                transcripts.keep(self.vault, channel_id, t, held if in_parts else None)
                self._transcript_read.pop(channel_id, None)
            self.vault.put("endpoints", channel_id, record)

    def _transcript_kept(self, channel_id: bytes) -> tuple[Transcript, bool]:
        """The channel's transcript kept apart, and whether it is kept in parts."""
        raw, head = transcripts.read_head(self.vault, channel_id)
        hit = self._transcript_read.get(channel_id)
        if hit is None or hit[0] != raw:
            hit = (raw, transcripts.read(self.vault, channel_id, raw, head))
            self._transcript_read[channel_id] = hit
        return hit[1], head is not None

    def _roster_ref(self, roster: Roster) -> bytes:
        """The key ``roster`` is stored under in :data:`ROSTERS`: its hash."""
        hit = self._roster_refs.get(id(roster))
        if hit is not None and hit[0] is roster:
            return hit[1]
        ref = roster.hash
        if len(self._roster_refs) >= 256:
            self._roster_refs.clear()
        self._roster_refs[id(roster)] = (roster, ref)
        return ref

    def _roster(self, ref: bytes) -> Roster:
        roster: Roster | None = self._get(ROSTERS, ref, Roster)
        if roster is None:
            raise CorruptKeystore(
                "a roster a channel names is missing from this home; restore it from backup"
            )
        self._roster_refs[id(roster)] = (roster, ref)
        return roster

    def _endpoint(self, channel_id: bytes) -> Endpoint:
        raw = self.vault.get("endpoints", channel_id)
        if raw is None:
            raise ConfigError("unknown channel")
        cached = self._endpoint_read.get(channel_id)
        if cached is None or cached[0] != raw:
            cached = (raw, statecodec.loads(_EndpointData, raw))
            self._endpoint_read[channel_id] = cached
        d = cached[1]
        # The endpoint changes its two lists in place: it gets its own copies.
        fields = {f: getattr(d, f) for f in _ENDPOINT_FIELDS}
        if not d.transcript.received:  # kept apart (a transcript always holds T[0])
            fields["transcript"] = self._transcript_kept(channel_id)[0]
        if d.roster_refs:  # kept apart (a state kept before that holds them itself)
            own, peer, rekey, *past = d.roster_refs
            fields["own_roster"], fields["peer_roster"] = self._roster(own), self._roster(peer)
            fields["peer_rekey_roster"] = self._roster(rekey) if rekey else None
            fields["peer_past"] = tuple(map(self._roster, past))
        if fields["own_roster"] is None or fields["peer_roster"] is None:
            raise CorruptKeystore("a channel's state names no roster; restore it from backup")
        fields["outbox"], fields["partial"] = list(d.outbox), list(d.partial)
        fields["held"] = list(d.held)
        return Endpoint(officer=self.officer, **fields)

    def _take_in(
        self, channel_id: bytes, messages: Iterable[SealedMessage], round_no: int
    ) -> list[str]:
        """Keep messages a channel accepted in the inbox, with the epoch key
        announcements they carry; the ids (hex) of those kept. Inside a transaction."""
        rec: ChannelRecord = self._get("channels", channel_id, ChannelRecord)
        if rec.announcements:  # kept inside the channel's record before: moved apart
            for epoch_id, ann in rec.announcements:
                self._keep_announcement(channel_id, epoch_id, ann)
            self._put("channels", channel_id, replace(rec, announcements=()))
        kept = []
        for msg in messages:
            if msg.announcement:
                self._keep_announcement(channel_id, msg.header.epoch_id, msg.announcement)
            item = InboxRecord(
                msg.message_id, channel_id, msg.encode(), round_no, deniable=msg.deniable
            )
            self._put("inbox", msg.message_id, item)
            kept.append(msg.message_id.hex())
        return kept

    def _keep_announcement(self, channel_id: bytes, epoch_id: bytes, ann: bytes) -> None:
        if self.vault.get(ANNOUNCEMENTS, channel_id + epoch_id) != ann:
            self.vault.put(ANNOUNCEMENTS, channel_id + epoch_id, ann)

    def _announcement(self, channel_id: bytes, epoch_id: bytes) -> bytes:
        """The announcement of the peer's epoch ``epoch_id`` on the channel, or empty."""
        ann = self.vault.get(ANNOUNCEMENTS, channel_id + epoch_id)
        if ann is not None:
            return ann
        rec: ChannelRecord = self._get("channels", channel_id, ChannelRecord)
        return dict(rec.announcements).get(epoch_id, b"")  # a record kept before

    def _announcements(self, channel_id: bytes) -> tuple[tuple[bytes, bytes], ...]:
        """Every announcement kept for the channel: (epoch id, announcement)."""
        n = len(channel_id)
        return tuple((k[n:], v) for k, v in self.vault.items(ANNOUNCEMENTS) if k[:n] == channel_id)

    def _alarm(self, rec: ChannelRecord, text: str, alarms: list[str]) -> None:
        """Record an alarm on a channel (shown by ``status``) and report it."""
        alarms.append(text)
        fresh = self.channel(rec.channel_id)
        self._put("channels", rec.channel_id, replace(fresh, alarms=(*fresh.alarms, text)))


def one(items: list[_T], key: Callable[[_T], bytes], prefix: str, what: str, cmd: str) -> _T:
    """The one item whose id (hex) starts with ``prefix``."""
    p = prefix.lower()
    hits = [i for i in items if p and key(i).hex().startswith(p)]
    if len(hits) != 1:
        raise ConfigError(f"no single {what} matches {prefix!r}; see `backchannel {cmd}`")
    return hits[0]


@dataclass(frozen=True)
class _EndpointData:
    terms: ch.ChannelTerms
    local_mission: bytes
    #: None where :attr:`roster_refs` names the rosters (kept in :data:`ROSTERS`).
    own_roster: Roster | None
    peer_roster: Roster | None
    chain: ch.SlotChain
    transcript: Transcript
    next_send_round: int
    next_recv_round: int
    outbox: list[Fragment]
    partial: list[Fragment]
    receipt_due: Receipt | None
    delivered_seq: int
    sends: bool
    #: Empty for channels kept before deniable channels existed (for the record).
    mac_root: bytes = field(default=b"", repr=False)
    #: Empty for channels kept before a peer's roster could move under a message.
    peer_past: tuple[Roster, ...] = ()
    held: list[bytes] = field(default_factory=list)
    peer_roster_seen: int = 0
    #: None and empty for channels kept before channels could be re-keyed.
    rekeying: Rekeying | None = None
    rekey_held: bytes = b""
    rekey_held_round: int = 0
    peer_rekey_roster: Roster | None = None
    #: Empty for channels kept before a re-key of ours could wait for another.
    rekey_next: bytes = b""
    rekey_next_seed: bytes = field(default=b"", repr=False)
    peer_part: bytes = field(default=b"", repr=False)
    moving: tuple[bytes, ...] = ()
    #: False for channels kept before a device could take over sending.
    resuming: bool = False
    #: The hashes of the rosters, kept in :data:`ROSTERS`: own, peer, the
    #: peer's a re-key named (empty: none), then :attr:`peer_past`. Empty for
    #: a state that holds its rosters itself (kept before, or a welcome's).
    roster_refs: tuple[bytes, ...] = ()


def endpoint_data(ep: Endpoint) -> _EndpointData:
    """A channel's whole state, rosters and transcript inside (what a welcome carries)."""
    return _EndpointData(**{f: getattr(ep, f) for f in _ENDPOINT_FIELDS})


_ENDPOINT_FIELDS = tuple(f for f in Endpoint.__dataclass_fields__ if f != "officer")


def _with_learned(card: MissionCard, learned: tuple[bytes, ...]) -> MissionCard:
    """The card with each officer's newest epoch key: its own or one his device
    announced in a channel since (``protocol/key_announce.py``). Officers the
    card does not name are left out: they come with the card that adds them."""
    return replace(card, certs=newest_certs(card.certs, map(EpochKeyCert.decode, learned)))
