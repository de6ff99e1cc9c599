"""An officer's epoch keys: drawn on a schedule, told to colleagues and peers.

Each officer's device holds the private keys that the peers seal his shares
to. A new one is drawn on the mission policy's schedule (a day by default) or
by hand (``officer rotate-key``); colleagues learn its certificate through
the mission mailbox, and the device that sends on each channel announces it
to the peer in the channel's own cells (``protocol/key_announce.py``), whose
devices seal to it from their next send epoch. A copy of this device's state
taken before a rotation opens nothing sealed to this officer after the peers
have learned the new key (post-compromise security); erasing old keys
(``officer erase-keys``) is what protects what was sealed before.
"""

from __future__ import annotations

from dataclasses import replace

from backchannel.client.mission import MissionState
from backchannel.client.officer_alarms import OfficerAlarms
from backchannel.crypto.primitives import equal
from backchannel.protocol import joint
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.identity import EpochKeyCert

#: When this device last drew an epoch key (its clock, seconds).
_ROTATED_AT = b"epoch-key-at"


class EpochKeys(OfficerAlarms):
    """Drawing, telling and learning epoch keys."""

    def rotate_epoch_key(self, why: str = "by hand") -> EpochKeyCert:
        """Start a new epoch key; colleagues learn its certificate through the
        mailbox, and the peers from the device that sends on each channel, which
        announces it there (``protocol/key_announce.py``); their next key epoch
        then seals to it. Erase the old key with :meth:`erase_epoch_keys` once
        the messages sealed to it have been opened.
        """
        held = list(self.home.epoch_keys)
        try:
            with self._tx():
                key = self.home.rotate_epoch_key()
                cert = key.certify(self.officer)
                self._set_counter(_ROTATED_AT, int(self._clock()))
                m = self.mission_or_none()
                if m is not None:
                    self._store_cert(m, cert)
                    for o in m.roster.officers:
                        if not equal(o.officer_id, self.officer.officer_id):
                            body = cert.encode()
                            self._send_joint(joint.JointKind.EPOCH_CERT, o.officer_id, body)
                    self._announce(cert)
                    self._audit(
                        AuditKind.EPOCH_KEY_ROTATED, cert.officer_id, f"epoch {cert.epoch}, {why}"
                    )
        except BaseException:
            self.home.epoch_keys = held  # undone in the vault (a full disk): here too
            raise
        return cert

    def rotate_on_schedule(self) -> EpochKeyCert | None:
        """Draw the next epoch key once the mission policy's period (a day by
        default) has passed since the last: a copy of this device's state taken
        before then opens nothing the peers seal to this officer after they
        learn the new key. Called at the start of each round."""
        m = self.mission_or_none()
        if m is None:
            return None
        now = int(self._clock())
        last = self._counter(_ROTATED_AT)
        if last == 0 or now < last:  # the schedule starts now (or the clock went back)
            self._set_counter(_ROTATED_AT, now)
            return None
        if now - last < m.policy.epoch_seconds:
            return None
        return self.rotate_epoch_key("on the mission policy's schedule")

    def _announce(self, cert: EpochKeyCert) -> None:
        """On the device that sends: the peers' next cells carry ``cert``."""
        if not self.is_runner:
            return
        for rec in self.channels():
            ep = self._endpoint(rec.channel_id)
            if ep.sends:
                ep.announce_keys([cert])
                self._save_endpoint(rec.channel_id, ep)

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
            self._announce(cert)

    def _learn_keys(self, mission_id: bytes, certs: tuple[EpochKeyCert, ...]) -> None:
        """Peer officers' epoch keys announced in a channel (each checked there):
        kept where newer than what this device seals to."""
        rec = self.peer(mission_id)
        known = {c.officer_id: c.epoch for c in self._peer_card(mission_id).certs}
        new = [c for c in certs if c.officer_id in known and c.epoch > known[c.officer_id]]
        if not new:
            return
        ids = {c.officer_id for c in new}
        kept = [r for r in rec.certs if EpochKeyCert.decode(r).officer_id not in ids]
        self._put("peers", mission_id, replace(rec, certs=(*kept, *(c.encode() for c in new))))
        for c in new:
            self._audit(AuditKind.PEER_KEY_LEARNED, c.officer_id, f"{rec.name}: epoch {c.epoch}")
