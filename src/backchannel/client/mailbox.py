"""The mission-internal mailbox, on the round schedule.

An officer's action (co-sign request, co-signature, share request, share,
notice, epoch certificate) only *queues* a joint object here, persisted in the
vault. Every round the engine asks :meth:`Mailbox.produce` for exactly one
cell per colleague: the next piece of the oldest object waiting for that
colleague, or a cover cell. What colleagues deposited for us comes back
through :meth:`Mailbox.take`, which reassembles objects and hands each to a
handler. A piece that fails to open, an object that fails to verify and an
object left incomplete are set aside with an alarm; they never stall what
comes after them.

Mailbox slots are ``joint.mailbox_slot(secret, sender, recipient, n)`` for
n = 0, 1, 2, ...: every exchange a device makes fills the next n of each
colleague's lane, so a lane has no holes and a reader waits at the first slot
not yet filled.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from backchannel.client import statecodec
from backchannel.client.device import Device, new_id
from backchannel.errors import BackchannelError, RemoteProtocolError
from backchannel.protocol import joint

#: The vault queue of objects waiting to go out.
JOINT_OUT = "joint_out"
#: Audit entries for colleagues: they go only in pieces that would otherwise be
#: cover, so they never delay a co-sign request or a share.
AUDIT_OUT = "audit_out"
#: Most pieces kept while an object from a colleague is being reassembled.
MAX_PARTIAL = 1024

Handler = Callable[[joint.JointObject], str | None]


@dataclass(frozen=True)
class JointOut:
    """A sealed object waiting for the rounds; ``sent`` pieces are already in cells."""

    recipient: bytes
    object_id: bytes
    sealed: bytes = field(repr=False)


@dataclass(frozen=True)
class MailboxCursor:
    """How far the pieces of the oldest waiting object for one colleague have gone."""

    entry_id: int
    sent: int
    queue: str = JOINT_OUT


@dataclass(frozen=True)
class Reassembly:
    """Pieces of one colleague's object received so far."""

    pieces: tuple[bytes, ...] = field(default=(), repr=False)
    object_id: bytes = b""
    count: int = 0


class Mailbox:
    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.handler: Handler = lambda obj: None

    # --- out ---------------------------------------------------------------------

    def send(self, kind: joint.JointKind, recipient: bytes, body: bytes) -> bytes:
        """Seal an object to a colleague and queue it for the rounds; returns its id."""
        dev = self.dev
        m = dev.mission()
        obj = joint.JointObject(kind, new_id(), dev.officer.officer_id, recipient, body)
        sealed = joint.seal_object(obj, dev.officer, m.cert_of(recipient), m.mission_id)
        queue = AUDIT_OUT if kind is joint.JointKind.AUDIT else JOINT_OUT
        dev.vault.append(queue, statecodec.dumps(JointOut(recipient, obj.object_id, sealed)))
        return obj.object_id

    def waiting(self) -> int:
        """Objects queued for colleagues and not yet wholly in cells (audit entries aside)."""
        return len(self.dev.vault.pending(JOINT_OUT))

    def waiting_audit(self) -> int:
        """Audit entries queued for colleagues: they go when the lanes have room."""
        return len(self.dev.vault.pending(AUDIT_OUT))

    def _next(
        self, recipient: bytes, cursor: MailboxCursor | None
    ) -> tuple[str, int, JointOut, int] | None:
        """(queue, entry, object, pieces sent) of the object whose piece goes next.

        An object already begun goes on first (its pieces must be consecutive),
        then the oldest joint object, then the oldest audit entry.
        """
        for queue in (JOINT_OUT, AUDIT_OUT):
            for entry_id, raw in self.dev.vault.pending(queue):
                out = statecodec.loads(JointOut, raw)
                if out.recipient != recipient:
                    continue
                if cursor is not None and cursor.queue == queue and cursor.entry_id == entry_id:
                    return queue, entry_id, out, cursor.sent
        for queue in (JOINT_OUT, AUDIT_OUT):
            for entry_id, raw in self.dev.vault.pending(queue):
                out = statecodec.loads(JointOut, raw)
                if out.recipient == recipient:
                    return queue, entry_id, out, 0
        return None

    def produce(self, recipient: bytes) -> tuple[bytes, bytes]:
        """The (slot, cell) of ``recipient``'s lane for this exchange: a piece, or cover.

        The caller persists the cell in the same vault transaction.
        """
        dev = self.dev
        m = dev.mission()
        name = b"out" + recipient
        n = dev._counter(name)
        dev._set_counter(name, n + 1)
        slot = joint.mailbox_slot(m.secret, dev.officer.officer_id, recipient, n)
        key = b"mbout" + recipient
        cursor: MailboxCursor | None = dev._get("mb_cursor", key, MailboxCursor)
        chosen = self._next(recipient, cursor)
        if chosen is not None:
            queue, entry_id, out, sent = chosen
            pieces = joint.split_object(out.sealed, m.cell_size)
            cell = joint.chunk_cell(
                slot,
                out.object_id,
                sent,
                len(pieces),
                pieces[sent],
                m.secret,
                m.cell_size,
                secrets.token_bytes,
            )
            if sent + 1 == len(pieces):
                dev.vault.mark_done(queue, entry_id)
                dev.vault.delete("mb_cursor", key)
            else:
                dev._put("mb_cursor", key, MailboxCursor(entry_id, sent + 1, queue))
            return slot, cell
        return slot, joint.cover_cell(slot, m.secret, m.cell_size, secrets.token_bytes)

    # --- in ----------------------------------------------------------------------

    def next_slot(self, sender: bytes) -> int:
        """The first position of ``sender``'s lane to us not read yet."""
        return self.dev._counter(b"in" + sender)

    def slots(self, sender: bytes, count: int) -> list[bytes]:
        """The next ``count`` slots of ``sender``'s lane to us, in order."""
        m = self.dev.mission()
        me = self.dev.officer.officer_id
        first = self.next_slot(sender)
        return [joint.mailbox_slot(m.secret, sender, me, first + i) for i in range(count)]

    def take(self, sender: bytes, cells: list[bytes], alarms: list[str]) -> int:
        """Act on the next cells of ``sender``'s lane (consecutive, from :meth:`next_slot`).

        Returns how many objects were completed.
        """
        dev = self.dev
        m = dev.mission()
        me = dev.officer.officer_id
        name = b"in" + sender
        n = dev._counter(name)
        st: Reassembly = dev._get("mb_in", sender, Reassembly) or Reassembly()
        done = 0
        for i, cell in enumerate(cells):
            slot = joint.mailbox_slot(m.secret, sender, me, n + i)
            note: str | None = None
            complete: bytes | None = None
            try:
                chunk = joint.open_cell(cell, slot, m.secret, m.cell_size)
            except RemoteProtocolError:
                alarms.append("a mailbox cell from a colleague failed to open and was set aside")
                st = self._abandon(st, alarms)
                chunk = None
            if chunk is not None and chunk.is_cover:
                st = self._abandon(st, alarms)
            elif chunk is not None:
                if st.pieces and (chunk.object_id != st.object_id or chunk.index != len(st.pieces)):
                    st = self._abandon(st, alarms)
                if not st.pieces and chunk.index != 0:
                    alarms.append(
                        "a mailbox object from a colleague arrived without its beginning "
                        "and was set aside"
                    )
                else:
                    pieces = (*st.pieces, chunk.data)
                    if len(pieces) < chunk.count and len(pieces) < MAX_PARTIAL:
                        st = Reassembly(pieces, chunk.object_id, chunk.count)
                    else:
                        st = Reassembly()
                        complete = b"".join(pieces)
            with dev._tx():  # acting on an object and moving past it are one step
                if complete is not None:
                    note, counted = self._open(sender, complete)
                    done += 1 if counted else 0
                dev._put("mb_in", sender, st)
                dev._set_counter(name, n + i + 1)
            if note is not None:
                alarms.append(note)
        return done

    def _abandon(self, st: Reassembly, alarms: list[str]) -> Reassembly:
        if st.pieces:
            alarms.append("a mailbox object from a colleague was left incomplete and was set aside")
        return Reassembly()

    def _open(self, sender: bytes, sealed: bytes) -> tuple[str | None, bool]:
        """Open and act on a complete object: (an alarm line or None, whether it counts).

        Audit entries do not count among the objects a round brought: they ask
        nothing of the officer.
        """
        dev = self.dev
        m = dev.mission()
        try:
            obj = joint.open_object(
                sealed, dev.officer, dev.home.epoch_keys, m.roster, m.mission_id
            )
        except RemoteProtocolError:
            return "a mailbox object from a colleague failed to verify and was set aside", True
        if obj.sender_id != sender:
            return "a mailbox object names another sender than its slot and was set aside", True
        counted = obj.kind is not joint.JointKind.AUDIT
        try:
            with dev._tx():  # a handler that fails leaves nothing half-written
                return self.handler(obj), counted
        except BackchannelError as exc:
            # A well-signed object that cannot be acted on (a malformed body from a
            # colleague's device, say) must not stall the objects behind it.
            note = f"a mailbox object from a colleague could not be used ({exc}); set aside"
            return note, counted
