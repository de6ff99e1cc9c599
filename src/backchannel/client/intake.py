"""The mission's public intake on an officer's device (``docs/intake.md``).

Every round each device asks the relay for the requests that arrived since
the last it saw (:meth:`Intake.intake_window`, carried by the driver with
the round's fetch), and opens them with the mission's intake key, which
every officer derives from the mission secret. What officers do with a
request (assign, tag, note, ignore, block, propose or approve an answer) is
an audit entry (:mod:`backchannel.client.audit`): signed, chained, and on
every colleague's desk through the mailbox. An answer goes out only once
``k`` officers of the roster (its threshold) have proposed or approved that
very text; the runner's device then seals it to the submitter's reply code
and queues it for its answer lane, one cell every round, real or cover
(:mod:`backchannel.client.engine`). Ignoring or blocking deposits nothing:
the submitter's status looks the same as for a request not yet answered.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, replace

from backchannel.client.audit import AUDIT_INTAKE
from backchannel.client.device import one
from backchannel.client.officer_alarms import OfficerAlarms
from backchannel.client.records import NetOut, dump_out
from backchannel.crypto.kem import KemPrivateKey
from backchannel.errors import BackchannelError, ConfigError, DecodeError
from backchannel.protocol import intake as pi
from backchannel.protocol import joint
from backchannel.protocol.audit import AuditEntry, AuditKind
from backchannel.protocol.codec import Reader, Writer

#: Requests one round's fetch brings at most (a flood drains over rounds).
INTAKE_WINDOW = 32
#: Notice carrying a proposed answer's text to colleagues.
INTAKE_NOTICE = b"intake"
#: Vault tables: requests opened (key: request id); answer texts (key: request
#: id + answer digest); answers sealed for the lane (key: request id).
INTAKE = "intake"
INTAKE_TEXTS = "intake_texts"
#: Proposals and approvals as colleagues' notices brought them (key: request id +
#: answer digest + officer id; value: the order this device learnt it in).
INTAKE_VOTES = "intake_votes"
INTAKE_SENT = "intake_sent"
#: The first request under each reply code (key: the code; value: its number),
#: so that a later one under the same code is known without reading them all.
INTAKE_CODES = "intake_codes"
_CODES_INDEXED = b"intake-codes-indexed"
#: The answer lane's queue of sealed answers (:class:`NetOut` records), and the lane.
INTAKE_OUT = "intake_out"
INTAKE_LANE = b"ia"
_OPEN_KEY = b"intake-open"
_AFTER = b"intake-after"
_ID_LEN = 16
#: The states a request can be in (:attr:`IntakeItem.state`).
INTAKE_STATES = ("new", "assigned", "answered", "ignored", "blocked", "duplicate")
#: Those of requests still to triage (the desk's badge counts them).
TO_TRIAGE = frozenset({"new", "assigned"})


@dataclass(frozen=True)
class IntakeRecord:
    """A request as opened on this device (kept in the encrypted vault)."""

    seq: int
    request_id: bytes
    fetched_at: int
    kind: pi.Kind
    subject: str = field(repr=False)
    body: str = field(repr=False)
    contact: str = field(repr=False)
    reply_code: bytes = field(repr=False)


@dataclass(frozen=True)
class Proposal:
    """A proposed answer and the officers of the current roster who approved it.

    ``answer_id`` names this text: an approval names it, so it counts for the
    text its officer read and for no other.
    """

    text: str
    approvals: tuple[str, ...]
    answer_id: bytes = field(repr=False)


@dataclass(frozen=True)
class IntakeItem:
    """A request with its triage, as every officer's device derives it from the audit log."""

    number: int
    request_id: bytes
    kind: str
    subject: str
    body: str
    contact: str
    received_at: int
    state: str
    assigned_to: str | None
    tags: tuple[str, ...]
    notes: tuple[tuple[str, str], ...]
    #: The answer: the one k officers approved, else the latest proposed; its
    #: approvers so far and how many it needs.
    answer: str | None
    approvals: tuple[str, ...]
    needed: int
    sent: bool
    #: Every proposed answer whose text this device holds, oldest first.
    proposals: tuple[Proposal, ...] = ()
    #: The number of the earlier request under the same reply code, if any: one
    #: reply code names one answer slot at the relay, which holds one answer, so
    #: such a request (state ``duplicate``) is answered through the earlier one.
    duplicate_of: int | None = None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:_ID_LEN]


#: The tables the requests as the desk shows them are read from (``mission``:
#: the roster, which names the officers and sets how many approvals an answer needs).
_VIEW_TABLES = (INTAKE, INTAKE_VOTES, INTAKE_TEXTS, INTAKE_CODES, INTAKE_SENT, AUDIT_INTAKE,
                "mission")  # fmt: skip


class Intake(OfficerAlarms):
    """The intake's capability: the round's fetch, triage, answers."""

    #: :meth:`intake_items` as last read, and the vault's generation of
    #: :data:`_VIEW_TABLES` it was read at.
    _intake_view: tuple[tuple[int, ...], tuple[IntakeItem, ...]] | None = None

    # --- the round ---------------------------------------------------------------

    def intake_window(self) -> tuple[int, int, bool | None]:
        """What this round's intake request asks: after which number, how many, and
        (the runner's device only) whether the intake is to be open.

        One device states the state: were every device to state what it knows,
        a colleague's device that has not yet heard of an opening would close
        the intake again in its next round. The runner is fixed by the roster,
        so which device states it tells nothing; an opening by another officer
        reaches the relay once the runner's device has heard of it.
        """
        state = self.intake_is_open() if self.is_runner else None
        return self._counter(_AFTER), INTAKE_WINDOW, state

    def take_intake(self, rows: list[tuple[int, bytes]]) -> int:
        """Open what the round's request brought; returns how many requests were new.

        A cell that does not open under the intake key (junk, or sealed to an
        older card) is counted and skipped: the public may send anything, so
        it raises no alarm and never stalls what follows it.
        """
        m = self.mission()
        if m.cell_size != pi.ANSWER_CELL_SIZE:
            return 0  # no intake on such a relay (intake_card says why)
        keys = [
            (self._card_of(secret), pi.intake_private_key(secret, m.mission_id))
            for secret in m.intake_secrets
        ]
        after = self._counter(_AFTER)
        new = 0
        with self._tx():
            self._index_reply_codes()
            for seq, cell in sorted(rows):
                if seq <= after:
                    continue
                after = seq
                req = _open_any(keys, cell)
                if req is None:
                    self._set_counter(b"intake-unreadable", self._counter(b"intake-unreadable") + 1)
                    continue
                rid = hashlib.sha256(cell).digest()[:_ID_LEN]
                if self.vault.get(INTAKE, rid) is not None:
                    continue
                record = IntakeRecord(
                    seq, rid, int(self._clock()), req.kind, req.subject, req.body, req.contact,
                    req.reply_code,
                )  # fmt: skip
                self._put(INTAKE, rid, record)
                self._note_reply_code(record)
                new += 1
            self._set_counter(_AFTER, after)
            self._queue_approved()
        return new

    def _queue_approved(self) -> None:
        """On the runner: seal each answer that reached its threshold, once, for the lane.

        Only requests with a proposed answer not yet sent are looked at: this
        runs every round, and the requests a device holds grow with every
        round of a flood, the answers only with what officers do.
        """
        if not self.is_runner or self.mission().cell_size != pi.ANSWER_CELL_SIZE:
            return
        entries = self._intake_entries()
        proposed = {
            e.subject[:_ID_LEN]
            for e in entries
            if e.kind in (AuditKind.INTAKE_ANSWER_PROPOSED, AuditKind.INTAKE_ANSWER_APPROVED)
        }
        proposed.update(key[:_ID_LEN] for key, _ in self.vault.items(INTAKE_VOTES))
        records: dict[bytes, IntakeRecord] = {}
        for rid in proposed:
            record = (
                None if self.vault.get(INTAKE_SENT, rid) else self._get(INTAKE, rid, IntakeRecord)
            )
            if record is not None:
                records[rid] = record
        if not records:
            return
        card = self.intake_card()
        for item in self._items(sorted(records.values(), key=lambda r: r.seq), entries):
            if item.sent or item.answer is None or len(item.approvals) < item.needed:
                continue
            # A duplicate (approved by a device that did not refuse it) answers in
            # the earlier request's slot, which holds one answer: nothing is sealed.
            if item.duplicate_of is not None or item.state in ("ignored", "blocked"):
                continue
            record = records[item.request_id]
            m = self.mission()
            cell = pi.seal_answer(card, record.reply_code, item.answer, secrets.token_bytes)
            slot = pi.answer_slot(pi.reply_id(card, record.reply_code))
            out = NetOut(m.relay_url, m.tenant_id, slot, cell, b"", -1, INTAKE_LANE)
            self.vault.append(INTAKE_OUT, dump_out(out))
            self.vault.put(INTAKE_SENT, item.request_id, b"\x01")
            self._audit(
                AuditKind.INTAKE_ANSWER_SENT, item.request_id + _digest(item.answer),
                "answer queued for the submitter",
            )  # fmt: skip

    # --- the card -------------------------------------------------------------------

    def intake_card(self, pow_bits: int = 14) -> pi.IntakeCard:
        """The card the mission publishes (the same on every officer's device)."""
        m = self.mission()
        if m.cell_size != pi.ANSWER_CELL_SIZE:
            raise ConfigError(
                f"the intake needs the standard cell size ({pi.ANSWER_CELL_SIZE} bytes); this "
                f"mission's relay uses {m.cell_size}"
            )
        return self._card_of(m.intake_secrets[0], pow_bits)

    def _card_of(self, secret: bytes, pow_bits: int = 14) -> pi.IntakeCard:
        m = self.mission()
        key = pi.intake_private_key(secret, m.mission_id)
        return pi.IntakeCard(
            m.name, m.mission_id, m.relay_url, m.tenant_id, key.public_key, pow_bits
        )

    def _intake_switch(self) -> tuple[int, bool]:
        """The intake's switch: (version, open) of the winning open or close entry.

        Each open or close entry names a version one above the highest its
        officer's device had seen, so a later decision wins even when two
        devices' clocks put it in the same second; two decisions made without
        seeing each other (the same version) are ordered by officer id.
        """
        best: tuple[int, bytes] = (0, b"")
        is_open = False
        for e in self._intake_entries():
            if e.kind in (AuditKind.INTAKE_OPENED, AuditKind.INTAKE_CLOSED) and len(e.subject) == 4:
                order = (int.from_bytes(e.subject, "big"), e.officer_id)
                if order > best:
                    best, is_open = order, e.kind is AuditKind.INTAKE_OPENED
        return best[0], is_open

    def intake_is_open(self) -> bool:
        """Whether the mission's officers, by their latest decision, want the intake open."""
        return self._intake_switch()[1]

    def intake_set_open(self, is_open: bool) -> None:
        """Open (or close) the intake: the next round tells the relay."""
        self.mission()
        version = self._intake_switch()[0] + 1
        kind = AuditKind.INTAKE_OPENED if is_open else AuditKind.INTAKE_CLOSED
        note = "intake opened" if is_open else "intake closed"
        self._audit(kind, version.to_bytes(4, "big"), note)

    # --- triage -------------------------------------------------------------------------

    def _intake_record(self, request: str) -> IntakeRecord:
        """A request by its number (``7`` or ``#7``) or a prefix of its id (8+ hex digits)."""
        records: list[IntakeRecord] = self._all(INTAKE, IntakeRecord)
        text = request.strip().lstrip("#")
        if text.isdigit() and len(text) < 8:
            found = [r for r in records if r.seq == int(text)]
        else:
            found = [r for r in records if len(text) >= 8 and r.request_id.hex().startswith(text)]
        if len(found) != 1:
            raise ConfigError(f"no single intake request matches {request!r}; see `intake list`")
        return found[0]

    def intake_assign(self, request: str, officer: str) -> None:
        rec = self._intake_record(request)
        m = self.mission()
        named = [o for o in m.roster.officers if o.name == officer or o.officer_id.hex() == officer]
        if len(named) != 1:
            raise ConfigError(f"no officer of the mission is named {officer!r}")
        self._audit(AuditKind.INTAKE_ASSIGNED, rec.request_id, named[0].officer_id.hex())

    def intake_tag(self, request: str, tag: str) -> None:
        tag = tag.strip()
        if not tag or len(tag) > 40 or pi.hidden_controls(tag):
            raise ConfigError("a tag is 1 to 40 characters, none a control or direction mark")
        self._audit(AuditKind.INTAKE_TAGGED, self._intake_record(request).request_id, tag)

    def intake_note(self, request: str, text: str) -> None:
        text = text.strip().replace("\r\n", "\n")  # a browser's line breaks are CRLF
        if not text or len(text.encode()) > 400:
            raise ConfigError("a note is 1 to 400 bytes of text (it is signed into the audit log)")
        if pi.hidden_controls(text, lines=True):
            raise ConfigError("a note may hold no control character or invisible direction mark")
        self._audit(AuditKind.INTAKE_NOTED, self._intake_record(request).request_id, text)

    def intake_ignore(self, request: str) -> None:
        self._audit(AuditKind.INTAKE_IGNORED, self._intake_record(request).request_id, "ignored")

    def intake_block(self, request: str) -> None:
        """Ignore this request and file later ones from the same contact as blocked."""
        self._audit(AuditKind.INTAKE_BLOCKED, self._intake_record(request).request_id, "blocked")

    def intake_answer(self, request: str, text: str) -> None:
        """Propose an answer (and approve it); it goes out once k officers approved it."""
        rec = self._intake_record(request)
        self._refuse_duplicate(self.intake_item(request))
        text = text.strip()
        try:
            pi.check_answer_text(text)
        except DecodeError as exc:
            raise ConfigError(str(exc)) from None
        if not text:
            raise ConfigError("the answer is empty")
        digest = _digest(text)
        with self._tx():
            self.vault.put(INTAKE_TEXTS, rec.request_id + digest, text.encode())
            self._vote(rec.request_id, digest, text)
            self._audit(
                AuditKind.INTAKE_ANSWER_PROPOSED, rec.request_id + digest,
                f"answer proposed ({len(text)} characters)",
            )  # fmt: skip
            self._queue_approved()

    def intake_approve(self, request: str, answer: str) -> None:
        """Approve the proposed answer ``answer`` names (its id, or the start of it,
        as ``intake show`` lists it).

        Bound to the text its officer read: a colleague who proposes another text
        meanwhile does not get this approval for it.
        """
        item = self.intake_item(request)
        rec = self._intake_record(request)
        self._refuse_duplicate(item)
        if not item.proposals:
            raise ConfigError("no answer has been proposed for this request yet")
        chosen = one(
            list(item.proposals), lambda p: p.answer_id, answer, "proposed answer",
            f"intake show {item.number}",
        )  # fmt: skip
        if self.officer.name in chosen.approvals:
            raise ConfigError("you already approved this answer; a colleague must approve it")
        digest = chosen.answer_id
        with self._tx():
            self._vote(rec.request_id, digest, "")
            self._audit(
                AuditKind.INTAKE_ANSWER_APPROVED, rec.request_id + digest, "answer approved"
            )
            self._queue_approved()

    def _refuse_duplicate(self, item: IntakeItem) -> None:
        """Refuse to answer a request whose reply code an earlier request holds.

        The reply code names the answer's slot at the relay, and a slot holds one
        cell: a second answer would be refused there and lost. The submitter
        chose the code (the same person, or a page that reused it), so he reads
        the earlier request's answer with it.
        """
        if item.duplicate_of is not None:
            first = item.duplicate_of
            raise ConfigError(
                f"request #{item.number} has the same reply code as request #{first}, and a "
                f"reply code holds one answer: answer #{first} instead (its submitter "
                "reads that answer with the code)"
            )

    def _vote(self, request_id: bytes, digest: bytes, text: str) -> None:
        """Record this officer's proposal (with its text) or approval, and tell colleagues.

        The notice travels in the mailbox like a co-signature, signed by its
        sender and ahead of audit entries, so an answer waits for no cover
        position; the audit entry written beside it is the record.
        """
        self._keep_vote(request_id, digest, self.officer.officer_id)
        notice = (
            Writer().fixed(INTAKE_NOTICE, len(INTAKE_NOTICE)).u8(2 if text else 1)
            .fixed(request_id, _ID_LEN).fixed(digest, _ID_LEN).var(text.encode()).bytes()
        )  # fmt: skip
        for o in self.colleagues():
            self._send_joint(joint.JointKind.NOTICE, o, notice)

    def _keep_vote(self, request_id: bytes, digest: bytes, officer_id: bytes) -> None:
        key = request_id + digest + officer_id
        if self.vault.get(INTAKE_VOTES, key) is None:
            order = self._counter(b"intake-votes") + 1
            self._set_counter(b"intake-votes", order)
            self.vault.put(INTAKE_VOTES, key, order.to_bytes(8, "big"))

    def _on_intake_notice(self, sender: bytes, body: bytes) -> str | None:
        """A colleague's proposal (with its text) or approval of an answer."""
        try:
            r = Reader(body)
            r.fixed(len(INTAKE_NOTICE))
            op = r.u8()
            rid, digest = r.fixed(_ID_LEN), r.fixed(_ID_LEN)
            text = r.text(pi.MAX_ANSWER_TEXT)
            r.end()
            if op not in (1, 2) or (op == 2) != bool(text):
                raise DecodeError("unknown intake notice")
            if text and _digest(text) != digest:
                raise DecodeError("the answer does not match its digest")
        except DecodeError:
            return "a colleague's intake answer notice could not be read; set aside"
        if text:
            self.vault.put(INTAKE_TEXTS, rid + digest, text.encode())
        self._keep_vote(rid, digest, sender)
        self._queue_approved()
        return None

    # --- what the desk shows --------------------------------------------------------------

    def _intake_entries(self) -> list[AuditEntry]:
        entries = self.intake_audit_entries()
        return sorted(entries, key=lambda e: (e.at, e.officer_id, e.seq))

    def _blocked_contacts(self, entries: list[AuditEntry]) -> dict[str, int]:
        """Each contact the mission blocked: the number of his first blocked request."""
        out: dict[str, int] = {}
        for e in entries:
            if e.kind is not AuditKind.INTAKE_BLOCKED:
                continue
            rec = self._get(INTAKE, e.subject[:_ID_LEN], IntakeRecord)
            if rec is not None and rec.contact:
                out[rec.contact] = min(out.get(rec.contact, rec.seq), rec.seq)
        return out

    def intake_item(self, request: str) -> IntakeItem:
        [item] = self._items([self._intake_record(request)], self._intake_entries())
        return item

    def intake_items(self) -> list[IntakeItem]:
        """Every request on this device, oldest first, with the triage all officers see.

        A desk asks again every few seconds, and a flood leaves thousands of
        requests: what was read is kept until one of the tables it comes from
        changes (on this device or through another process), so asking again
        in between costs nothing.
        """
        generation = self.vault.generation(*_VIEW_TABLES)
        if self._intake_view is not None and self._intake_view[0] == generation:
            return list(self._intake_view[1])
        records = sorted(self._all(INTAKE, IntakeRecord), key=lambda r: r.seq)
        items = self._items(records, self._intake_entries())
        self._intake_view = (generation, tuple(items))
        return items

    def _items(self, records: list[IntakeRecord], entries: list[AuditEntry]) -> list[IntakeItem]:
        """``records`` (oldest first) as the desk shows them; ``entries``: the
        intake's audit entries. Reads what it needs of the other requests
        (blocked contacts, earlier reply codes) by key, so that a few items
        cost the same however many requests the device holds."""
        m = self.mission()
        names = {o.officer_id: o.name for s in m.signed_chain() for o in s.roster.officers}
        current = {o.officer_id for o in m.roster.officers}
        by_request: dict[bytes, list[AuditEntry]] = {}
        for e in entries:
            by_request.setdefault(e.subject[:_ID_LEN], []).append(e)
        votes: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
        for key, order in self.vault.items(INTAKE_VOTES):
            votes.setdefault(key[:_ID_LEN], []).append(
                (int.from_bytes(order, "big"), key[_ID_LEN : 2 * _ID_LEN], key[2 * _ID_LEN :])
            )
        blocked = self._blocked_contacts(entries)
        self._index_reply_codes()
        items = []
        for rec in records:
            item = self._item(
                rec, by_request.get(rec.request_id, []), sorted(votes.get(rec.request_id, [])),
                names, current, m.roster.threshold,
            )  # fmt: skip
            if item.state in TO_TRIAGE and blocked.get(rec.contact, rec.seq) < rec.seq:
                # A later request from a contact the mission blocked: filed as blocked.
                item = replace(item, state="blocked")
            raw = self.vault.get(INTAKE_CODES, rec.reply_code)
            first = int.from_bytes(raw, "big") if raw is not None else rec.seq
            if first != rec.seq:
                # A later request under an earlier one's reply code: the same answer
                # slot, so it is answered through the earlier request, never apart.
                state = "duplicate" if item.state not in ("ignored", "blocked") else item.state
                item = replace(item, state=state, duplicate_of=first)
            items.append(item)
        return items

    def _index_reply_codes(self) -> None:
        """Fill :data:`INTAKE_CODES` from the requests held, once (a home from
        before the index); :meth:`take_intake` keeps it after that."""
        if self._counter(_CODES_INDEXED):
            return
        with self._tx():
            for rec in sorted(self._all(INTAKE, IntakeRecord), key=lambda r: r.seq):
                self._note_reply_code(rec)
            self._set_counter(_CODES_INDEXED, 1)

    def _note_reply_code(self, rec: IntakeRecord) -> None:
        if self.vault.get(INTAKE_CODES, rec.reply_code) is None:
            self.vault.put(INTAKE_CODES, rec.reply_code, rec.seq.to_bytes(8, "big"))

    def _item(
        self,
        rec: IntakeRecord,
        entries: list[AuditEntry],
        votes: list[tuple[int, bytes, bytes]],
        names: dict[bytes, str],
        current: set[bytes],
        needed: int,
    ) -> IntakeItem:
        state, assigned, tags, notes = "new", None, [], []
        proposed: list[bytes] = []
        approvers: dict[bytes, set[bytes]] = {}
        sent = False
        for e in entries:
            who = names.get(e.officer_id, e.officer_id.hex()[:8])
            if e.kind is AuditKind.INTAKE_ASSIGNED:
                assigned = names.get(bytes.fromhex(e.note), e.note[:8]) if _hex(e.note) else None
                state = "assigned" if state == "new" else state
            elif e.kind is AuditKind.INTAKE_TAGGED:
                tags.append(e.note)
            elif e.kind is AuditKind.INTAKE_NOTED:
                notes.append((who, e.note))
            elif e.kind is AuditKind.INTAKE_IGNORED:
                state = "ignored"
            elif e.kind is AuditKind.INTAKE_BLOCKED:
                state = "blocked"
            elif e.kind in (AuditKind.INTAKE_ANSWER_PROPOSED, AuditKind.INTAKE_ANSWER_APPROVED):
                digest = e.subject[_ID_LEN:]
                if e.kind is AuditKind.INTAKE_ANSWER_PROPOSED and digest not in proposed:
                    proposed.append(digest)
                if e.officer_id in current:
                    approvers.setdefault(digest, set()).add(e.officer_id)
            elif e.kind is AuditKind.INTAKE_ANSWER_SENT:
                sent = True
        for _, digest, officer_id in votes:
            if digest not in proposed:
                proposed.append(digest)
            if officer_id in current:
                approvers.setdefault(digest, set()).add(officer_id)
        proposals: list[Proposal] = []
        for digest in proposed:
            raw = self.vault.get(INTAKE_TEXTS, rec.request_id + digest)
            if raw is None:  # its text has not arrived yet
                continue
            by = tuple(sorted(names.get(o, o.hex()[:8]) for o in approvers.get(digest, ())))
            proposals.append(Proposal(raw.decode(), by, digest))
        approved = [p for p in proposals if len(p.approvals) >= needed]
        chosen = approved[0] if approved else (proposals[-1] if proposals else None)
        if approved:
            state = "answered"
        return IntakeItem(
            rec.seq, rec.request_id, rec.kind.label, rec.subject, rec.body, rec.contact,
            rec.fetched_at, state, assigned, tuple(tags), tuple(notes),
            chosen.text if chosen else None, chosen.approvals if chosen else (), needed, sent,
            tuple(proposals),
        )  # fmt: skip


def _hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _open_any(
    keys: list[tuple[pi.IntakeCard, KemPrivateKey]], cell: bytes
) -> pi.IntakeRequest | None:
    """The request, opened under the current card's key or an earlier one's."""
    for card, key in keys:
        try:
            return pi.open_request(key, card, cell)
        except BackchannelError:
            continue
    return None
