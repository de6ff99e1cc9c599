"""The control objects of a channel's stream, as an endpoint sends and takes them.

Control objects ride the channel's own cells like messages (fragments, in
order, behind what is queued; cell flag 0x08) and are never signed as
messages: a re-key and its answers (``protocol/rekey.py``, the state in
``protocol/rekeying.py``) and announcements of officers' new epoch keys
(``protocol/key_announce.py``). :class:`ControlObjects` is a part of
:class:`~backchannel.protocol.endpoint.Endpoint`, kept apart so that each
module stays one concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from backchannel.crypto.kem import KemPrivateKey
from backchannel.errors import AuthenticationError, LocalProtocolError, RosterError, SignatureError
from backchannel.protocol import audit_anchor as aa
from backchannel.protocol import cells
from backchannel.protocol import key_announce as ka
from backchannel.protocol import rekey as rk
from backchannel.protocol import rekeying as rkg
from backchannel.protocol.channel import ChannelTerms, SlotChain
from backchannel.protocol.identity import EpochKeyCert, Officer
from backchannel.protocol.roster import Roster
from backchannel.protocol.transcript import Transcript


class ControlObjects:
    """Re-keys, their answers and key announcements: queued, sent and taken."""

    # The endpoint's state this part reads and writes (see Endpoint).
    terms: ChannelTerms
    local_mission: bytes
    officer: Officer
    peer_roster: Roster
    transcript: Transcript
    next_send_round: int
    outbox: list[cells.Fragment]
    sends: bool
    rekeying: rkg.Rekeying | None
    rekey_held: bytes
    rekey_held_round: int
    peer_rekey_roster: Roster | None
    resuming: bool
    partial: list[cells.Fragment]
    next_recv_round: int
    receipt_due: cells.Receipt | None
    delivered_seq: int
    chain: SlotChain
    rekey_next: bytes
    rekey_next_seed: bytes
    peer_part: bytes
    moving: tuple[bytes, ...]

    def _erase_past(self) -> None:
        """Erase what no later round needs (the endpoint's own)."""
        raise NotImplementedError

    def _not_resuming(self) -> None:
        if self.resuming:
            raise LocalProtocolError(
                "this device has just taken over sending on the channel: messages wait until "
                "the other mission has added our new card and answered (a few rounds)"
            )

    def _peer_mission(self) -> bytes:
        t = self.terms
        return t.mission_b if self.local_mission == t.mission_a else t.mission_a

    def _queue(self, raw: bytes, moves: bool) -> None:
        frags = rk.control_fragments(raw, self.terms.cell_size)
        self.outbox.extend(frags)
        if moves:  # its last piece moves the direction we send in
            self.moving = (*self.moving, frags[0].message_id)

    def _control_sent(self, frag: cells.Fragment, round_no: int) -> None:
        """A control piece went in ``round_no``: the last of a re-key or an answer
        moves our direction after it (``rekeying.sent``)."""
        if frag.index != frag.count - 1 or frag.message_id not in self.moving:
            return
        self.moving = tuple(m for m in self.moving if m != frag.message_id)
        if self.rekeying is not None:
            self.rekeying = rkg.sent(self.rekeying, round_no)

    # --- key announcements (protocol/key_announce.py) --------------------------

    def announce_keys(self, certs: Sequence[EpochKeyCert]) -> None:
        """Queue our officers' new epoch-key certificates for the peer."""
        if not self.sends:
            raise LocalProtocolError("only the device that sends on a channel announces keys")
        self._queue(ka.KeyAnnouncement(tuple(certs)).encode(), moves=False)

    # --- a new sending device (protocol-v1.md §7.8) ------------------------------------

    @property
    def keys_moving(self) -> bool:
        """Whether the channel is moving to new keys (a re-key under way, or one
        that waits for the peer's card): a takeover waits for it to end."""
        k = self.rekeying
        return bool(self.rekey_held) or (k is not None and k.chain is not None)

    def take_over(self, rekey: rk.ChannelRekey, seed: bytes) -> None:
        """On a device of ours that did not send, when the one that did was removed:
        from now on this one sends, from ``rekey.base_round`` on the chain from
        ``seed``. The peer learns of it from our next mission card, which carries
        ``rekey``; its answer (:class:`~.rekey.ChannelResume`) says from which round
        it reads us and what of our history it holds. Until then no message goes
        out (cover and receipts do)."""
        if self.sends:
            raise LocalProtocolError("this device already sends on the channel")
        if self.keys_moving:
            raise LocalProtocolError(
                "the channel is moving to new keys: this device takes over once that ends"
            )
        base = rekey.base_round
        if base < self.chain.round:
            raise LocalProtocolError("a takeover starts at a round still to come")
        chain = rk.chain_for(seed, self.terms.channel_id, base)
        self.rekeying = rkg.Rekeying(seed, base, chain, out_switch=base)
        self.sends, self.resuming = True, True
        self.next_send_round, self.outbox, self.moving = base, [], ()
        self.receipt_due = None
        self.transcript = self.transcript.unknown_sent()
        self.rekey_next, self.rekey_next_seed = b"", b""
        self._erase_past()

    def take_peer_over(self, rekey: rk.ChannelRekey, kem_keys: Sequence[KemPrivateKey]) -> str:
        """The peer's takeover, from its new card: its direction goes on, from
        ``rekey.base_round`` (or the round this device reads next, if later), on
        the chain from the seed its officers vouch for; what was left of a message
        half-received from the device that sent before is dropped. The device
        that sends answers where it reads from and what it holds, then follows
        as for a re-key (§7.5). What it did, in words."""
        if rekey.from_mission != self._peer_mission():
            raise AuthenticationError("a takeover of a channel by another mission")
        if self.rekeying is not None or self.rekey_held:
            raise LocalProtocolError(
                "the channel is moving to new keys: add the card again once that ends"
            )
        roster = rk.roster_of(rekey, self.peer_roster)
        if roster is None:
            raise RosterError("the takeover names a roster of the peer this device does not hold")
        cid = self.terms.channel_id
        seed = rk.open_rekey(rekey, cid, roster, self.officer.officer_id, tuple(kem_keys))
        start = max(self.next_recv_round, rekey.base_round)
        out = rkg.take_rekey(None, rekey, seed, (cid, self.transcript.out_direction, self.sends),
                             start - 1)  # fmt: skip
        if self.sends:
            # It reads the new chain from now on: what it holds now is what it answers.
            t = self.transcript
            resume = rk.make_resume(seed, cid, start, t.received_seq, t.received[-1])
            self._queue(resume.encode(), moves=False)  # before the answer that moves us
            self.partial, self.next_recv_round = [], start
        elif self.next_recv_round >= rekey.base_round:
            self.partial = []
        # (A device that does not send and is behind reads the old chain up to the
        # base round first: nothing sent before the takeover is lost to it.)
        self._apply(replace(out, peer_roster=roster), start - 1)
        self._erase_past()
        return (
            f"the peer's desk device changed: this device reads it from round {start} on new keys"
        )

    def _resumed(self, raw: bytes) -> rkg.Outcome:
        """The peer's answer to our takeover; nothing to a device that took none over."""
        resume = rk.ChannelResume.decode(raw)
        k = self.rekeying
        if not self.resuming or k is None:
            return rkg.Outcome(k)
        rk.verify_resume(resume, k.seed, self.terms.channel_id)
        return rkg.Outcome(k, resume=resume)

    # --- anchors of the audit log (protocol/audit_anchor.py) --------------------------

    def send_anchor(self, anchor: aa.SignedAnchor) -> None:
        """Queue our signed anchor of the mission's audit log for the peer."""
        if not self.sends or self.terms.deniable:
            raise LocalProtocolError("audit anchors go from the sending device, on channels "
                                     "for the record")  # fmt: skip
        if anchor.mission_id != self.local_mission:
            raise LocalProtocolError("an audit anchor of another mission")
        self._queue(anchor.encode(), moves=False)

    def _anchor(self, raw: bytes, round_no: int) -> rkg.Outcome:
        """The peer's anchor: its mission's, made by now, signed by an officer of its roster."""
        anchor = aa.SignedAnchor.decode(raw)
        if self.terms.deniable:
            raise AuthenticationError("a signed audit anchor on a deniable channel")
        if anchor.round > round_no:
            raise AuthenticationError("an audit anchor of a round still to come")
        if anchor.mission_id != self._peer_mission():
            raise AuthenticationError("an audit anchor of another mission")
        roster = self._peer_roster_now()
        if not roster.contains(anchor.officer_id):
            raise AuthenticationError("an audit anchor signed by no officer of the peer")
        anchor.verify(roster.officer(anchor.officer_id))
        return rkg.Outcome(self.rekeying, anchor=raw)

    def _peer_roster_now(self) -> Roster:
        """The peer's newest roster known here: its card's, or a later one its
        re-key showed (its new card may not have come yet)."""
        newer = self.peer_rekey_roster
        if newer is not None and newer.version > self.peer_roster.version:
            return newer
        return self.peer_roster

    # --- re-keying (protocol/rekey.py) ----------------------------------------

    def start_rekey(self, rekey: rk.ChannelRekey, seed: bytes) -> bool:
        """Queue our re-key; our rounds after the one carrying its last piece
        move to the new chain. Only the sending device starts one. While
        another move is under way it waits (a later one of ours replaces it)
        and starts, from the round it does, once that move ends: ``False``."""
        if not self.sends:
            raise LocalProtocolError("only the device that sends on a channel re-keys it")
        if rekey.base_round != self.next_send_round:
            raise LocalProtocolError("a re-key starts at the channel's next round")
        if self.rekeying is not None or self.rekey_held:
            self.rekey_next, self.rekey_next_seed = rekey.encode(), seed
            return False
        self._start(rekey, seed)
        return True

    def _start(self, rekey: rk.ChannelRekey, seed: bytes) -> None:
        # Sealed to none of the officers a later re-key of the peer showed removed.
        now, boxes = self._peer_roster_now(), rekey.boxes
        if now is not self.peer_roster:
            boxes = tuple((o, b) for o, b in boxes if now.contains(o))
        rekey = replace(rekey, base_round=self.next_send_round, boxes=boxes)
        chain = rk.chain_for(seed, self.terms.channel_id, rekey.base_round)
        self.rekeying = rkg.Rekeying(seed, rekey.base_round, chain)
        self._queue(rekey.encode(), moves=True)

    def _start_waiting(self) -> None:
        """Start our re-key that waited, once no move is under way."""
        if self.rekey_next and self.rekeying is None and not self.rekey_held:
            raw, seed = self.rekey_next, self.rekey_next_seed
            self.rekey_next, self.rekey_next_seed = b"", b""
            self._start(rk.ChannelRekey.decode(raw), seed)

    def expect_rekey(self, seed: bytes) -> None:
        """On a device of the re-keying mission that does not send: the peer's
        acknowledgement will name the round its own rounds move at. An earlier
        expectation the peer never answered (the sending device could not start
        that re-key) gives way to this one."""
        k = self.rekeying
        if self.sends:  # it starts its mission's re-keys (start_rekey), and answers the peer's
            raise LocalProtocolError(
                "a re-key of this channel is already under way"
                if k is not None
                else "the device that sends on a channel starts its re-key; it expects none"
            )
        if k is None:
            k = rkg.Rekeying(seed, peer_part=self.peer_part)
        self.rekeying, self.peer_part = replace(k, seed=seed), b""

    def _control(self, raw: bytes, round_no: int, kem_keys: Sequence[KemPrivateKey]) -> rkg.Outcome:
        """What a control object received in ``round_no`` does (nothing changes here)."""
        tag = rk.tag_of(raw)
        cid = self.terms.channel_id
        if tag == rk.TAG_KEYS:
            certs = ka.checked(ka.KeyAnnouncement.decode(raw), self._peer_roster_now())
            return rkg.Outcome(self.rekeying, certs=certs)
        if tag == rk.TAG_ANCHOR:
            return self._anchor(raw, round_no)
        if tag == rk.TAG_RESUME:
            return self._resumed(raw)
        if tag != rk.TAG_REKEY:
            ack = rk.RekeyAck.decode(raw)
            out = self.transcript.out_direction
            return rkg.take_ack(self.rekeying, ack, cid, round_no, out)
        rekey = rk.ChannelRekey.decode(raw)
        if rekey.from_mission != self._peer_mission():
            raise AuthenticationError("a channel re-key from another mission")
        roster = rk.roster_of(rekey, self.peer_roster)
        if roster is None:
            if not rk.known_signers(rekey, self.peer_roster):
                raise SignatureError(
                    "a channel re-key claims a newer roster of the peer, and none of the "
                    "peer's officers this device knows signed it"
                )
            return rkg.Outcome(
                self.rekeying,
                held=raw,
                text=(
                    f"the peer re-keyed the channel after its roster change to version "
                    f"{rekey.version}, which this device does not hold: nothing more is read "
                    "on this channel until you add the peer's new card (`backchannel peer add`)"
                ),
            )
        return self._rekeyed(rekey, roster, round_no, kem_keys)

    def _rekeyed(
        self,
        rekey: rk.ChannelRekey,
        roster: Roster,
        round_no: int,
        kem_keys: Sequence[KemPrivateKey],
    ) -> rkg.Outcome:
        cid = self.terms.channel_id
        seed = rk.open_rekey(rekey, cid, roster, self.officer.officer_id, tuple(kem_keys))
        if round_no < rekey.base_round:
            raise AuthenticationError("a channel re-key arrived before its own base round")
        ep = (cid, self.transcript.out_direction, self.sends)
        out = rkg.take_rekey(self.rekeying, rekey, seed, ep, round_no)
        return replace(out, peer_roster=roster)

    def release_rekey(self, kem_keys: Sequence[KemPrivateKey]) -> str:
        """Take a re-key that waited for the peer's new roster (after
        ``adopt_peer_roster``); what it did, in words, or ``""``.

        One that still names a later roster, and that no officer of the roster
        now held signed (the change removed every officer on whose word it
        waited), is dropped and the channel is read on: ``SignatureError`` says so.
        """
        if not self.rekey_held:
            return ""
        rekey = rk.ChannelRekey.decode(self.rekey_held)
        roster = rk.roster_of(rekey, self.peer_roster)
        if roster is None:
            if not rk.known_signers(rekey, self.peer_roster):
                self.rekey_held, self.rekey_held_round = b"", 0
                raise SignatureError(
                    "it claims a newer roster of the peer and none of its officers signed "
                    "it any more (the change removed its signers): dropped, the channel is "
                    "read on"
                )
            return ""
        control = self._rekeyed(rekey, roster, self.rekey_held_round, kem_keys)
        self._apply(control, self.rekey_held_round)
        return control.text

    def _apply(self, control: rkg.Outcome, round_no: int) -> None:
        if control.resume is not None:
            r = control.resume
            self.transcript = self.transcript.resume(r.seq, r.head)
            self.next_send_round = max(self.next_send_round, r.read_from)
            self.delivered_seq = max(self.delivered_seq, r.seq)
            self.resuming = False
        self.rekeying = control.rekeying
        if control.answer:
            self._queue(control.answer, moves=True)
        self.rekey_held, self.rekey_held_round = control.held, round_no if control.held else 0
        self.peer_rekey_roster = control.peer_roster or self.peer_rekey_roster
        self.peer_part = control.peer_part or self.peer_part
