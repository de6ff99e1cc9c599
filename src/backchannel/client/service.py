"""The client library: one officer's device, as a small facade over its capabilities.

Each capability lives in its own module, over the shared :class:`Device`
state: missions, peers and channels (:mod:`~backchannel.client.missions`),
sending and co-signing (:mod:`~backchannel.client.sending`), receiving and
joint opening (:mod:`~backchannel.client.receiving`), the mission mailbox
(:mod:`~backchannel.client.mailbox`), the round engine
(:mod:`~backchannel.client.engine`) and its driver
(:mod:`~backchannel.client.driver`), the only code that talks to a relay.

Every operation persists its new state in the encrypted vault before anything
goes on the network ("persist, then send"), and an officer's command never
touches the network: it queues, and the next round carries it. The CLI and the
local desk are thin adapters over :class:`Client`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from backchannel.client.device import (
    RelayFactory,
    _EndpointData,
    default_relay_factory,
)
from backchannel.client.driver import Driver
from backchannel.client.home import Home
from backchannel.client.intake import INTAKE_NOTICE
from backchannel.client.mailbox import Mailbox
from backchannel.client.missions import Missions
from backchannel.client.officer_alarms import ALARM_NOTICE, CARD_NOTICE
from backchannel.client.policy import POLICY_NOTICE, Policies
from backchannel.client.records import InboxRecord, ShareRequest
from backchannel.client.relay_move import MOVE_NOTICE
from backchannel.client.report import SyncReport
from backchannel.client.sending import Sending, cosign_request
from backchannel.crypto.primitives import equal
from backchannel.crypto.sharing import Share
from backchannel.protocol import joint
from backchannel.protocol.evidence import evidence_kind, evidence_text
from backchannel.protocol.identity import EpochKeyCert

__all__ = [
    "Client",
    "RelayFactory",
    "SyncReport",
    "_EndpointData",
    "default_relay_factory",
]


class Client(Missions, Sending, Policies, Driver):
    """One officer's device: missions, sending, receiving and the rounds."""

    def __init__(
        self,
        home: Home,
        relay_factory: RelayFactory = default_relay_factory,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(home, relay_factory, clock)
        self.mailbox = Mailbox(self)
        self.mailbox.handler = self._on_joint

    def _on_joint(self, obj: joint.JointObject) -> str | None:
        """Act on an object a colleague's device sent us through the mailbox."""
        if obj.kind is joint.JointKind.COSIGN_REQUEST:
            req = cosign_request(obj.object_id, obj.sender_id, obj.body)
            wrong = self.misaddressed(req)
            if wrong is not None:
                return wrong
            self._put("cosign_in", obj.object_id, req)
        elif obj.kind is joint.JointKind.COSIGNATURE:
            return self._on_cosignature(obj.sender_id, obj.body)
        elif obj.kind is joint.JointKind.SHARE_REQUEST:
            req2 = ShareRequest(obj.object_id, obj.sender_id, obj.body[:16], obj.body[16:32])
            item0: InboxRecord | None = self._get("inbox", req2.message_id, InboxRecord)
            if item0 is not None and not equal(item0.channel_id, req2.channel_id):
                return "a share request named another channel than its message came by; refused"
            # One waiting request per colleague and message: another for the
            # same (from a device that asked again) would have the share go twice.
            if not any(
                equal(r.from_officer, req2.from_officer) and r.message_id == req2.message_id
                for r in self.share_requests()
            ):
                self._put("share_in", obj.object_id, req2)
        elif obj.kind is joint.JointKind.SHARE:
            mid, share = obj.body[:16], Share.decode(obj.body[16:])
            item: InboxRecord | None = self._get("inbox", mid, InboxRecord)
            if item is not None and not item.payload:
                self._add_share(item, share)
        elif obj.kind is joint.JointKind.NOTICE:
            if obj.body.startswith((ALARM_NOTICE, CARD_NOTICE)):
                return self._on_officer_notice(obj.sender_id, obj.body)
            if obj.body.startswith(INTAKE_NOTICE):
                return self._on_intake_notice(obj.sender_id, obj.body)
            if obj.body.startswith(POLICY_NOTICE):
                return self._on_policy_notice(obj.sender_id, obj.body)
            if obj.body.startswith(MOVE_NOTICE):
                return self._on_move_notice(obj.sender_id, obj.body)
            self._on_notice(obj.sender_id, obj.body)
        elif obj.kind is joint.JointKind.AUDIT:
            return self._on_audit(obj.sender_id, obj.body)
        elif obj.kind is joint.JointKind.ANCHOR:
            return self._on_anchor_opening(obj.sender_id, obj.body)
        elif obj.kind is joint.JointKind.EPOCH_CERT:
            self._on_epoch_cert(obj.sender_id, EpochKeyCert.decode(obj.body))
        return None

    # --- what the desk shows --------------------------------------------------------

    def relay_alarms(self) -> list[str]:
        return self.log.alarms()

    def relay_evidence(self) -> list[bytes]:
        """The proofs of relay misbehaviour this device has kept (each verifies offline)."""
        return self.log.evidence()

    def evidence_files(self) -> list[tuple[str, str]]:
        """Each kept proof as (file name, one line of text), to export for anyone to verify."""
        out = []
        for blob in self.relay_evidence():
            kind = evidence_kind(blob).replace(" ", "-")
            name = f"relay-{kind}-{hashlib.sha256(blob).hexdigest()[:12]}.txt"
            out.append((name, evidence_text(blob)))
        return out

    def relay_move_report(self) -> dict[str, Any] | None:
        """A move away from a relay proven to lie, while it lasts (relay_move.py)."""
        move = self.relay_move()
        if move is None:
            return None
        return {
            "from": move.old_url,
            "to": self.mission().relay_url,
            "peers_to_tell": sorted(
                self.peer(self.channel(c).peer_mission).name for c in move.channels
            ),
            "colleagues_to_come": [self._officer_name(o) for o in move.colleagues],
            "what_to_do": "give each peer mission named here our new card "
            "(`backchannel mission card`); colleagues' devices follow by themselves",
        }

    def status(self) -> dict[str, Any]:
        m = self.mission_or_none()
        out: dict[str, Any] = {
            "officer": self.officer.name,
            "officer_id": self.officer.officer_id.hex(),
            "mission": m.name if m else None,
            "runner": self.is_runner if m else None,
            "waiting_cells": len(self.vault.pending("net_out")),
            "waiting_objects": self.mailbox.waiting() if m else 0,
            "relay_alarms": self.relay_alarms(),
            "officer_alarms": [
                {"at": a.at, "officer": a.officer, "text": a.text, "what_to_do": a.todo}
                for a in (self.officer_alarms() if m else [])
            ],
            "relay_evidence": [
                {"kind": evidence_kind(blob), "bytes": len(blob)} for blob in self.relay_evidence()
            ],
            "witnesses": self.witness_report() if m else None,
            "relay_move": self.relay_move_report() if m else None,
            "channels": [],
        }
        for rec in self.channels():
            ep = self._endpoint(rec.channel_id)
            peer = self.peer(rec.peer_mission)
            out["channels"].append(
                {
                    "channel_id": rec.channel_id.hex(),
                    "peer": peer.name,
                    "sent": max(ep.transcript.next_seq - 1, 0),
                    #: This device took the channel over; the peer has not answered yet.
                    "takeover_pending": ep.resuming,
                    "received": ep.transcript.received_seq,
                    "delivered": ep.delivered_seq,
                    "next_send_round": ep.next_send_round,
                    "next_receive_round": ep.next_recv_round,
                    "pending_cells": ep.pending_cells,
                    "alarms": list(rec.alarms),
                }
            )
        return out
