"""Receiving: the peer's rounds, the inbox, and opening a message jointly.

Each officer's device verifies every round of the peer itself. Opening needs
k officers' shares: :meth:`Receiving.request_open` contributes ours and asks
colleagues (through the mailbox) for theirs; :meth:`Receiving.approve_share`
releases ours to a colleague who asked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backchannel.client import statecodec
from backchannel.client.device import one
from backchannel.client.epoch_keys import EpochKeys
from backchannel.client.officer_alarms import AlarmKind
from backchannel.client.records import ChannelRecord, DraftRecord, InboxRecord, ShareRequest
from backchannel.client.report import SyncReport
from backchannel.crypto.primitives import equal
from backchannel.crypto.sharing import Share
from backchannel.errors import (
    AuthenticationError,
    BackchannelError,
    ConfigError,
    GapDetected,
    LocalProtocolError,
    NotEnoughShares,
    RemoteProtocolError,
    TranscriptError,
)
from backchannel.protocol import joint
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.incoming import Incoming
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.misbehaviour import Gossip
from backchannel.protocol.payload import Payload
from backchannel.protocol.sealing import (
    RecvEpoch,
    accept_announcement,
    content_key_of,
    decrypt_share,
)
from backchannel.protocol.states import SendState

#: The counter set once this home's deniable drafts were swept of their signatures.
PROOFS_FORGOTTEN = b"deniable-proofs-forgotten"


class Receiving(EpochKeys):
    """The inbox, joint opening, and processing the peer's rounds."""

    def inbox(self) -> list[InboxRecord]:
        return sorted(self._all("inbox", InboxRecord), key=lambda r: r.received_round)

    def inbox_item(self, prefix: str) -> InboxRecord:
        hits = [r for r in self.inbox() if r.message_id.hex().startswith(prefix.lower())]
        if len(hits) != 1:
            raise ConfigError(f"no single message matches {prefix!r}; see `backchannel inbox`")
        return hits[0]

    def _own_share(self, item: InboxRecord) -> tuple[Share, InboxRecord]:
        if item.own_share:
            return Share.decode(item.own_share), item
        msg = SealedMessage.decode(item.message)
        key = item.channel_id + msg.header.epoch_id
        epoch: RecvEpoch | None = self._get("recv_epochs", key, RecvEpoch)
        if epoch is None:
            ann = msg.announcement or self._announcement(item.channel_id, msg.header.epoch_id)
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
        if item.open_requested and not item.payload:
            # The mailbox carries the first request until it is delivered: a
            # second would only ask each colleague to release his share twice.
            raise ConfigError(
                "you already asked your colleagues for their shares of this message; "
                "it opens once enough of them release theirs"
            )
        with self._tx():
            share, item = self._own_share(item)
            item = self._add_share(item, share)
            if not item.payload:
                # Sealed to the roster the peer held: of its officers, those still
                # colleagues (one a change removed since gives no share that counts).
                version = SealedMessage.decode(item.message).header.recipient_roster
                colleagues = self.colleagues()
                for o in self._roster_at(version).officers:
                    if any(equal(o.officer_id, c) for c in colleagues):
                        self._send_joint(
                            joint.JointKind.SHARE_REQUEST,
                            o.officer_id,
                            item.channel_id + item.message_id,
                        )
                item = replace(item, open_requested=True)
                self._put("inbox", message_id, item)
            self._audit(AuditKind.OPEN_ASKED, message_id)
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
            key = content_key_of([Share.decode(s) for s in item.shares], roster)
            item = replace(item, payload=inc.open(roster).encode(), shares=(), content_key=key)
            self._audit(AuditKind.OPENED, item.message_id)
        self._put("inbox", item.message_id, item)
        return item

    def forget(self, message_id: bytes) -> None:
        """Erase a message from this device: its text, its shares and its ciphertext.

        The vault deletes securely, so a device seized afterwards holds nothing
        of it (the relay's copy expires with its retention).
        """
        with self._tx():
            if not self.vault.delete("inbox", message_id):
                raise ConfigError("unknown message; see `backchannel inbox`")
            self._audit(AuditKind.FORGOTTEN, message_id)

    def read(self, message_id: bytes) -> Payload:
        item: InboxRecord = self._get("inbox", message_id, InboxRecord)
        if item is None or not item.payload:
            roster = self.mission().roster
            have = len(item.shares) if item else 0
            if item is not None:
                self._tell_colleagues(AlarmKind.SOLO_OPEN)
            raise NotEnoughShares(
                f"{have} of the {roster.threshold} officers needed have contributed; "
                "a colleague must approve the share request"
            )
        return Payload.decode(item.payload)

    def share_requests(self) -> list[ShareRequest]:
        return self._all("share_in", ShareRequest)

    def find_share_request(self, prefix: str) -> ShareRequest:
        """The one share request whose id (hex) starts with ``prefix``."""
        return one(
            self.share_requests(), lambda r: r.request_id, prefix, "share request", "share list"
        )

    def approve_share(self, request_id: bytes) -> None:
        req: ShareRequest | None = self._get("share_in", request_id, ShareRequest)
        if req is None:
            raise ConfigError("unknown share request; see `backchannel share list`")
        if not any(equal(req.from_officer, c) for c in self.colleagues()):
            raise ConfigError(
                "that request came from an officer a roster change has removed since: "
                "no share goes to him"
            )
        item: InboxRecord | None = self._get("inbox", req.message_id, InboxRecord)
        if item is None:
            raise ConfigError(
                "this device has not received that message yet; run `backchannel sync`"
            )
        if not equal(item.channel_id, req.channel_id):
            raise ConfigError(
                "that request named another channel than its message came by: refused"
            )
        with self._tx():
            share, _ = self._own_share(item)
            self._send_joint(
                joint.JointKind.SHARE, req.from_officer, req.message_id + share.encode()
            )
            self.vault.delete("share_in", request_id)
            self._audit(
                AuditKind.SHARE_RELEASED,
                req.message_id,
                f"to {self._officer_name(req.from_officer)}",
            )

    def _forget_deniable_proofs(self) -> None:
        """Once per home: the deniable drafts a device kept with their officers'
        signatures before it dropped them as they go out (``deniable-v1.md`` §3)
        are kept without them from now on."""
        with self._tx():
            for d in self._all("drafts", DraftRecord):
                if d.holds_proof:
                    self._put_draft(d.without_proof())
            self._set_counter(PROOFS_FORGOTTEN, 1)

    def _receive_round(
        self,
        channel_id: bytes,
        r: int,
        cell: bytes | None,
        report: SyncReport,
        gossip: bool = True,
    ) -> None:
        """Process one round; the peer's gossip it carried waits in ``gossip_due``
        (unless ``gossip`` is False: a cell read at a relay the mission is leaving
        tells of that relay's log, which nothing checks any more)."""
        if not self._counter(PROOFS_FORGOTTEN):
            self._forget_deniable_proofs()
        rec: ChannelRecord = self._get("channels", channel_id, ChannelRecord)
        ep = self._endpoint(channel_id)
        keys = self._kem_keys()
        try:
            res = ep.receive(r, cell, keys)
        except GapDetected as exc:
            alarm = f"round {r}: {exc}"
            if ep.partial:
                ep.partial = []
                try:
                    res = ep.receive(r, cell, keys)
                except BackchannelError:
                    res = ep.receive(r, None)
            else:
                res = ep.receive(r, None)
            self._alarm(rec, alarm, report.alarms)
        except (
            AuthenticationError,
            TranscriptError,
            RemoteProtocolError,
            LocalProtocolError,
        ) as exc:
            self._alarm(rec, f"round {r}: {exc}", report.alarms)
            res = ep.receive(r, None)
        if res.held is not None:
            self._alarm(rec, f"round {r}: {_waiting(res.held)}", report.alarms)
        if ep.rekey_held:
            self._alarm(rec, f"round {r}: {res.rekey}", report.alarms)
        elif res.rekey:
            self._audit(AuditKind.CHANNEL_REKEYED, channel_id, res.rekey)
        with self._tx():
            if res.keys:
                self._learn_keys(rec.peer_mission, res.keys)
            if res.anchor:
                self._keep_peer_anchor(rec.peer_mission, res.anchor)
            report.messages.extend(self._take_in(channel_id, res.messages, r))
            if res.delivered:
                for d in self._open_drafts():
                    if (
                        d.channel_id == channel_id
                        and d.seq in res.delivered
                        and d.outgoing.state is SendState.QUEUED
                    ):
                        done = replace(d, outgoing=d.outgoing.deliver())
                        self._put_draft(done.without_proof())
                report.delivered.extend(res.delivered)
            self._save_endpoint(channel_id, ep)
            if rec.takeover and not ep.resuming:  # the peer answered: cards need not carry it
                fresh = self.channel(channel_id)
                self._put("channels", channel_id, replace(fresh, takeover=b""))
            if gossip and res.gossip is not None:
                due = GossipDue(channel_id, res.gossip)
                self.vault.append("gossip_due", statecodec.dumps(due))


def _waiting(msg: SealedMessage) -> str:
    return (
        f"a message signed under the peer mission's roster version "
        f"{msg.header.sender_roster} waits, with any after it, until this device "
        "has the peer's new mission card: ask the peer for it and add it "
        "(`backchannel peer add`)"
    )


@dataclass(frozen=True)
class GossipDue:
    """The peer's gossip from a received round, waiting to be checked."""

    channel_id: bytes
    gossip: Gossip
    #: How many rounds its checks have waited for the relay's answers.
    tries: int = 0
