"""Sending: drafting a message, co-signing it with colleagues, queueing it for the rounds.

A draft is sealed and signed on the runner and a co-sign request goes to every
other officer through the mission mailbox; a co-signature that completes the
threshold queues the message in the channel's endpoint, and the next rounds
carry it. Nothing here talks to the relay.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from backchannel.client.device import new_id, one
from backchannel.client.officer_alarms import AlarmKind, OfficerAlarms
from backchannel.client.records import ChannelRecord, CosignRequest, DraftRecord
from backchannel.crypto.primitives import equal
from backchannel.errors import ConfigError, LocalProtocolError, NotEnoughSignatures
from backchannel.protocol import joint
from backchannel.protocol import policy as mp
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.outgoing import Outgoing
from backchannel.protocol.payload import Payload
from backchannel.protocol.sealing import (
    Announcement,
    check_draft,
    draft_payload,
    mark_sent,
    sign,
    start_epoch,
    valid_signers,
)
from backchannel.protocol.states import SendState

#: The first bytes of the NOTICE a runner sends when it withdraws a draft's co-sign requests.
WITHDRAW_NOTICE = b"withdraw"
#: A send epoch (the share chains of a channel's messages to the peer) lasts at
#: most a day unless the mission policy says otherwise (``epoch_seconds``): a
#: copy of the sending device's state taken today opens none of what is sealed
#: tomorrow. A new epoch also starts at every roster change.
SEND_EPOCH_SECONDS = mp.DEFAULT_EPOCH_SECONDS


class Sending(OfficerAlarms):
    """Drafts, co-signing and queueing."""

    def compose(
        self, channel_id: bytes, payload: Payload, *, deniable: bool | None = None
    ) -> DraftRecord:
        """Seal and sign a draft, and ask every other officer to co-sign it.

        ``deniable``: send it with a MAC instead of signatures, where the channel's
        policy allows both; by default, as the channel's policy says (deniable
        only: deniable; otherwise for the record). The choice is in the header
        that every co-signer approves.
        """
        if not self.is_runner:
            raise ConfigError(
                "messages are drafted on the mission's desk device (the runner); "
                "ask the officer who runs it"
            )
        rec: ChannelRecord = self._get("channels", channel_id, ChannelRecord)
        ep = self._endpoint(channel_id)
        m = self.mission()
        peer = self._peer_card(rec.peer_mission)
        # Drafts still awaiting their co-signatures do not hold this one back: it
        # chains on the last of them, and they go out in the order drafted.
        awaiting = self._awaiting(channel_id)
        after = awaiting[-1].outgoing.message if awaiting else None
        epoch = rec.send_epoch
        epoch_no = rec.epoch_no
        now = int(self._clock())
        started, own_roster = rec.epoch_started, rec.epoch_own_roster
        if (
            epoch is None
            or epoch.recipient_roster != peer.roster.version
            or _key_epochs(epoch.announcement) != {(c.officer_id, c.epoch) for c in peer.certs}
            # On a schedule and at every change of our roster: whoever copied this
            # device's state before reads nothing sealed under the next epoch.
            or not started <= now < started + m.policy.epoch_seconds
            or own_roster != m.roster.version
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
            started, own_roster = now, m.roster.version
        try:
            header = ep.new_header(payload.kind, epoch, now, deniable, after)
        except LocalProtocolError as exc:
            raise ConfigError(str(exc)) from None
        if header.deniable and not self._deniable_allowed(rec):
            raise ConfigError(
                "the mission's policy allows only messages for the record on official "
                f"channels ({m.policy.describe()}); send it for the record"
            )
        k = self._send_k(rec)
        out, epoch = Outgoing.draft(payload).seal(
            header,
            epoch,
            peer.roster,
            self.officer,
            m.roster,
            secrets.token_bytes,
            ahead=[d.outgoing.message for d in awaiting if d.outgoing.message is not None],
        )
        assert out.message is not None and out.content_key is not None
        draft = DraftRecord(new_id(), channel_id, out, now, header.seq, out.content_key)
        with self._tx():
            rec = replace(
                rec,
                send_epoch=epoch,
                epoch_no=epoch_no,
                epoch_started=started,
                epoch_own_roster=own_roster,
            )
            self._put("channels", channel_id, rec)
            self._put_draft(draft)
            for o in m.roster.officers:
                if equal(o.officer_id, self.officer.officer_id) or k == 1:
                    continue
                # The co-signer opens the sealed draft with its content key: he is
                # shown exactly what the peer will receive, and the plaintext does
                # not travel twice.
                body = cosign_body(channel_id, draft.draft_id, out.content_key, out.message)
                self._send_joint(joint.JointKind.COSIGN_REQUEST, o.officer_id, body)
            self._audit(AuditKind.DRAFTED, draft.draft_id, f"to {peer.roster.mission_name}")
        if k == 1:
            # A Track II contact is one person: his own signature is the threshold;
            # a mission whose policy lets one officer speak to a contact, the same.
            # The message goes out with the next rounds (as a MAC, not it).
            out = out.with_cosignature(out.message, m.roster, self._k_instead(rec))
            draft = replace(draft, outgoing=out)
            self._put_draft(draft)
            self._queue_ready(channel_id, asked=False)
            draft = self._get("drafts", draft.draft_id, DraftRecord)
        return draft

    def _awaiting(self, channel_id: bytes) -> list[DraftRecord]:
        """The channel's drafts sealed and not yet queued (awaiting co-signatures,
        or signed and waiting for an earlier draft), in the order they chain."""
        return sorted(
            (
                d
                for d in self._open_drafts()
                if d.channel_id == channel_id
                and d.outgoing.state in (SendState.SEALED, SendState.COSIGNED)
            ),
            key=lambda d: d.seq,
        )

    def _peer_is_contact(self, rec: ChannelRecord) -> bool:
        """Whether the channel is to a Track II contact: as it was paired.

        Never the peer's roster as it is now: a peer whose roster shrank to one
        officer would otherwise turn an official channel into a Track II one
        by itself, and our officers would send on it under the Track II ``k``
        and deniably, whatever our policy. A record kept before the pairing
        was noted: the peer's roster if it is still the one paired with (its
        hash is in the terms), else official, the stricter of the two.
        """
        if rec.peer_contact is not None:
            return rec.peer_contact
        roster = self._peer_card(rec.peer_mission).roster
        paired = (rec.terms.roster_hash_a, rec.terms.roster_hash_b)
        return roster.is_contact and any(equal(roster.hash, h) for h in paired)

    def _send_k(self, rec: ChannelRecord) -> int:
        """How many officers sign a message on channel ``rec``: the roster's ``k``,
        or to a Track II contact the ``k`` the mission's policy sets."""
        m = self.mission()
        to_contact = self._peer_is_contact(rec) and not m.roster.is_contact
        return m.policy.send_threshold(m.roster, to_contact)

    def _deniable_allowed(self, rec: ChannelRecord) -> bool:
        """Track II channels are deniable; official ones only where the policy says so."""
        m = self.mission()
        if m.roster.is_contact or self._peer_is_contact(rec):
            return True
        return m.policy.official_deniable

    def _k_instead(self, rec: ChannelRecord) -> int | None:
        """The ``k`` to send under where it is not the roster's (a Track II ``k``)."""
        k = self._send_k(rec)
        return None if k == self.mission().roster.threshold else k

    def _draft_channel(self, draft: DraftRecord) -> ChannelRecord:
        """The channel a draft is for."""
        return self.channel(draft.channel_id)

    def drafts(self) -> list[DraftRecord]:
        return sorted(self._all("drafts", DraftRecord), key=lambda d: d.created_at)

    def find_draft(self, prefix: str) -> DraftRecord:
        """The one draft whose id (hex) starts with ``prefix``."""
        return one(self.drafts(), lambda d: d.draft_id, prefix, "draft", "drafts")

    def send_now(self, draft_id: bytes) -> DraftRecord:
        """Queue a draft for the rounds: refused without ``k`` signatures."""
        draft: DraftRecord | None = self._get("drafts", draft_id, DraftRecord)
        if draft is None:
            raise ConfigError("unknown draft")
        m = self.mission()
        state = draft.outgoing.state
        if draft.outgoing.on_its_way:
            return draft  # nothing to do, nothing to suspect
        if state is SendState.REJECTED:
            raise ConfigError("this draft was refused or withdrawn; it will not go out")
        if state is not SendState.COSIGNED:
            out = draft.outgoing
            n = len(valid_signers(out.message, m.roster)) if out.message else 0
            self._tell_colleagues(AlarmKind.SOLO_SEND)
            raise NotEnoughSignatures(
                f"{n} of the {self._send_k(self._draft_channel(draft))} officers needed have "
                "signed; ask a colleague to co-sign"
            )
        earlier = [d for d in self._awaiting(draft.channel_id) if d.seq < draft.seq]
        if earlier:
            raise ConfigError(
                "this draft has its signatures and goes out after the draft before it on "
                f"the channel ({earlier[-1].draft_id.hex()[:8]}), which still awaits its "
                "co-signature"
            )
        self._queue_ready(draft.channel_id)
        queued: DraftRecord = self._get("drafts", draft_id, DraftRecord)
        return queued

    def _queue(self, draft: DraftRecord, *, asked: bool = True) -> DraftRecord:
        """Queue a draft that has its signatures; ``asked``: colleagues were asked
        to co-sign it (those who did not are told it no longer needs them)."""
        rec: ChannelRecord = self._get("channels", draft.channel_id, ChannelRecord)
        ep = self._endpoint(draft.channel_id)
        msg = draft.outgoing.message
        assert msg is not None
        if msg.header.deniable and not self._deniable_allowed(rec):
            # Drafted deniable, and k officers narrowed the policy before it went out.
            why = "the mission's policy no longer allows deniable messages here"
            withdrawn = replace(draft, outgoing=draft.outgoing.reject(), withdrawn=why)
            withdrawn = withdrawn.without_proof()
            later = [d for d in self._awaiting(draft.channel_id) if d.seq > draft.seq]
            with self._tx():
                self._put_draft(withdrawn)
                self._audit(
                    AuditKind.REJECTED, draft.draft_id,
                    "withdrawn: the mission's policy no longer allows deniable messages here",
                )  # fmt: skip
                self._redraft(later, "withdrawn: chained on a draft that was withdrawn")
            return withdrawn
        ep.queue(msg, self._k_instead(rec))
        out = draft.outgoing.queue()
        # A deniable message leaves with the channel's MAC; this device keeps it
        # without its officers' signatures (deniable-v1.md §3): what they
        # approved is in the audit log, under the draft's id, not its digest.
        new_draft = replace(draft, outgoing=out).without_proof()
        epoch = mark_sent(rec.send_epoch, msg) if rec.send_epoch else None
        signed = {oid for oid, _ in msg.signatures}
        with self._tx():
            self._save_endpoint(draft.channel_id, ep)
            self._put("channels", draft.channel_id, replace(rec, send_epoch=epoch))
            self._put_draft(new_draft)
            # Colleagues who were asked and did not sign need not any more.
            for o in self.mission().roster.officers:
                if asked and o.officer_id not in signed:
                    notice = WITHDRAW_NOTICE + draft.draft_id
                    self._send_joint(joint.JointKind.NOTICE, o.officer_id, notice)
            self._audit(
                AuditKind.QUEUED, draft.draft_id, f"message {msg.header.seq} of the channel"
            )
        return new_draft

    def _queue_ready(self, channel_id: bytes, *, asked: bool = True) -> None:
        """Queue the channel's signed drafts that are next in line, in the order
        they chain: one still awaiting its co-signature holds back those after it."""
        for d in self._awaiting(channel_id):
            if d.outgoing.state is not SendState.COSIGNED:
                return
            if self._queue(d, asked=asked).outgoing.state is not SendState.QUEUED:
                return  # withdrawn, and the drafts after it drafted again

    def cosign_requests(self) -> list[CosignRequest]:
        return self._all("cosign_in", CosignRequest)

    def find_cosign(self, prefix: str) -> CosignRequest:
        """The one co-sign request whose id (hex) starts with ``prefix``."""
        return one(
            self.cosign_requests(), lambda r: r.request_id, prefix, "co-sign request", "cosign list"
        )

    def show_cosign(self, request_id: bytes) -> tuple[CosignRequest, Payload]:
        req: CosignRequest | None = self._get("cosign_in", request_id, CosignRequest)
        if req is None:
            raise ConfigError("unknown co-sign request; see `backchannel cosign list`")
        wrong = self.misaddressed(req)
        if wrong is not None:
            raise ConfigError(wrong)
        payload = Payload.decode(req.payload)
        check_draft(SealedMessage.decode(req.message), req.content_key, payload)
        return req, payload

    def misaddressed(self, req: CosignRequest) -> str | None:
        """Why ``req`` does not go where it says, if it does not.

        The desk names the peer from the request's channel; the co-signature
        covers the message's header. They must be one channel of this mission,
        in the direction it sends: else one officer alone would choose where a
        message the co-signer approved goes.
        """
        header = SealedMessage.decode(req.message).header
        if not equal(header.channel_id, req.channel_id):
            return "a co-sign request named another channel than its message goes to; refused"
        try:
            out = self._endpoint(req.channel_id).out_direction
        except ConfigError:
            return "a co-sign request for a channel this mission does not hold; refused"
        if header.direction != out:
            return "a co-sign request held a message this mission did not write; refused"
        return None

    def approve_cosign(self, request_id: bytes) -> None:
        req, _ = self.show_cosign(request_id)
        msg = sign(SealedMessage.decode(req.message), self.officer, self.mission().roster)
        sig = next(s for oid, s in msg.signatures if equal(oid, self.officer.officer_id))
        body = req.draft_id + sig
        with self._tx():
            self._send_joint(joint.JointKind.COSIGNATURE, req.from_officer, body)
            self.vault.delete("cosign_in", request_id)
            self._audit(AuditKind.COSIGNED, req.draft_id)

    def reject_cosign(self, request_id: bytes) -> None:
        req, _ = self.show_cosign(request_id)
        with self._tx():
            self._send_joint(joint.JointKind.NOTICE, req.from_officer, b"reject" + req.draft_id)
            self.vault.delete("cosign_in", request_id)
            self._audit(AuditKind.REJECTED, req.draft_id)

    def reseal_stale_drafts(self) -> list[DraftRecord]:
        """Drafts sealed under an earlier roster of ours, drafted again under the current one.

        The peer accepts a message only under the roster of ours it holds now,
        so a draft still waiting for co-signatures when the roster changed could
        never be delivered, and once queued it would stop the channel (the peer
        refuses it, then waits for it). Each such draft is withdrawn (the
        colleagues' devices drop its co-sign requests) and drafted again with
        the same text, sealed and signed under the current roster: the
        colleagues are asked again. Returns the new drafts.
        """
        if not self.is_runner:
            return []
        version = self.mission().roster.version
        out: list[DraftRecord] = []
        for channel_id in sorted({d.channel_id for d in self._open_drafts()}):
            chain = self._awaiting(channel_id)
            stale = next(
                (
                    i
                    for i, d in enumerate(chain)
                    if d.outgoing.message is not None
                    and d.outgoing.message.header.sender_roster != version
                ),
                None,
            )
            if stale is not None:
                # The drafts chained on a stale one are drafted again with it.
                out += self._redraft(chain[stale:], "withdrawn: the roster changed")
        return out

    def _redraft(self, drafts: list[DraftRecord], reason: str) -> list[DraftRecord]:
        """Withdraw ``drafts`` (one channel's, in the order they chain: a draft and
        every one chained on it) and draft each again with the same text, under
        the current roster and at the end of the channel's chain: the colleagues'
        devices drop the old co-sign requests and are asked again."""
        with self._tx():
            for d in drafts:
                why = reason.removeprefix("withdrawn: ") + "; drafted again with the same text"
                gone = replace(d, outgoing=d.outgoing.reject(), withdrawn=why)
                self._put_draft(gone.without_proof())
                for o in self.mission().roster.officers:
                    if not equal(o.officer_id, self.officer.officer_id):
                        notice = WITHDRAW_NOTICE + d.draft_id
                        self._send_joint(joint.JointKind.NOTICE, o.officer_id, notice)
                self._audit(AuditKind.REJECTED, d.draft_id, reason)
            return [
                self.compose(d.channel_id, d.outgoing.payload, deniable=self._choice_kept(d))
                for d in drafts
            ]

    def _choice_kept(self, draft: DraftRecord) -> bool | None:
        """A draft drafted again keeps its author's choice of deniable or for the
        record, where the policy still allows it (else the policy's default)."""
        msg = draft.outgoing.message
        if msg is None or (
            msg.header.deniable and not self._deniable_allowed(self._draft_channel(draft))
        ):
            return None
        return msg.header.deniable

    def _on_cosignature(self, sender: bytes, body: bytes) -> str | None:
        draft_id, sig = body[:16], body[16:]
        draft: DraftRecord | None = self._get("drafts", draft_id, DraftRecord)
        if draft is None or draft.outgoing.message is None:
            return None
        if draft.outgoing.state is not SendState.SEALED:
            return None  # it had its signatures already, or was refused: nothing to do
        m = self.mission()
        if draft.outgoing.message.header.sender_roster != m.roster.version:
            # Signed under a roster we no longer have: drafted again, with the
            # drafts chained on it.
            chain = [d for d in self._awaiting(draft.channel_id) if d.seq >= draft.seq]
            self._redraft(chain, "withdrawn: the roster changed")
            return None
        msg = draft.outgoing.message.with_signature(sender, sig)
        if sender not in valid_signers(msg, m.roster):
            return "a co-signature did not verify and was dropped"
        out = draft.outgoing.with_cosignature(
            msg, m.roster, self._k_instead(self._draft_channel(draft))
        )
        draft = replace(draft, outgoing=out)
        self._put_draft(draft)
        if out.state is SendState.COSIGNED:
            self._queue_ready(draft.channel_id)
        return None

    def _on_notice(self, sender: bytes, body: bytes) -> None:
        if body.startswith(WITHDRAW_NOTICE):
            draft_id = body[len(WITHDRAW_NOTICE) :][:16]
            for req in self.cosign_requests():
                if equal(req.draft_id, draft_id) and equal(req.from_officer, sender):
                    self.vault.delete("cosign_in", req.request_id)
            return
        if body.startswith(b"reject"):
            draft_id = body[6:22]
            draft: DraftRecord | None = self._get("drafts", draft_id, DraftRecord)
            if draft is not None and draft.outgoing.state is SendState.SEALED:
                later = [d for d in self._awaiting(draft.channel_id) if d.seq > draft.seq]
                refused = replace(draft, outgoing=draft.outgoing.reject())
                self._put_draft(refused.without_proof())
                # The drafts chained on it cannot go out without it: drafted again.
                self._redraft(later, "withdrawn: chained on a draft a colleague rejected")


def _key_epochs(announcement: bytes) -> set[tuple[bytes, int]]:
    return {(oid, e) for oid, e, _ in Announcement.decode(announcement).boxes}


def cosign_body(
    channel_id: bytes, draft_id: bytes, content_key: bytes, message: SealedMessage
) -> bytes:
    """A co-sign request: ``var(channel_id) | draft_id [16] | content_key [32] | var(message)``."""
    w = Writer().var(channel_id).fixed(draft_id, 16).fixed(content_key, 32)
    return w.var(message.encode()).bytes()


def cosign_request(request_id: bytes, sender: bytes, body: bytes) -> CosignRequest:
    """Read a co-sign request and open its draft (raises if it does not open)."""
    r = Reader(body)
    channel_id, draft_id, content_key = r.var(64), r.fixed(16), r.fixed(32)
    raw = r.var()
    r.end()
    payload = draft_payload(SealedMessage.decode(raw), content_key)
    return CosignRequest(
        request_id, sender, channel_id, draft_id, raw, content_key, payload.encode()
    )
