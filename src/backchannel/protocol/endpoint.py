"""One device's sans-I/O engine for one channel: rounds in, cells out.

Like h11's ``Connection``: the caller owns the clock, the randomness and the
network. Each round it asks :meth:`Endpoint.cell_for_round` for the one cell
to deposit (a fragment of a queued message, or cover, with a receipt when one
is due), persists it, deposits it, fetches the peer's slot of a round and
feeds the bytes (or ``None`` when the slot was empty) to
:meth:`Endpoint.receive`. State changes only when a call succeeds: a tampered,
replayed or forged cell raises and leaves the endpoint as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from backchannel.crypto.kem import KemPrivateKey
from backchannel.crypto.primitives import equal
from backchannel.errors import (
    AuthenticationError,
    DecodeError,
    GapDetected,
    LocalProtocolError,
    PeerRosterAhead,
    RemoteProtocolError,
    SignatureError,
)
from backchannel.protocol import cells
from backchannel.protocol import deniable as deniable_mod
from backchannel.protocol import rekeying as rkg
from backchannel.protocol.channel import ChannelTerms, RoundKeys, SlotChain, direction_of
from backchannel.protocol.endpoint_control import ControlObjects
from backchannel.protocol.identity import EpochKeyCert, Officer
from backchannel.protocol.message import Header, SealedMessage
from backchannel.protocol.misbehaviour import Gossip
from backchannel.protocol.payload import MessageKind
from backchannel.protocol.roster import Roster
from backchannel.protocol.sealing import (
    SendEpoch,
    ready_to_send,
    valid_signers,
    verify_signatures,
)
from backchannel.protocol.transcript import Transcript
from backchannel.protocol.transcript import step as transcript_step

#: Messages a channel keeps waiting for the peer's new roster; past this the
#: next one is refused (the peer's officers hand over their new card long before).
MAX_HELD = 256


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one fetched slot brought."""

    round: int
    empty: bool = False
    cover: bool = False
    messages: tuple[SealedMessage, ...] = ()
    delivered: tuple[int, ...] = ()  # our seqs the peer confirmed
    #: The peer's view of the relay's log, to compare with ours (relay-log-v1 §5).
    gossip: Gossip | None = None
    #: A message signed under a roster of the peer this device does not hold yet
    #: completed in this round, and nothing waited before it: it waits
    #: (:attr:`Endpoint.held`), with every message after it, for the peer's new
    #: card. The ones behind it wait without a word.
    held: SealedMessage | None = None
    #: What this round did to the channel's keys, in words (``protocol/rekey.py``):
    #: the peer re-keyed it, acknowledged our re-key, or its re-key waits.
    rekey: str = ""
    #: Epoch keys the peer's officers announced, each checked (``protocol/key_announce.py``).
    keys: tuple[EpochKeyCert, ...] = ()
    #: The peer's signed anchor of its audit log, checked (``protocol/audit_anchor.py``).
    anchor: bytes = b""


@dataclass(frozen=True, slots=True)
class Released:
    """What adopting the peer's new roster let through (:meth:`Endpoint.adopt_peer_roster`)."""

    messages: tuple[SealedMessage, ...] = ()
    #: Messages that waited and then failed their checks, each with the reason.
    refused: tuple[str, ...] = ()


@dataclass(slots=True)
class Endpoint(ControlObjects):
    terms: ChannelTerms
    local_mission: bytes
    officer: Officer
    own_roster: Roster
    peer_roster: Roster
    chain: SlotChain
    transcript: Transcript
    next_send_round: int
    next_recv_round: int
    outbox: list[cells.Fragment] = field(default_factory=list)
    partial: list[cells.Fragment] = field(default_factory=list)
    receipt_due: cells.Receipt | None = None
    delivered_seq: int = 0
    #: False on an officer's device that only receives; one device per mission sends.
    sends: bool = True
    #: The MAC root of a channel whose policy allows deniable messages (:mod:`.deniable`).
    #: Empty on a channel for the record.
    mac_root: bytes = field(default=b"", repr=False)
    #: Earlier rosters of the peer mission, kept when its card moves on: a
    #: message its officers sealed and queued before the change may still be on
    #: its way, and is accepted under the roster it was signed under.
    peer_past: tuple[Roster, ...] = ()
    #: Complete messages (encoded), in order, waiting for a newer roster of the
    #: peer than :attr:`peer_roster`: the first was signed under one, and every
    #: message after it waits behind it so the order holds.
    held: list[bytes] = field(default_factory=list)
    #: The latest peer roster version a message on this channel was accepted
    #: under: the channel never goes back to an earlier roster.
    peer_roster_seen: int = 0
    #: A move to a new slot chain in progress (``protocol/rekeying.py``).
    rekeying: rkg.Rekeying | None = None
    #: Our own re-key (encoded) and its seed, waiting for the move under way to end.
    rekey_next: bytes = b""
    rekey_next_seed: bytes = field(default=b"", repr=False)
    #: On a device that does not send: what a crossing of re-keys needs of the
    #: peer's latest one, until a removal of ours (``rekeying.Outcome.peer_part``).
    peer_part: bytes = field(default=b"", repr=False)
    #: Our queued control objects whose last piece moves the direction we send in.
    moving: tuple[bytes, ...] = ()
    #: The peer's re-key, encoded, when this device cannot check it yet (it holds
    #: an older roster of the peer than the change's previous one), and its round:
    #: nothing after that round is read until the peer's new card comes.
    rekey_held: bytes = b""
    rekey_held_round: int = 0
    #: The peer's roster its latest re-key named (checked; maybe newer than its card):
    #: our own re-keys seal to none of the officers it removed (``rekey.recipients``).
    peer_rekey_roster: Roster | None = None
    #: This device took over sending (``take_over``) and waits for the peer's
    #: answer, which says what of our history it holds: no message goes out before.
    resuming: bool = False

    def __repr__(self) -> str:
        return f"Endpoint(send={self.next_send_round}, recv={self.next_recv_round})"

    @classmethod
    def create(
        cls,
        terms: ChannelTerms,
        local_mission: bytes,
        officer: Officer,
        own_roster: Roster,
        peer_roster: Roster,
        secret: bytes,
        start_round: int,
    ) -> Endpoint:
        out = direction_of(local_mission, cls._peer(terms, local_mission))
        return cls(
            terms,
            local_mission,
            officer,
            own_roster,
            peer_roster,
            SlotChain.start(secret, start_round),
            Transcript.start(terms.channel_id, out),
            start_round,
            start_round,
            mac_root=deniable_mod.mac_root(secret) if terms.allows_deniable else b"",
        )

    @staticmethod
    def _peer(terms: ChannelTerms, local: bytes) -> bytes:
        if local == terms.mission_a:
            return terms.mission_b
        if local == terms.mission_b:
            return terms.mission_a
        raise LocalProtocolError("this mission is not part of the channel")

    @property
    def channel_id(self) -> bytes:
        return self.terms.channel_id

    @property
    def out_direction(self) -> int:
        return self.transcript.out_direction

    @property
    def in_direction(self) -> int:
        return 1 - self.transcript.out_direction

    def _keys(self, round_no: int, outgoing: bool) -> RoundKeys:
        chain = self.rekeying.chain_at(round_no, outgoing) if self.rekeying else None
        return (chain or self.chain).advance(round_no).keys()

    def _erase_past(self) -> None:
        send = self.next_send_round if self.sends else None
        self.chain, self.rekeying = rkg.settle(
            self.chain, self.rekeying, send, self.next_recv_round
        )
        self._start_waiting()

    # --- sending --------------------------------------------------------------

    def new_header(
        self,
        kind: MessageKind,
        epoch: SendEpoch,
        created_at: int,
        deniable: bool | None = None,
        after: SealedMessage | None = None,
    ) -> Header:
        """The next message's header. ``deniable`` defaults to the channel's policy
        (deniable only: True; for the record or either: False).

        ``after``: a message sealed here and not yet queued (a draft still
        awaiting its co-signatures): the new one chains on it, as the next
        ``seq``, so that drafts need not wait for each other's signatures.
        They must then be queued in that order (:meth:`queue` refuses any
        other), and a draft that is never queued takes every one chained on it
        with it.
        """
        chosen = self.terms.deniable if deniable is None else deniable
        refused = self.terms.refusal(chosen)
        if refused:
            raise LocalProtocolError(refused)
        self._not_resuming()
        t = self.transcript
        seq, prev = t.next_seq, t.sent[-1]
        if after is not None:
            h = after.header
            if not equal(h.channel_id, self.channel_id) or h.direction != self.out_direction:
                raise LocalProtocolError("a draft chains only on a draft of the same channel")
            if h.seq < t.next_seq:
                raise LocalProtocolError("a draft chains only on one not sent yet")
            seq, prev = h.seq + 1, transcript_step(h.prev_hash, after.digest)
        return Header(
            kind,
            self.channel_id,
            self.out_direction,
            seq,
            prev,
            t.received_seq,
            t.received[-1],
            self.own_roster.version,
            epoch.recipient_roster,
            epoch.epoch_id,
            epoch.next_index,
            created_at,
            chosen,
        )

    @property
    def deniable(self) -> bool:
        """Deniable only: receipts are MACs too (:attr:`ChannelTerms.deniable`)."""
        return self.terms.deniable

    def queue(self, msg: SealedMessage, threshold: int | None = None) -> SealedMessage:
        """Queue a fully co-signed message; refuses one without ``k`` signatures
        (``threshold`` instead, for a deniable message only: the mission policy's
        Track II ``k``, ``protocol/policy.py``).

        A deniable message (its header says so, under the officers' signatures)
        is checked against those signatures here (the two-person rule holds
        inside the mission), and what leaves carries the channel's MAC instead.
        The endpoint keeps neither; the caller must not keep the signed copy
        either once this returns (``deniable-v1.md`` §3: it would prove to a
        third party who wrote the message). Returns the message as it goes out.
        """
        h = msg.header
        self._not_resuming()
        if threshold is not None and not h.deniable:
            raise LocalProtocolError("only a deniable message can go out under another k")
        ready_to_send(msg, self.own_roster, threshold)
        refused = self.terms.refusal(h.deniable)
        if refused:
            raise LocalProtocolError(refused)
        if h.deniable:
            msg = deniable_mod.authenticate(msg, self.mac_root)
        transcript = self.transcript.record_sent(msg.header, msg.digest)
        frags = cells.fragment(
            msg.encode(), msg.message_id, cells.fragment_capacity(self.terms.cell_size)
        )
        self.transcript = transcript
        self.outbox.extend(frags)
        return msg

    @property
    def pending_cells(self) -> int:
        return len(self.outbox)

    def cell_for_round(
        self, round_no: int, nonce: bytes, gossip: Gossip | None = None
    ) -> tuple[bytes, bytes]:
        """The (slot, cell) this side deposits in ``round_no``. Persist it before sending.

        ``gossip`` is this side's view of the relay's log, carried to the peer.
        """
        if not self.sends:
            raise LocalProtocolError("this device only receives on this channel")
        if round_no < self.next_send_round:
            raise LocalProtocolError("that round's cell was already produced")
        frag = self.outbox[0] if self.outbox else None
        content = cells.CellContent(self.receipt_due, frag, gossip)
        # Short messages share a cell: what fits behind the first fragment goes too.
        content = content.with_more(self.outbox[1:], self.terms.cell_size)
        keys = self._keys(round_no, True)
        cell = cells.seal_cell(
            content, keys, self.channel_id, self.out_direction, self.terms.cell_size, nonce
        )
        if frag is not None:
            del self.outbox[: len(content.fragments)]
            if frag.control:
                self._control_sent(frag, round_no)
        self.receipt_due = None
        self.next_send_round = round_no + 1
        self._erase_past()
        return keys.slots[self.out_direction], cell

    # --- receiving ------------------------------------------------------------

    def _verify(self, msg: SealedMessage, seen: int | None = None) -> None:
        """A deniable message by its MAC, one for the record by ``k`` signatures; each
        only where the channel's policy allows it, and as its signed header says."""
        if msg.header.deniable != msg.deniable:
            raise AuthenticationError("the message's authenticator does not match its header")
        refused = self.terms.refusal(msg.deniable)
        if refused:
            raise AuthenticationError(refused)
        if msg.deniable:
            deniable_mod.verify(msg, self.mac_root, self.channel_id, self.in_direction)
            return
        v = msg.header.sender_roster  # never ahead of ours: such a message waits (_waits)
        if v < (self.peer_roster_seen if seen is None else seen):
            raise SignatureError(
                "message is signed under an earlier roster of the peer than one this "
                "channel already carried"
            )
        if v == self.peer_roster.version:
            verify_signatures(msg, self.peer_roster)
            return
        past = next((r for r in self.peer_past if r.version == v), None)
        if past is None:
            raise SignatureError("message is signed under another roster version")
        verify_signatures(msg, past)
        staying = {o.officer_id for o in self.peer_roster.officers}
        if not valid_signers(msg, past) & staying:
            raise SignatureError(
                "a message sealed before the peer's roster change is signed only by "
                "officers the change removed"
            )

    def _ahead(self, msg: SealedMessage) -> bool:
        """Signed under a roster of the peer newer than the one this device holds."""
        return not msg.deniable and msg.header.sender_roster > self.peer_roster.version

    def _waits(self, msg: SealedMessage, held: list[bytes]) -> bool:
        """Whether ``msg`` must wait for the peer's new roster (or behind one that does).

        Only a message one of the peer's officers known here signed may start
        the wait: anyone else who holds the channel's keys (an officer this
        side removed, say) could otherwise stop the channel with a message
        claiming a roster that never comes.
        """
        if held:
            return True
        if not self._ahead(msg):
            return False
        if not valid_signers(msg, self.peer_roster):
            raise SignatureError(
                "a message claims a newer roster of the peer, and none of the peer's "
                "officers this device knows signed it"
            )
        return True

    def adopt_peer_roster(self, rosters: Sequence[Roster]) -> Released:
        """Take the peer's newer roster (the verified chain of its new card, oldest
        first) and let through the messages that waited for it, in order.

        The rosters between the one this channel last carried and the new one are
        kept, so that what the peer queued before its change is still accepted.
        A waiting message that then fails its checks is dropped and named in
        :attr:`Released.refused`; the ones behind it are tried in turn.
        """
        new = rosters[-1]
        if new.version < self.peer_roster.version:
            raise LocalProtocolError("the peer's roster cannot go back to an earlier version")
        floor = min(self.peer_roster_seen, self.peer_roster.version)
        self.peer_past = tuple(r for r in rosters if floor <= r.version < new.version)
        self.peer_roster = new
        return self._release()

    def _release(self) -> Released:
        messages: list[SealedMessage] = []
        refused: list[str] = []
        while self.held:
            msg = SealedMessage.decode(self.held[0])
            if self._ahead(msg) and valid_signers(msg, self.peer_roster):
                break
            del self.held[0]
            if self._ahead(msg):
                # It waited on the word of an officer this roster removed (_waits).
                refused.append(
                    "a message that claims a newer roster of the peer is signed by none of "
                    "its officers any more (the change removed its signers)"
                )
                continue
            try:
                self._verify(msg)
                transcript = self.transcript.accept(msg.header, msg.digest, check_peer=self.sends)
            except RemoteProtocolError as exc:  # forged, tampered, or out of order
                refused.append(str(exc))
                continue
            self.transcript = transcript
            self._seen(msg)
            messages.append(msg)
            if self.sends:
                self.receipt_due = self._receipt(transcript)
        return Released(tuple(messages), tuple(refused))

    def _take_fragments(
        self,
        fragments: Sequence[cells.Fragment],
        transcript: Transcript,
        round_no: int,
        kem_keys: Sequence[KemPrivateKey],
    ) -> _Taken:
        """The fragments of one cell, in order, checked against a copy of the
        state: nothing is kept unless every one of them passes."""
        t = _Taken(transcript, list(self.partial), list(self.held), self.peer_roster_seen)
        for f in fragments:
            self._take_fragment(f, t, round_no, kem_keys)
        return t

    def _take_fragment(
        self, f: cells.Fragment, t: _Taken, round_no: int, kem_keys: Sequence[KemPrivateKey]
    ) -> None:
        if not t.partial and f.index != 0:
            raise GapDetected("a message arrived without its beginning: cells were dropped")
        if t.partial and (f.message_id != t.partial[0].message_id or f.index != len(t.partial)):
            raise GapDetected("a message is missing cells: the relay dropped or reordered")
        t.partial.append(f)
        if len(t.partial) != f.count:
            return
        raw = cells.reassemble(t.partial)
        t.partial = []
        if f.control:
            t.control = self._control(raw, round_no, kem_keys)
            if t.control.peer_roster is not None:
                # The peer's re-key comes behind what its outbox held when its
                # roster changed: nothing after it is sealed under an earlier one
                # (a runner and an officer his mission removed, signing together).
                t.roster_seen = max(t.roster_seen, t.control.peer_roster.version)
            return
        msg = SealedMessage.decode(raw)
        if msg.message_id != f.message_id:
            raise DecodeError("reassembled message does not match its id")
        if self._waits(msg, t.held):
            if len(t.held) >= MAX_HELD:
                raise PeerRosterAhead(
                    f"{MAX_HELD} messages already wait for the peer's new mission "
                    "card: this one is refused; add the card (`backchannel peer add`)"
                )
            if not t.held:
                t.newly_held = msg
            t.held.append(raw)
            return
        self._verify(msg, t.roster_seen)
        t.transcript = t.transcript.accept(msg.header, msg.digest, check_peer=self.sends)
        # A later message of the same cell is checked against this one's roster.
        if not msg.deniable:
            t.roster_seen = max(t.roster_seen, msg.header.sender_roster)
        t.messages.append(msg)
        if self.sends:
            t.receipt_due = self._receipt(t.transcript)

    def _seen(self, msg: SealedMessage) -> None:
        if not msg.deniable:
            self.peer_roster_seen = max(self.peer_roster_seen, msg.header.sender_roster)

    def _receipt(self, transcript: Transcript) -> cells.Receipt:
        seq, head = transcript.received_seq, transcript.received[-1]
        if not self.deniable:
            return cells.Receipt.make(self.channel_id, self.in_direction, seq, head, self.officer)
        tag = deniable_mod.receipt_tag(self.mac_root, self.channel_id, self.in_direction, seq, head)
        return cells.Receipt(seq, head, self.officer.officer_id, deniable_mod.receipt_field(tag))

    def slot_to_fetch(self, round_no: int) -> bytes:
        if round_no < self.next_recv_round:
            raise LocalProtocolError("that round was already received")
        return self._keys(round_no, False).slots[self.in_direction]

    def gossip_of(self, round_no: int, cell: bytes) -> Gossip | None:
        """The gossip a later round's cell carries, read without receiving the round.

        For a receiver waiting at a missing round (the relay lost it and the
        peer may deposit it again): the peer's view of the log in the rounds
        after it still proves the relay's lies at once. Changes nothing here.
        """
        if round_no < self.next_recv_round:
            raise LocalProtocolError("that round was already received")
        keys = self._keys(round_no, False)
        return cells.open_cell(
            cell, keys, self.channel_id, self.in_direction, self.terms.cell_size
        ).gossip

    def receive(
        self, round_no: int, cell: bytes | None, kem_keys: Sequence[KemPrivateKey] = ()
    ) -> RoundResult:
        """Process the peer's cell of ``round_no`` (``None``: the slot was empty).

        ``kem_keys`` (this officer's epoch keys, newest first) open a re-key
        the peer sends after its roster changed (``protocol/rekey.py``).
        """
        if round_no < self.next_recv_round:
            raise LocalProtocolError("that round was already received")
        if self.rekey_held:
            raise LocalProtocolError(
                "the peer re-keyed this channel under a roster this device does not hold "
                "yet: nothing after it is read until the peer's new card is added"
            )
        if cell is None:
            self.next_recv_round = round_no + 1
            self._erase_past()
            return RoundResult(round_no, empty=True)
        keys = self._keys(round_no, False)
        content = cells.open_cell(
            cell, keys, self.channel_id, self.in_direction, self.terms.cell_size
        )
        transcript = self.transcript
        control: rkg.Outcome | None = None
        delivered: tuple[int, ...] = ()
        if content.receipt is not None and self.sends:
            r = content.receipt
            if self.deniable:
                deniable_mod.verify_receipt(
                    r.signature, self.mac_root, self.channel_id, self.out_direction, r.seq, r.head
                )
            else:
                r.verify(self.channel_id, self.out_direction, self.peer_roster)
            transcript.check_peer_view(r.seq, r.head)
            if r.seq > self.delivered_seq:
                delivered = tuple(range(self.delivered_seq + 1, r.seq + 1))
        taken = self._take_fragments(content.fragments, transcript, round_no, kem_keys)
        control = taken.control
        # Everything verified: commit.
        self.transcript = taken.transcript
        self.held = taken.held
        self.peer_roster_seen = taken.roster_seen
        self.partial = taken.partial
        if taken.receipt_due is not None:
            self.receipt_due = taken.receipt_due
        if delivered:
            self.delivered_seq = delivered[-1]
        if control is not None:
            self._apply(control, round_no)
        self.next_recv_round = round_no + 1
        self._erase_past()
        return RoundResult(
            round_no,
            cover=content.is_cover,
            messages=tuple(taken.messages),
            delivered=delivered,
            gossip=content.gossip,
            held=taken.newly_held,
            rekey=control.text if control is not None else "",
            keys=control.certs if control is not None else (),
            anchor=control.anchor if control is not None else b"",
        )


@dataclass
class _Taken:
    """What one received cell's fragments bring, before it is committed."""

    transcript: Transcript
    partial: list[cells.Fragment]
    held: list[bytes]
    #: The peer's latest roster seen, with the messages taken so far.
    roster_seen: int
    messages: list[SealedMessage] = field(default_factory=list)
    newly_held: SealedMessage | None = None
    receipt_due: cells.Receipt | None = None
    control: rkg.Outcome | None = None
