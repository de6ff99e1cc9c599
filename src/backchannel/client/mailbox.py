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

**Generations.** A roster change that removes an officer gives the mission a
new secret (the removed officer's copy must find no later slot and open no
later cell). Each device that adopts it ends its lanes under the old secret
and begins new ones under the new secret at n = 0; an object half sent goes
again whole in the new lane, and a ``LANE_END`` notice, the new lane's first
news, tells the colleague where the old lane ended. A reader keeps one of its
window's places on the old lane until it has read it to that end (the window
keeps its size), so what a colleague deposited before he adopted, or before we
did, is read in order and nothing twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from backchannel.client import statecodec
from backchannel.client.device import Device, new_id
from backchannel.client.mission import MissionState
from backchannel.client.streams import Streams
from backchannel.errors import (
    BackchannelError,
    KeystoreError,
    RemoteProtocolError,
    ReplayDetected,
    StoreError,
)
from backchannel.protocol import joint

#: The vault queue of objects waiting to go out.
JOINT_OUT = "joint_out"
#: Audit entries for colleagues: they go only in pieces that would otherwise be
#: cover, so they never delay a co-sign request or a share.
AUDIT_OUT = "audit_out"
#: The kinds that go in that queue: audit entries and the openings of anchors.
_LOW = frozenset({joint.JointKind.AUDIT, joint.JointKind.ANCHOR})
#: Most pieces kept while an object from a colleague is being reassembled.
MAX_PARTIAL = 1024
#: The least room in which an object's first piece begins behind others.
MIN_HEAD = 256
#: The notice that ends a lane: ``LANE_END || u16 generation || u64 end``.
LANE_END = b"lane-end\x00"
#: Sender id -> the lanes from him under earlier secrets still to read.
OLD_LANES = "mb_old_lanes"

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
    #: The size of the object's first piece when it began behind other pieces
    #: (``joint.split_object``); 0: as many bytes as a cell holds.
    head: int = 0


@dataclass(frozen=True)
class OldLane:
    """A colleague's lane to us under an earlier mission secret, still being read."""

    generation: int
    #: Where it ends (its first position never filled); -1 until his notice says.
    end: int = -1


@dataclass(frozen=True)
class OldLanes:
    lanes: tuple[OldLane, ...] = ()


@dataclass(frozen=True)
class LaneWindow:
    """The slots of one colleague's lanes that a fetch reads: at most one place on
    the oldest lane not yet read to its end, the rest on the current lane."""

    slots: tuple[bytes, ...] = field(repr=False)
    #: (generation, position) of the old lane's place (the first slot), if any.
    old: tuple[int, int] | None = None


@dataclass(frozen=True)
class Reassembly:
    """Pieces of one colleague's object received so far."""

    pieces: tuple[bytes, ...] = field(default=(), repr=False)
    object_id: bytes = b""
    count: int = 0


class Mailbox:
    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.streams = Streams(dev)
        self.handler: Handler = lambda obj: None

    # --- out ---------------------------------------------------------------------

    def send(self, kind: joint.JointKind, recipient: bytes, body: bytes) -> bytes:
        """Seal an object to a colleague and queue it for the rounds; returns its id."""
        dev = self.dev
        m = dev.mission()
        obj = joint.JointObject(kind, new_id(), dev.officer.officer_id, recipient, body)
        queue = AUDIT_OUT if kind in _LOW else JOINT_OUT
        with dev._tx():  # the stream's chain moves with the object it sealed
            sealed = self.streams.seal(obj, m.cert_of(recipient), queue)
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
        vault = self.dev.vault
        for queue in (JOINT_OUT, AUDIT_OUT):
            for entry_id, out in vault.pending_decoded(queue, JointOut, statecodec.loads):
                if out.recipient != recipient:
                    continue
                if cursor is not None and cursor.queue == queue and cursor.entry_id == entry_id:
                    return queue, entry_id, out, cursor.sent
        for queue in (JOINT_OUT, AUDIT_OUT):
            for entry_id, out in vault.pending_decoded(queue, JointOut, statecodec.loads):
                if out.recipient == recipient:
                    return queue, entry_id, out, 0
        return None

    def produce(self, recipient: bytes) -> tuple[bytes, bytes]:
        """The (slot, cell) of ``recipient``'s lane for this exchange: a piece, or cover.

        The caller persists the cell in the same vault transaction.
        """
        dev = self.dev
        m = dev.mission()
        gen = self._out_generation(recipient)
        secret = m.secret_of(gen)
        name = _lane_name(b"out", gen, recipient)
        n = dev._counter(name)
        dev._set_counter(name, n + 1)
        slot = joint.mailbox_slot(secret, dev.officer.officer_id, recipient, n)
        key = b"mbout" + recipient
        cursor: MailboxCursor | None = dev._get("mb_cursor", key, MailboxCursor)
        chosen = self._next(recipient, cursor)
        if chosen is not None:
            queue, entry_id, out, sent = chosen
            head = cursor.head if cursor is not None and cursor.entry_id == entry_id else 0
            pieces = joint.split_object(out.sealed, m.cell_size, head)
            chunks = [joint.Chunk(out.object_id, sent, len(pieces), pieces[sent])]
            if sent + 1 == len(pieces):
                dev.vault.mark_done(queue, entry_id)
                dev.vault.delete("mb_cursor", key)
                # Behind an object's last piece, the objects waiting after it.
                self._fill(recipient, chunks, m.cell_size, key)
            else:
                dev._put("mb_cursor", key, MailboxCursor(entry_id, sent + 1, queue, head))
            cell = joint.pack_cell(slot, chunks, secret, m.cell_size, secrets.token_bytes)
            return slot, cell
        return slot, joint.cover_cell(slot, secret, m.cell_size, secrets.token_bytes)

    def _fill(
        self, recipient: bytes, chunks: list[joint.Chunk], cell_size: int, cursor_key: bytes
    ) -> None:
        """Add to ``chunks`` the objects for ``recipient`` that fit whole, in the
        order of each queue (joint objects, then audit entries), each queue
        stopping at its first object that does not fit: a later object never
        overtakes an earlier one of its queue (a withdrawal its request, say).
        The first joint object that does not fit begins in the room left: its
        first piece goes last in the cell, the rest in the next cells."""
        vault = self.dev.vault
        for queue in (JOINT_OUT, AUDIT_OUT):
            # A list of its own: marking entries done below does not change it.
            for entry_id, out in vault.pending_decoded(queue, JointOut, statecodec.loads):
                if out.recipient != recipient:
                    continue
                room = joint.room_after(chunks, cell_size)
                if len(out.sealed) <= room:
                    chunks.append(joint.Chunk(out.object_id, 0, 1, out.sealed))
                    vault.mark_done(queue, entry_id)
                    continue
                if queue == JOINT_OUT and room >= MIN_HEAD:
                    pieces = joint.split_object(out.sealed, cell_size, room)
                    chunks.append(joint.Chunk(out.object_id, 0, len(pieces), pieces[0]))
                    cursor = MailboxCursor(entry_id, 1, queue, room)
                    self.dev._put("mb_cursor", cursor_key, cursor)
                    return
                break

    # --- in ----------------------------------------------------------------------

    def next_slot(self, sender: bytes) -> int:
        """The first position of ``sender``'s current lane to us not read yet."""
        return self.dev._counter(_lane_name(b"in", self._in_generation(sender), sender))

    def window(self, sender: bytes, count: int) -> LaneWindow:
        """The ``count`` slots of ``sender``'s lanes to us that the next fetch reads."""
        m = self.dev.mission()
        me = self.dev.officer.officer_id
        out: list[bytes] = []
        old: tuple[int, int] | None = None
        lanes = self._old_lanes(sender)
        if lanes:
            g = lanes[0].generation
            n = self.dev._counter(_lane_name(b"in", g, sender))
            out.append(joint.mailbox_slot(m.secret_of(g), sender, me, n))
            old = (g, n)
        gen = self._in_generation(sender)
        first = self.dev._counter(_lane_name(b"in", gen, sender))
        secret = m.secret_of(gen)
        out += [joint.mailbox_slot(secret, sender, me, first + i) for i in range(count - len(out))]
        return LaneWindow(tuple(out), old)

    def take_window(
        self, sender: bytes, w: LaneWindow, cells: dict[bytes, bytes], alarms: list[str]
    ) -> int:
        """Act on what a fetch of ``w`` brought; returns how many objects were completed."""
        done = 0
        rest = list(w.slots)
        if w.old is not None:
            g, _ = w.old
            first = rest.pop(0)
            if first in cells:
                done += self._take_lane(sender, g, [cells[first]], alarms)
                self._close_ended(sender)
        current = []
        for slot in rest:
            if slot not in cells:
                break
            current.append(cells[slot])
        done += self.take(sender, current, alarms)
        return done

    def take(self, sender: bytes, cells: list[bytes], alarms: list[str]) -> int:
        """Act on the next cells of ``sender``'s current lane (consecutive, from
        :meth:`next_slot`). Returns how many objects were completed."""
        return self._take_lane(sender, self._in_generation(sender), cells, alarms)

    def _take_lane(self, sender: bytes, gen: int, cells: list[bytes], alarms: list[str]) -> int:
        dev = self.dev
        m = dev.mission()
        me = dev.officer.officer_id
        secret = m.secret_of(gen)
        name = _lane_name(b"in", gen, sender)
        state_key = _lane_name(b"", gen, sender)
        n = dev._counter(name)
        st: Reassembly = dev._get("mb_in", state_key, Reassembly) or Reassembly()
        done = 0
        for i, cell in enumerate(cells):
            slot = joint.mailbox_slot(secret, sender, me, n + i)
            notes: list[str] = []
            complete: list[bytes] = []
            try:
                chunks = joint.open_chunks(cell, slot, secret, m.cell_size)
            except RemoteProtocolError:
                alarms.append("a mailbox cell from a colleague failed to open and was set aside")
                st = self._abandon(st, alarms)
                chunks = []
            for chunk in chunks:
                st = self._piece(st, chunk, complete, alarms)
            with dev._tx():  # acting on the objects and moving past them are one step
                for sealed in complete:
                    note, counted = self._open(sender, sealed)
                    done += 1 if counted else 0
                    if note is not None:
                        notes.append(note)
                dev._put("mb_in", state_key, st)
                dev._set_counter(name, n + i + 1)
            alarms.extend(notes)
        return done

    def _piece(
        self, st: Reassembly, chunk: joint.Chunk, complete: list[bytes], alarms: list[str]
    ) -> Reassembly:
        """Take one piece into the reassembly; a finished object goes to ``complete``."""
        if chunk.is_cover:
            return self._abandon(st, alarms)
        if st.pieces and (chunk.object_id != st.object_id or chunk.index != len(st.pieces)):
            st = self._abandon(st, alarms)
        if not st.pieces and chunk.index != 0:
            alarms.append(
                "a mailbox object from a colleague arrived without its beginning and was set aside"
            )
            return st
        pieces = (*st.pieces, chunk.data)
        if len(pieces) < chunk.count and len(pieces) < MAX_PARTIAL:
            return Reassembly(pieces, chunk.object_id, chunk.count)
        complete.append(b"".join(pieces))
        return Reassembly()

    # --- generations --------------------------------------------------------------

    def _out_generation(self, recipient: bytes) -> int:
        """The generation of our lane to ``recipient``: the mission's current one
        until a new secret ends it (:meth:`begin_generation`)."""
        raw = self.dev.vault.get("mb_gen", b"out" + recipient)
        return int.from_bytes(raw, "big") if raw is not None else self.dev.mission().generation

    def _in_generation(self, sender: bytes) -> int:
        raw = self.dev.vault.get("mb_gen", b"in" + sender)
        return int.from_bytes(raw, "big") if raw is not None else self.dev.mission().generation

    def _old_lanes(self, sender: bytes) -> tuple[OldLane, ...]:
        old: OldLanes | None = self.dev._get(OLD_LANES, sender, OldLanes)
        return old.lanes if old is not None else ()

    def begin_generation(self, before: MissionState, after: MissionState) -> None:
        """The mission moved from ``before``'s secret to ``after``'s (in the caller's
        transaction): end our lanes under the old secret, begin new ones, and tell
        each colleague where his old lane from us ended."""
        if after.generation == before.generation:
            return
        dev = self.dev
        me = dev.officer.officer_id
        stayed = {o.officer_id for o in before.roster.officers}
        g = after.generation.to_bytes(2, "big")
        for o in after.roster.officers:
            other = o.officer_id
            if other == me:
                continue
            if other in stayed:
                # What we read from him so far stays an old lane until his notice ends it.
                was = dev.vault.get("mb_gen", b"in" + other)
                old_in = int.from_bytes(was, "big") if was is not None else before.generation
                lanes = (*self._old_lanes(other), OldLane(old_in))
                dev._put(OLD_LANES, other, OldLanes(lanes))
                was = dev.vault.get("mb_gen", b"out" + other)
                old_out = int.from_bytes(was, "big") if was is not None else before.generation
                end = dev._counter(_lane_name(b"out", old_out, other))
                # An object half sent goes again, whole, in the new lane.
                dev.vault.delete("mb_cursor", b"mbout" + other)
                dev.vault.put("mb_gen", b"out" + other, g)
                dev.vault.put("mb_gen", b"in" + other, g)
                body = LANE_END + old_out.to_bytes(2, "big") + end.to_bytes(8, "big")
                self.send(joint.JointKind.NOTICE, other, body)
            else:
                dev.vault.put("mb_gen", b"out" + other, g)
                dev.vault.put("mb_gen", b"in" + other, g)

    def _lane_ended(self, sender: bytes, body: bytes) -> None:
        """A colleague's notice: his lane to us under generation ``g`` ended at ``end``."""
        if len(body) != len(LANE_END) + 10:
            return
        gen = int.from_bytes(body[len(LANE_END) : len(LANE_END) + 2], "big")
        end = int.from_bytes(body[len(LANE_END) + 2 :], "big")
        lanes = tuple(
            OldLane(lane.generation, end) if lane.generation == gen else lane
            for lane in self._old_lanes(sender)
        )
        self.dev._put(OLD_LANES, sender, OldLanes(lanes))
        self._close_ended(sender)

    def _close_ended(self, sender: bytes) -> None:
        """Drop the old lanes read to their end (a piece left over there was an
        object that went again, whole, in a later lane)."""
        dev = self.dev
        left = []
        for lane in self._old_lanes(sender):
            read = dev._counter(_lane_name(b"in", lane.generation, sender))
            if lane.end >= 0 and read >= lane.end:
                dev.vault.delete("mb_in", _lane_name(b"", lane.generation, sender))
                continue
            left.append(lane)
        if left:
            dev._put(OLD_LANES, sender, OldLanes(tuple(left)))
        else:
            dev.vault.delete(OLD_LANES, sender)

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
        try:
            obj = self.streams.open(sender, sealed)
        except ReplayDetected:
            return "a mailbox object from a colleague arrived again and was set aside", True
        except RemoteProtocolError:
            return "a mailbox object from a colleague failed to verify and was set aside", True
        if obj.sender_id != sender:
            return "a mailbox object names another sender than its slot and was set aside", True
        if obj.kind is joint.JointKind.NOTICE and obj.body.startswith(LANE_END):
            self._lane_ended(sender, obj.body)
            return None, False
        counted = obj.kind not in _LOW
        try:
            with dev._tx():  # a handler that fails leaves nothing half-written
                return self.handler(obj), counted
        except (StoreError, KeystoreError):
            raise  # this device's vault failed (a full disk): the round stops, read again later
        except BackchannelError as exc:
            # A well-signed object that cannot be acted on (a malformed body from a
            # colleague's device, say) must not stall the objects behind it.
            note = f"a mailbox object from a colleague could not be used ({exc}); set aside"
            return note, counted


def _lane_name(prefix: bytes, generation: int, officer_id: bytes) -> bytes:
    """A lane's counter or record name: generation 0 keeps the names it always had."""
    if generation == 0:
        return prefix + officer_id
    return prefix + b"g" + generation.to_bytes(2, "big") + officer_id
