"""Alarms between the officers of one mission, carried by the mission mailbox.

The two-person rule refuses an officer who acts alone; this module makes sure
the *other* officers learn of it. Each of these becomes an alarm on every
other officer's device, delivered by the round schedule like any joint object
(so the relay sees nothing different):

* a solo attempt: to send a message without a co-signature, to read a message
  before a colleague released a share, to adopt a roster change without the
  signatures it needs;
* a roster change proposed (who proposed it, and what it does);
* a peer mission's card that two officers confirmed differently: each device
  tells its colleagues a digest of the card it confirmed, and a colleague who
  confirmed another card for the same mission and roster version raises the
  alarm (one of the two was shown a forged card, or a card with another relay
  or tenant);
* a colleague's device unseen for longer than the mission policy allows (a day,
  :data:`UNSEEN_AFTER`, unless it says otherwise): every
  device deposits one piece for each colleague every round, cover or not, so a
  lane that stays empty means a device that is off, lost or cut off.

An alarm names the officer and what he tried, never a message's text, a key or
a slot. A device changed to keep quiet sends none of these: what protects the
mission from it is the threshold itself (its attempt fails), and an officer
who sees nothing from a colleague's device for a day learns that too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from backchannel.client.anchors import Anchors
from backchannel.client.cards import MissionCard
from backchannel.client.device import new_id
from backchannel.client.records import PeerRecord
from backchannel.crypto.primitives import equal
from backchannel.errors import DecodeError
from backchannel.protocol import joint
from backchannel.protocol import policy as mp
from backchannel.protocol.audit import AuditKind
from backchannel.protocol.codec import Reader, Writer

#: The vault table of alarms raised on this device.
OFFICER_ALARMS = "officer_alarms"
#: The vault table of peer-card digests colleagues confirmed: key mission id + officer id.
CONFIRMED_BY = "card_confirmed_by"
#: Longest detail an alarm carries (a roster change's one-line description).
MAX_DETAIL = 300
#: A colleague's device unseen for this long (seconds) raises an alarm.
UNSEEN_AFTER = mp.DEFAULT_UNSEEN_SECONDS
#: How often (seconds of the device's clock) a colleague's last sighting is written down.
_SEEN_GRANULE = 600

#: Prefixes of the NOTICE objects this module sends (the first bytes of the body).
ALARM_NOTICE = b"alarm"
CARD_NOTICE = b"card"


class AlarmKind(IntEnum):
    SOLO_SEND = 1
    SOLO_OPEN = 2
    SOLO_ROSTER = 3
    ROSTER_PROPOSED = 4
    CARD_MISMATCH = 5
    DEVICE_UNSEEN = 6
    AUDIT_FORK = 7
    POLICY_PROPOSED = 8
    ROSTER_FORK = 9


_WHAT = {
    AlarmKind.SOLO_SEND: "tried to send a message without a colleague's co-signature (refused)",
    AlarmKind.SOLO_OPEN: "tried to read a message before a colleague released a share (refused)",
    AlarmKind.SOLO_ROSTER: (
        "tried to adopt a roster change without the signatures it needs (refused)"
    ),
    AlarmKind.ROSTER_PROPOSED: "proposed a roster change",
}

_ASK = "ask him why; if you did not agree to it, tell the mission's security officer"
_TODO = {
    AlarmKind.SOLO_SEND: _ASK,
    AlarmKind.SOLO_OPEN: _ASK,
    AlarmKind.SOLO_ROSTER: "do not sign a roster change you did not discuss in person",
    AlarmKind.ROSTER_PROPOSED: "check the change with him in person before you sign it",
    AlarmKind.POLICY_PROPOSED: (
        "check the change with him in person before you sign it (`backchannel mission policy show`)"
    ),
    AlarmKind.CARD_MISMATCH: (
        "do not send on this channel; meet, compare the peer's card and safety number again, "
        "and re-add the card that both of you checked"
    ),
    AlarmKind.AUDIT_FORK: (
        "export the audit record and the proof (`backchannel audit export`) for the "
        "mission's security officer; that device is not to be trusted"
    ),
    AlarmKind.DEVICE_UNSEEN: (
        "reach the officer another way; if his device is lost, replace it (roster change)"
    ),
    AlarmKind.ROSTER_FORK: (
        "keep the change file as proof and tell the mission's security officer: officers who "
        "sign two rosters of one version split the mission; do not sign or adopt it"
    ),
}


@dataclass(frozen=True, slots=True)
class OfficerAlarm:
    """One alarm on this device about an officer of the mission."""

    alarm_id: bytes
    #: The order alarms were raised in on this device.
    seq: int
    at: int
    officer_id: bytes
    officer: str
    kind: AlarmKind
    text: str
    todo: str


def card_digest(card: MissionCard) -> bytes:
    """What two officers compare of a peer mission's card.

    The roster chain (who the peer's officers are, under which keys) and where
    the mission receives (relay, tenant, relay key): not the epoch keys, which
    rotate within a roster version, nor which of the peer's officers signed.
    """
    w = Writer().fixed(card.mission_id, 32).u8(len(card.chain))
    for s in card.chain:
        w.var(s.encode())
    w.text(card.relay_url).text(card.tenant_id).var(card.relay_key)
    return hashlib.sha256(b"backchannel/card-digest|" + w.bytes()).digest()


class OfficerAlarms(Anchors):
    """Raising, receiving and listing the alarms between a mission's officers."""

    # --- what the desk shows ---------------------------------------------------------

    def officer_alarms(self) -> list[OfficerAlarm]:
        return sorted(self._all(OFFICER_ALARMS, OfficerAlarm), key=lambda a: a.seq)

    # --- raising -----------------------------------------------------------------

    def _tell_colleagues(self, kind: AlarmKind, detail: bytes = b"") -> None:
        """Queue an alarm about this officer's own attempt for every colleague's device."""
        m = self.mission_or_none()
        if m is None:
            return
        body = Writer().fixed(ALARM_NOTICE, len(ALARM_NOTICE)).u8(int(kind)).var(detail).bytes()
        with self._tx():
            for o in self.colleagues():
                self._send_joint(joint.JointKind.NOTICE, o, body)

    def _record(self, officer_id: bytes, kind: AlarmKind, text: str) -> OfficerAlarm:
        seq = self._counter(b"officer-alarms") + 1
        self._set_counter(b"officer-alarms", seq)
        alarm = OfficerAlarm(
            new_id(), seq, int(self._clock()), officer_id, self._officer_name(officer_id), kind,
            text, _TODO[kind],
        )  # fmt: skip
        self._put(OFFICER_ALARMS, alarm.alarm_id, alarm)
        self._audit(AuditKind.ALARM, officer_id, text)
        return alarm

    def raise_roster_fork(self, signers: list[bytes], version: int) -> None:
        """Alarm about each officer who signed a second, different roster of ``version``."""
        with self._tx():
            for officer_id in signers:
                text = (
                    f"{self._officer_name(officer_id)} signed a roster change of version "
                    f"{version} other than the one this mission adopted: a fork of its roster"
                )
                self._record(officer_id, AlarmKind.ROSTER_FORK, text)

    def _raise_fork(self, officer_id: bytes, seq: int) -> None:
        text = (
            f"{self._officer_name(officer_id)}'s device signed two different audit entries "
            f"number {seq}: it shows different officers different histories"
        )
        self._record(officer_id, AlarmKind.AUDIT_FORK, text)

    def _officer_name(self, officer_id: bytes) -> str:
        m = self.mission_or_none()
        if m is not None:
            for o in m.roster.officers:
                if equal(o.officer_id, officer_id):
                    return o.name
        return "an officer no longer on the roster"

    # --- receiving ---------------------------------------------------------------------

    def _on_officer_notice(self, sender: bytes, body: bytes) -> str | None:
        """A NOTICE of this module from a colleague; an error line if it is malformed."""
        try:
            if body.startswith(ALARM_NOTICE):
                r = Reader(body[len(ALARM_NOTICE) :])
                kind = AlarmKind(r.u8())
                detail = r.var(MAX_DETAIL).decode("utf-8", errors="replace")
                r.end()
                if kind not in _WHAT:
                    raise DecodeError("an alarm of a kind a colleague cannot raise")
                text = f"{self._officer_name(sender)} {_WHAT[kind]}"
                if kind is AlarmKind.ROSTER_PROPOSED and detail:
                    text += ": " + "".join(c if c.isprintable() else "?" for c in detail)
                self._record(sender, kind, text)
            elif body.startswith(CARD_NOTICE):
                r = Reader(body[len(CARD_NOTICE) :])
                mission_id, version, digest = r.var(64), r.u32(), r.fixed(32)
                r.end()
                raw = version.to_bytes(4, "big") + digest
                self.vault.put(CONFIRMED_BY, mission_id + sender, raw)
                self._compare_card(mission_id, sender, version, digest)
        except (DecodeError, ValueError):
            return "a colleague's notice could not be read and was set aside"
        return None

    # --- peer cards ----------------------------------------------------------------------

    def _announce_card(self, mission_id: bytes, version: int, digest: bytes) -> None:
        """Tell colleagues which card of a peer mission this officer confirmed; compare."""
        body = Writer().fixed(CARD_NOTICE, len(CARD_NOTICE)).var(mission_id).u32(version)
        body = body.fixed(digest, 32)
        with self._tx():
            for o in self.colleagues():
                self._send_joint(joint.JointKind.NOTICE, o, body.bytes())
            for key, raw in self.vault.items(CONFIRMED_BY):
                if key.startswith(mission_id) and len(key) == len(mission_id) + 16:
                    theirs = _confirmed(raw)
                    self._compare_card(mission_id, key[len(mission_id) :], *theirs)

    def _compare_card(
        self, mission_id: bytes, colleague: bytes, version: int, digest: bytes
    ) -> None:
        mine = self._confirmed_card(mission_id)
        if mine is None or mine[0] != version or equal(mine[1], digest):
            return
        name = self._officer_name(colleague)
        text = (
            f"{name} confirmed another card for the peer mission {mission_id.hex()[:8]} "
            f"(roster version {version}) than this device did: one of you was shown a "
            "forged card"
        )
        self._record(colleague, AlarmKind.CARD_MISMATCH, text)

    def _confirmed_card(self, mission_id: bytes) -> tuple[int, bytes] | None:
        """(roster version, digest) of the card this device confirmed for a peer mission."""
        rec: PeerRecord | None = self._get("peers", mission_id, PeerRecord)
        if rec is None or not rec.confirmed:
            return None
        card = self._card(rec.card, mission_id)
        return card.roster.version, card_digest(card)

    # --- devices unseen ----------------------------------------------------------------

    def _seen(self, colleague: bytes) -> None:
        """A piece from this colleague's device arrived this round."""
        now = int(self._clock())
        if now - self._counter(b"seen:" + colleague) >= _SEEN_GRANULE:
            self._set_counter(b"seen:" + colleague, now)
            self._set_counter(b"unseen-alarm:" + colleague, 0)

    def _check_unseen(self) -> None:
        """Raise, once per absence, an alarm for each colleague's device unseen too long."""
        now = int(self._clock())
        for o in self.colleagues():
            last = self._counter(b"seen:" + o)
            if last == 0:
                self._set_counter(b"seen:" + o, now)  # the watch starts now
                continue
            limit = self.mission().policy.unseen_seconds
            if now - last > limit and not self._counter(b"unseen-alarm:" + o):
                hours = (now - last) // 3600
                text = (
                    f"nothing has come from {self._officer_name(o)}'s device for "
                    f"{hours} hours: it may be off, lost or cut off"
                )
                self._record(o, AlarmKind.DEVICE_UNSEEN, text)
                self._set_counter(b"unseen-alarm:" + o, now)


def _confirmed(raw: bytes) -> tuple[int, bytes]:
    return int.from_bytes(raw[:4], "big"), raw[4:]
