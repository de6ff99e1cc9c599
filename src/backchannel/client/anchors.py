"""Anchors of the mission's audit log, in the peer's hands (``docs/spec/audit-v1.md`` §6).

The device that sends on the channels (the runner) anchors the audit log
every :data:`~backchannel.protocol.audit_anchor.ANCHOR_EVERY` rounds of each
channel for the record: it writes down which entry of each officer it holds
(the *opening*, sent to every colleague's device through the mailbox, in the
pieces that would carry cover, like audit entries), and sends the peer the
digest of those entries, signed by its officer, in the channel's own cells.
The peer's devices keep the signed anchors they receive. An exported record
carries both: its openings, and the anchors of the peer missions it holds;
:func:`~backchannel.client.audit.verify_record` checks a record against the
peer's record (``audit verify --file ... --peer-record ...``).
"""

from __future__ import annotations

from backchannel.client.audit import AUDIT, Audit
from backchannel.crypto.primitives import equal, sha256
from backchannel.errors import DecodeError
from backchannel.protocol import joint
from backchannel.protocol.audit import AuditEntry
from backchannel.protocol.audit_anchor import (
    ANCHOR_EVERY,
    AnchorOpening,
    SignedAnchor,
    opening_of,
)
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.identity import OFFICER_ID_LEN

#: Openings of the anchors made by the mission: key round (8 bytes) + a digest's first 8.
ANCHOR_OPENINGS = "audit_openings"
#: The last round each channel carried an anchor of ours: key channel id.
ANCHOR_SENT = "audit_anchor_sent"
#: Signed anchors of the peers' audit logs: key peer mission id + round (8 bytes).
PEER_ANCHORS = "peer_anchors"
#: Anchors kept per peer mission (the latest; a record is checked against the latest).
PEER_ANCHORS_KEPT = 64


class Anchors(Audit):
    """Making, passing on and keeping anchors of the audit log."""

    #: Rounds between two anchors on a channel (tests shorten it).
    anchor_every: int = ANCHOR_EVERY

    # --- on the device that sends ----------------------------------------------------

    def _anchor_channel(self, channel_id: bytes, ep: Endpoint, round_no: int) -> None:
        """Queue this round's anchor on the channel, when one is due (before its cell)."""
        if round_no % self.anchor_every or not ep.sends or ep.terms.deniable:
            return
        sent = self.vault.get(ANCHOR_SENT, channel_id)
        if sent is not None and int.from_bytes(sent, "big") >= round_no:
            return
        m = self.mission()
        opening = self._opening_for(m.mission_id, round_no)
        digest = opening.digest(self._entry_digest)
        ep.send_anchor(SignedAnchor.make(m.mission_id, round_no, digest, self.officer))
        self.vault.put(ANCHOR_SENT, channel_id, round_no.to_bytes(8, "big"))

    def _opening_for(self, mission_id: bytes, round_no: int) -> AnchorOpening:
        """The opening of this round's anchor: one for every channel, made once."""
        prefix = round_no.to_bytes(8, "big")
        for key, raw in self.vault.items(ANCHOR_OPENINGS):
            if key.startswith(prefix):
                return AnchorOpening.decode(raw)
        seqs: dict[bytes, list[int]] = {}
        for key in self.vault.keys(AUDIT):
            seqs.setdefault(key[:OFFICER_ID_LEN], []).append(
                int.from_bytes(key[OFFICER_ID_LEN:], "big")
            )
        opening = opening_of(mission_id, round_no, seqs)
        self._keep_opening(opening.encode())
        for o in self.colleagues():
            self._send_joint(joint.JointKind.ANCHOR, o, opening.encode())
        return opening

    def _entry_digest(self, officer_id: bytes, seq: int) -> bytes | None:
        raw = self.vault.get(AUDIT, officer_id + seq.to_bytes(8, "big"))
        return AuditEntry.decode(raw).digest() if raw is not None else None

    def _keep_opening(self, raw: bytes) -> None:
        opening = AnchorOpening.decode(raw)
        key = opening.round.to_bytes(8, "big") + sha256(raw)[:8]
        self.vault.put(ANCHOR_OPENINGS, key, raw)

    # --- on every other device of the mission ----------------------------------------

    def _on_anchor_opening(self, sender: bytes, body: bytes) -> str | None:
        """The runner's opening of an anchor it sent: kept for the record."""
        m = self.mission()
        if not equal(sender, m.runner_id):
            return (
                "an audit anchor's opening came from a device that sends on no channel; set aside"
            )
        try:
            opening = AnchorOpening.decode(body)
        except DecodeError:
            return "an audit anchor's opening could not be read and was set aside"
        if not equal(opening.mission_id, m.mission_id):
            return "an audit anchor's opening names another mission and was set aside"
        self._keep_opening(body)
        return None

    # --- the peer's anchors -----------------------------------------------------------

    def _keep_peer_anchor(self, peer_mission: bytes, raw: bytes) -> None:
        """A peer's anchor, checked by the channel: kept, with the latest before it."""
        anchor = SignedAnchor.decode(raw)
        self.vault.put(PEER_ANCHORS, peer_mission + anchor.round.to_bytes(8, "big"), raw)
        held = [k for k in self.vault.keys(PEER_ANCHORS) if k.startswith(peer_mission)]
        for key in held[:-PEER_ANCHORS_KEPT]:
            self.vault.delete(PEER_ANCHORS, key)

    def peer_anchors(self) -> dict[bytes, list[SignedAnchor]]:
        """The anchors each peer mission sent, oldest first."""
        out: dict[bytes, list[SignedAnchor]] = {}
        for key, raw in self.vault.items(PEER_ANCHORS):
            out.setdefault(key[:32], []).append(SignedAnchor.decode(raw))
        return out

    def anchors_made(self) -> list[int]:
        """The rounds of the anchors of this mission's log whose openings this device holds."""
        return sorted({int.from_bytes(k[:8], "big") for k in self.vault.keys(ANCHOR_OPENINGS)})

    def _record_doc(self) -> dict[str, object]:
        doc = super()._record_doc()
        openings = [raw.hex() for _, raw in self.vault.items(ANCHOR_OPENINGS)]
        if openings:
            doc["anchors"] = openings
        if held := self.peer_anchors():
            doc["peer_anchors"] = {
                peer.hex(): [a.encode().hex() for a in anchors] for peer, anchors in held.items()
            }
        return doc
