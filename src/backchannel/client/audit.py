"""The mission's audit log on one device (``docs/spec/audit-v1.md``).

Each capability writes down what its officer did with :meth:`Audit._audit`:
the entry joins his hash chain (:mod:`backchannel.protocol.audit`) and goes to
every colleague's device through the mailbox, in pieces that would otherwise
be cover. A colleague's device checks the entry (his signature, his chain) and
keeps it; so every device holds every officer's chain, and a device that
rewrites its own history is caught: :meth:`Audit.audit_verify` names the entry
where a chain breaks, and two signed entries with one number, where one
device receives both, are kept as a proof of the fork. (One that shows two
colleagues two histories, one each, is found where their records meet:
``docs/spec/audit-v1.md`` §4.)

:func:`export_record` writes a record a review board can check offline with
:func:`verify_record` (``backchannel audit verify --file``): the mission's
roster chain, verified from the mission id, the mission policy's signed
changes, each verified against the roster it names, every officer's entries,
the proofs of relay misbehaviour this device kept, and the messages this
device sent or opened for the record: each with the signatures of ``k``
officers of its sender's roster (the peer's roster chain comes with it,
verified from the peer's mission id) and its content key, which opens that one
message and shows what the signatures cover.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from backchannel.client import statecodec
from backchannel.client.cards import MissionCard
from backchannel.client.device import Device
from backchannel.client.records import DraftRecord, InboxRecord
from backchannel.crypto.primitives import equal
from backchannel.errors import BackchannelError, DecodeError, SignatureError
from backchannel.protocol import joint
from backchannel.protocol import policy as mp
from backchannel.protocol import roster as rs
from backchannel.protocol.audit import (
    GENESIS,
    AuditEntry,
    AuditKind,
    ChainProblem,
    KeyOf,
    check_chain,
    check_fork,
)
from backchannel.protocol.audit_anchor import (
    AnchorOpening,
    AnchorProblem,
    SignedAnchor,
    check_anchor,
)
from backchannel.protocol.evidence import verify_misbehaviour
from backchannel.protocol.identity import OFFICER_ID_LEN, OfficerPublic
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.sealing import verify_on_record
from backchannel.protocol.states import SendState

#: The vault table of every officer's entries: key officer id + number (8 bytes).
AUDIT = "audit"
#: This officer's last entry: its number (8 bytes) and digest.
AUDIT_HEAD = "audit_head"
#: Pairs of entries that prove an officer's device signed two histories.
AUDIT_FORKS = "audit_forks"
#: The intake's entries (:data:`INTAKE_KINDS`) once more, under the same keys:
#: every round asks whether the intake is open, and the log keeps growing.
AUDIT_INTAKE = "audit_intake"
#: Whether :data:`AUDIT_INTAKE` holds every intake entry of :data:`AUDIT` (a
#: home made before it existed builds it at its first read).
AUDIT_INDEXED = "audit_indexed"
#: The entries of the intake's triage and its switch.
INTAKE_KINDS = frozenset(k for k in AuditKind if k.name.startswith("INTAKE_"))
#: The first line of an exported record.
RECORD_FORMAT = "backchannel-audit-record-1"
#: A sent message is on the record once it went out with its signatures.
_SENT = frozenset({SendState.QUEUED, SendState.DELIVERED})


def _key(officer_id: bytes, seq: int) -> bytes:
    return officer_id + seq.to_bytes(8, "big")


class Audit(Device):
    """Writing, receiving and checking the audit log."""

    # --- writing -------------------------------------------------------------------

    def _audit(self, kind: AuditKind, subject: bytes = b"", note: str = "") -> None:
        """Add an entry for this officer and queue it for every colleague's device."""
        m = self.mission_or_none()
        if m is None:
            return
        me = self.officer.officer_id
        with self._tx():
            head = self.vault.get(AUDIT_HEAD, me) or bytes(8) + GENESIS
            seq, prev = int.from_bytes(head[:8], "big"), head[8:]
            entry = AuditEntry.make(
                m.mission_id, self.officer, seq + 1, prev, int(self._clock()), kind, subject,
                _clip(note, 400),
            )  # fmt: skip
            self._keep(_key(me, seq + 1), entry.encode(), kind)
            self.vault.put(AUDIT_HEAD, me, (seq + 1).to_bytes(8, "big") + entry.digest())
            for o in self.colleagues():
                self.mailbox.send(joint.JointKind.AUDIT, o, entry.encode())

    # --- receiving -------------------------------------------------------------------

    def _on_audit(self, sender: bytes, body: bytes) -> str | None:
        """A colleague's entry: kept if it is his and signed by him; a fork is kept as proof."""
        m = self.mission()
        try:
            entry = AuditEntry.decode(body)
        except DecodeError:
            return "an audit entry from a colleague could not be read and was set aside"
        if not equal(entry.officer_id, sender) or not equal(entry.mission_id, m.mission_id):
            return "a colleague's device sent an audit entry that is not its own; set aside"
        author = self._audit_key(sender)
        try:
            if author is None:
                raise SignatureError("no roster names the author")
            entry.verify(author)
        except SignatureError:
            return "an audit entry from a colleague did not verify and was set aside"
        key = _key(sender, entry.seq)
        held = self.vault.get(AUDIT, key)
        if held is None:
            with self._tx():
                self._keep(key, body, entry.kind)
            return None
        if held == body:
            return None
        if check_fork(AuditEntry.decode(held), entry, author):
            self.vault.put(AUDIT_FORKS, key, _pair(held, body))
            self._raise_fork(sender, entry.seq)
        return None

    def _keep(self, key: bytes, body: bytes, kind: AuditKind) -> None:
        """Store an entry in the log, and in the intake's index if it is the intake's."""
        self.vault.put(AUDIT, key, body)
        if kind in INTAKE_KINDS:
            self.vault.put(AUDIT_INTAKE, key, body)

    def _raise_fork(self, officer_id: bytes, seq: int) -> None:
        """Tell this device's officer; :class:`OfficerAlarms` records it as an alarm."""
        raise NotImplementedError

    def _audit_key(self, officer_id: bytes) -> OfficerPublic | None:
        """The officer's public key from any roster version of the mission."""
        m = self.mission_or_none()
        if m is None:
            return None
        for signed in reversed(m.signed_chain()):
            if signed.roster.contains(officer_id):
                return signed.roster.officer(officer_id)
        return None

    # --- reading and checking -------------------------------------------------------

    def audit_entries(self) -> list[AuditEntry]:
        """Every entry this device holds, officer by officer, in order."""
        return [AuditEntry.decode(v) for _, v in sorted(self.vault.items(AUDIT))]

    def intake_audit_entries(self) -> list[AuditEntry]:
        """The entries of :data:`INTAKE_KINDS` this device holds (as
        :meth:`audit_entries` would list them), read from their own index."""
        if self.vault.get(AUDIT_INDEXED, b"intake") is None:
            with self._tx():
                for key, body in self.vault.items(AUDIT):
                    if AuditEntry.decode(body).kind in INTAKE_KINDS:
                        self.vault.put(AUDIT_INTAKE, key, body)
                self.vault.put(AUDIT_INDEXED, b"intake", b"\x01")
        # Read every round (the intake's switch, answers to send): each entry is
        # decoded once while it is unchanged.
        return [
            self.vault.decoded(AUDIT_INTAKE, k, v, AuditEntry, _decode_entry)
            for k, v in sorted(self.vault.items(AUDIT_INTAKE))
        ]

    def audit_verify(self) -> list[str]:
        """What is wrong with the audit log on this device; an empty list when nothing is."""
        m = self.mission()
        problems = _check_all(m.mission_id, self.vault.items(AUDIT), self._audit_key)
        for key, _ in sorted(self.vault.items(AUDIT_FORKS)):
            seq = int.from_bytes(key[OFFICER_ID_LEN:], "big")
            problems.append(
                str(ChainProblem(key[:OFFICER_ID_LEN], seq, "signed twice, differently (a fork)"))
            )
        return problems

    def export_record(self) -> str:
        """The audit log as a record a third party can check offline (JSON text)."""
        return json.dumps(self._record_doc(), indent=1) + "\n"

    def _record_doc(self) -> dict[str, object]:
        m = self.mission()
        record: dict[str, object] = {
            "format": RECORD_FORMAT,
            "mission_id": m.mission_id.hex(),
            "mission": m.name,
            "roster_chain": [c.hex() for c in m.chain],
            "policy_chain": [c.hex() for c in m.policies],
            "entries": [v.hex() for _, v in sorted(self.vault.items(AUDIT))],
            "forks": [_split_pair(v)[0].hex() + ":" + _split_pair(v)[1].hex()
                      for _, v in sorted(self.vault.items(AUDIT_FORKS))],
        }  # fmt: skip
        messages, peers = self._messages_on_record()
        if messages:
            record["messages"] = messages
            record["peers"] = peers
        if evidence := self.log.evidence():
            record["relay_evidence"] = [blob.hex() for blob in evidence]
        return record

    def _messages_on_record(self) -> tuple[list[dict[str, str]], dict[str, list[str]]]:
        """The signed messages this device sent or opened, with their content keys, and
        the roster chains of the peers that signed those it received."""
        out: list[dict[str, str]] = []
        peers: dict[str, list[str]] = {}
        peer_of = {c.channel_id: c.peer_mission for c in self.channels()}
        for _, raw in sorted(self.vault.items("drafts")):
            draft = statecodec.loads(DraftRecord, raw)
            o = draft.outgoing
            msg, key = o.message, draft.record_key
            # Deniable by its header, whatever the draft kept: a deniable message
            # never goes on the record (a record is for third parties to check).
            if o.state in _SENT and msg is not None and key and not msg.header.deniable:
                out.append(_on_record("sent", msg.encode(), key, b""))
        for _, raw in sorted(self.vault.items("inbox")):
            item = statecodec.loads(InboxRecord, raw)
            peer = peer_of.get(item.channel_id)
            if item.deniable or not item.content_key or peer is None:
                continue
            out.append(_on_record("received", item.message, item.content_key, peer))
            card = MissionCard.decode(self.peer(peer).card)
            peers[peer.hex()] = [s.encode().hex() for s in card.chain]
        return out, peers


def _decode_entry(_: type[AuditEntry], raw: bytes) -> AuditEntry:
    return AuditEntry.decode(raw)


def _clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, on a character boundary."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def _on_record(direction: str, message: bytes, key: bytes, peer: bytes) -> dict[str, str]:
    doc = {"direction": direction, "message": message.hex(), "content_key": key.hex()}
    if peer:
        doc["peer_mission_id"] = peer.hex()
    return doc


class RecordCheck(NamedTuple):
    """What :func:`verify_record` found: entries, messages and peers' anchors checked,
    and every problem."""

    entries: int
    messages: int
    problems: list[str]
    anchors: int = 0


def verify_record(text: str, peer_records: Sequence[str] = ()) -> RecordCheck:
    """Check an exported record offline: entries and messages checked, problems found.

    The roster chain is verified from the mission id the record names, so the
    officers' keys come from the record itself; whoever checks should compare
    that mission id with the one they know. Each of ``peer_records`` (records of
    peer missions) must hold an anchor of this mission's audit log that this
    record opens (§6): the latest one its officers signed.
    """
    try:
        record = json.loads(text)
        if record.get("format") != RECORD_FORMAT:
            raise DecodeError("this is not an audit record")
        mission_id = bytes.fromhex(record["mission_id"])
        chain = [rs.SignedRoster.decode(bytes.fromhex(c)) for c in record["roster_chain"]]
        entries = [bytes.fromhex(e) for e in record["entries"]]
        policies = [
            mp.SignedPolicy.decode(bytes.fromhex(p)) for p in record.get("policy_chain", [])
        ]
    except (ValueError, KeyError, TypeError, AttributeError, BackchannelError):
        raise DecodeError("the audit record is damaged or not an audit record") from None
    rosters = rs.verify_chain(mission_id, chain)
    policy_problems = []
    try:
        mp.verify_chain(mission_id, policies, rosters)
    except mp.PolicyError as exc:
        policy_problems.append(f"the mission policy's changes: {exc}")

    def key_of(officer_id: bytes) -> OfficerPublic | None:
        for r in reversed(rosters):
            if r.contains(officer_id):
                return r.officer(officer_id)
        return None

    keyed: list[tuple[bytes, bytes]] = []
    for raw in entries:
        e = AuditEntry.decode(raw)
        keyed.append((_key(e.officer_id, e.seq), raw))
    problems = policy_problems + _check_all(mission_id, keyed, key_of)
    anchored, anchor_problems = _check_anchors(
        mission_id, record.get("anchors", []), peer_records, key_of, dict(keyed)
    )
    messages = record.get("messages", [])
    problems += _check_messages(messages, rosters, record.get("peers", {}))
    for i, blob in enumerate(record.get("relay_evidence", [])):
        try:
            verify_misbehaviour(bytes.fromhex(blob))
        except (ValueError, TypeError, BackchannelError):
            problems.append(f"proof of relay misbehaviour {i + 1}: does not hold")
    return RecordCheck(len(entries), len(messages), problems + anchor_problems, anchored)


def _check_anchors(
    mission_id: bytes,
    openings_hex: list[str],
    peer_records: Sequence[str],
    key_of: KeyOf,
    entries: dict[bytes, bytes],
) -> tuple[int, list[str]]:
    """The latest anchor each peer record holds of this mission, signed by one of its
    officers, must be opened by this record (``protocol/audit_anchor.py``)."""
    try:
        openings = [AnchorOpening.decode(bytes.fromhex(o)) for o in openings_hex]
    except (ValueError, TypeError, BackchannelError):
        return 0, ["the record's openings of audit anchors are damaged"]

    def digest_of(officer_id: bytes, seq: int) -> bytes | None:
        raw = entries.get(_key(officer_id, seq))
        return AuditEntry.decode(raw).digest() if raw is not None else None

    checked, problems = 0, []
    for i, text in enumerate(peer_records):
        try:
            peer = json.loads(text)
            if peer.get("format") != RECORD_FORMAT:
                raise DecodeError("not an audit record")
            name = str(peer.get("mission", f"peer record {i + 1}"))
            held = peer.get("peer_anchors", {}).get(mission_id.hex(), [])
            anchors = [SignedAnchor.decode(bytes.fromhex(a)) for a in held]
        except (ValueError, TypeError, AttributeError, BackchannelError):
            problems.append(f"peer record {i + 1}: damaged or not an audit record")
            continue
        signed = [a for a in anchors if _signed_by_ours(a, mission_id, key_of)]
        if len(signed) < len(anchors):
            problems.append(f"{name}'s record holds {len(anchors) - len(signed)} anchor(s) "
                            "of this mission that none of its officers signed")  # fmt: skip
        if not signed:
            problems.append(f"{name}'s record holds no anchor of this mission's audit log")
            continue
        latest = max(signed, key=lambda a: a.round)
        try:
            check_anchor(latest, key_of(latest.officer_id), openings, digest_of)
            checked += 1
        except (AnchorProblem, SignatureError) as exc:
            problems.append(f"the latest anchor {name} holds (round {latest.round}): {exc}")
    return checked, problems


def _signed_by_ours(anchor: SignedAnchor, mission_id: bytes, key_of: KeyOf) -> bool:
    author = key_of(anchor.officer_id)
    if author is None or not equal(anchor.mission_id, mission_id):
        return False
    try:
        anchor.verify(author)
    except SignatureError:
        return False
    return True


def _check_messages(
    messages: list[dict[str, str]], ours: list[rs.Roster], peer_chains: dict[str, list[str]]
) -> list[str]:
    """Each message on the record: signed by ``k`` officers of its sender's roster at the
    version it names, and opened by its content key."""
    problems: list[str] = []
    peers: dict[str, list[rs.Roster]] = {}
    for i, doc in enumerate(messages):
        try:
            msg = SealedMessage.decode(bytes.fromhex(doc["message"]))
            key = bytes.fromhex(doc["content_key"])
            if doc["direction"] == "sent":
                rosters = ours
            else:
                peer = doc["peer_mission_id"]
                if peer not in peers:
                    chain = [rs.SignedRoster.decode(bytes.fromhex(c)) for c in peer_chains[peer]]
                    peers[peer] = rs.verify_chain(bytes.fromhex(peer), chain)
                rosters = peers[peer]
            roster = next((r for r in rosters if r.version == msg.header.sender_roster), None)
            if roster is None:
                raise SignatureError("its sender's roster version is not in the record")
            verify_on_record(msg, key, roster)
        except (ValueError, KeyError, TypeError, AttributeError):
            problems.append(f"message {i + 1}: damaged in the record")
        except BackchannelError as exc:
            problems.append(f"message {i + 1} ({doc.get('direction')}): {exc}")
    return problems


def _check_all(mission_id: bytes, items: Iterable[tuple[bytes, bytes]], key_of: KeyOf) -> list[str]:
    by_officer: dict[bytes, list[AuditEntry]] = {}
    problems: list[str] = []
    for key, raw in sorted(items):
        officer_id = key[:OFFICER_ID_LEN]
        try:
            by_officer.setdefault(officer_id, []).append(AuditEntry.decode(raw))
        except DecodeError:
            seq = int.from_bytes(key[OFFICER_ID_LEN:], "big")
            problems.append(str(ChainProblem(officer_id, seq, "cannot be read")))
    for officer_id, entries in by_officer.items():
        problem = check_chain(mission_id, officer_id, entries, key_of)
        if problem is not None:
            problems.append(str(problem))
    return problems


def _pair(a: bytes, b: bytes) -> bytes:
    return len(a).to_bytes(4, "big") + a + b


def _split_pair(raw: bytes) -> tuple[bytes, bytes]:
    n = int.from_bytes(raw[:4], "big")
    return raw[4 : 4 + n], raw[4 + n :]
