"""The round engine's core: what a device sends each round, and what it makes of the answers.

No network I/O happens here (the driver, :mod:`backchannel.client.driver`,
carries the requests); the vault is the engine's state. Each round a device
makes the same exchange whatever its officers did:

1. **one batch deposit per relay** with exactly one cell per *lane*: one lane
   per channel on the runner (the peer's tenant), one lane per colleague for
   the mission mailbox (our own tenant). A lane's cell is its oldest cell not
   yet stored, or a fresh one: the channel's next round (real or cover), the
   next piece of a queued joint object, or mailbox cover.
2. **one batch fetch** from our own tenant: a fixed window of slots per channel
   (:data:`CHANNEL_WINDOW` rounds from the next one to read) and per colleague
   (:data:`MAILBOX_WINDOW` mailbox positions), and :data:`QUERIES` log queries
   (the unused ones padding) that the checks of what the last fetch brought
   need (the peer's gossip: its view of the log and the note of its latest
   deposit), so a lie they reveal is proved in the next round.

Every cell is persisted before it is sent and marked done only once the
relay's receipt for it is checked against its log, so a relay that is down, a
lost answer or a crash loses nothing and duplicates nothing (deposits are
idempotent). An officer's command only queues work in the vault; the next
round carries it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from backchannel.client import statecodec
from backchannel.client.answers import AnswerSource, Deferred, DepositView, FetchView
from backchannel.client.intake import INTAKE_LANE, INTAKE_OUT
from backchannel.client.log_watch import CellCheck, SlotSeen
from backchannel.client.logchecks import QUERIES, LogChecks, plan_queries, round_key
from backchannel.client.mailbox import LaneWindow, Mailbox
from backchannel.client.plans import DepositPlan, FetchPlan, OutCell
from backchannel.client.receiving import GossipDue
from backchannel.client.records import NetOut, dump_out, load_out
from backchannel.client.relay_client import CellLog
from backchannel.client.relay_move import RelayMoves
from backchannel.client.report import SyncReport
from backchannel.client.takeovers import Takeovers
from backchannel.client.witnessing import Witnessing
from backchannel.errors import BackchannelError
from backchannel.protocol.batch import Query, QueryKind
from backchannel.protocol.constants import ROUND_SECONDS, SLOT_LEN
from backchannel.protocol.misbehaviour import (
    Absence,
    DepositNote,
    EntryProof,
    LogLeaf,
    SignedHead,
)

#: Rounds of each channel one fetch reads: the next one and some after it, so a
#: device that fell behind catches up (``CHANNEL_WINDOW - 1`` rounds per round).
CHANNEL_WINDOW = 3
#: Mailbox positions per colleague one fetch reads.
MAILBOX_WINDOW = 3
#: Fetch answers are padded to a multiple of this many bytes. What varies in
#: them (proof lengths, which of a window's cells are there yet) follows the
#: relay's log and the devices being online, not the officers' work, so a
#: small granule suffices (docs/metadata.md).
PAD_TO = 64
#: Fetches a receiver waits at a missing round while the relay serves later
#: ones, before it passes over it as dropped: a peer's device that finds its
#: relay restored from an older copy searches the log for a few rounds, then
#: deposits the lost rounds again, oldest first (rewind.py).
HOLD_ROUNDS = 12
#: Channel id -> the round a receiver waits at, and for how many fetches.
GAP_HOLDS = "gap_holds"
#: Statuses after which a cell is done with (stored, or refused for good).
_STORED = frozenset({200, 201})
_REFUSED_FOR_GOOD = frozenset({400, 409})


@dataclass(frozen=True)
class GapHold:
    """A receiver waiting at a missing round of a channel."""

    round: int
    #: Fetches that found it missing while later rounds were served.
    fetches: int
    #: The newest later round whose gossip was read while waiting.
    gossip_read: int


class Engine(LogChecks, RelayMoves, Witnessing, Takeovers):
    """Builds each round's requests and takes in their answers."""

    mailbox: Mailbox

    # --- lanes -------------------------------------------------------------------

    def _lanes(self) -> list[tuple[bytes, str, str]]:
        """(lane key, relay url, tenant id) of every lane this device fills each round."""
        m = self.mission()
        lanes: list[tuple[bytes, str, str]] = []
        if self.is_runner:
            for rec in self.channels():
                if not self._endpoint(rec.channel_id).sends:
                    continue  # a takeover this device could not make (an alarm said so)
                card = self._peer_card(rec.peer_mission)
                lanes.append((b"ch" + rec.channel_id, card.relay_url, card.tenant_id))
        for o in self.colleagues():
            lanes.append((b"mb" + o, m.relay_url, m.tenant_id))
        if self.is_runner:
            # The intake's answer lane: one cell a round, an answer or cover.
            lanes.append((INTAKE_LANE, m.relay_url, m.tenant_id))
        return lanes

    def _produce(self, lane: bytes, relay_url: str, tenant_id: str) -> None:
        """Persist this lane's next cell in the outbox."""
        with self._tx():
            if self._recovering(relay_url):
                # Nothing new goes ahead of what the relay lost (rewind.py).
                size = (
                    self.channel(lane[2:]).terms.cell_size
                    if lane.startswith(b"ch")
                    else self.mission().cell_size
                )
                out = self._filler(relay_url, tenant_id, lane, size)
            elif lane.startswith(b"ch"):
                channel_id = lane[2:]
                ep = self._endpoint(channel_id)
                note: DepositNote | None = self._get("log_notes", channel_id, DepositNote)
                r = ep.next_send_round
                self._anchor_channel(channel_id, ep, r)
                slot, cell = ep.cell_for_round(
                    r, secrets.token_bytes(12), self.log.gossip(relay_url, note)
                )
                self._save_endpoint(channel_id, ep)
                out = NetOut(relay_url, tenant_id, slot, cell, channel_id, r, lane)
            elif lane == INTAKE_LANE:
                out = self._intake_cell(relay_url, tenant_id)
            else:
                slot, cell = self.mailbox.produce(lane[2:])
                out = NetOut(relay_url, tenant_id, slot, cell, b"", -1, lane)
            self.vault.append("net_out", dump_out(out))

    def _intake_cell(self, relay_url: str, tenant_id: str) -> NetOut:
        """The answer lane's next cell: the oldest sealed answer, else cover.

        Cover goes to a random slot with random bytes; an answer is sealed
        with a random nonce under a key only the submitter can derive, so the
        relay tells neither apart from the other, nor from a mailbox cell.
        """
        for entry_id, raw in self.vault.pending(INTAKE_OUT):
            self.vault.mark_done(INTAKE_OUT, entry_id)
            return load_out(NetOut, raw)
        size = self.mission().cell_size
        return NetOut(
            relay_url, tenant_id, secrets.token_bytes(SLOT_LEN), secrets.token_bytes(size), b"",
            -1, INTAKE_LANE,
        )  # fmt: skip

    def deposit_plans(self) -> list[DepositPlan]:
        """This round's deposits: one cell per lane, grouped by relay, persisted first."""
        self.rotate_on_schedule()
        lanes = self._lanes()
        pending = self._pending_by_lane()
        with self._tx():  # persisted, all together, before anything is sent
            for lane, url, tenant in lanes:
                if lane not in pending:
                    self._produce(lane, url, tenant)
        pending = self._pending_by_lane()
        plans: dict[str, list[OutCell]] = {}
        for lane, url, _ in lanes:
            plans.setdefault(url, []).append(pending[lane])
        for cells in plans.values():
            # In a random order: the order of a batch becomes the cells' order in
            # the relay's log, and a fixed one would tell a channel's lane from a
            # mailbox's round after round.
            _shuffle(cells)
        out = [
            DepositPlan(url, tuple(cells), self._known_size(url)) for url, cells in plans.items()
        ]
        mirror = self.mirrored_lanes()
        if mirror is not None:  # colleagues not yet moved read their mailbox there
            copies = [pending[lane] for lane, _, _ in lanes if lane.startswith(b"mb")]
            _shuffle(copies)
            out.append(DepositPlan(mirror[0], tuple(copies), 0, mirror=True))
        return out

    def _pending_by_lane(self) -> dict[bytes, OutCell]:
        """The oldest cell not yet stored of each lane."""
        out: dict[bytes, OutCell] = {}
        for entry_id, cell in self.vault.pending_decoded("net_out", NetOut, load_out):
            out.setdefault(cell.lane, OutCell(entry_id, cell))
        return out

    # --- deposit answers ----------------------------------------------------------

    async def take_deposit(self, plan: DepositPlan, view: DepositView, report: SyncReport) -> None:
        """Mark stored cells done once their places check out; alarm on refusals."""
        url = plan.relay_url
        source = AnswerSource(view.bundle, plan.known_size)
        stored: list[tuple[OutCell, bytes, CellLog | None]] = []
        for item, (status, cell_id, place) in zip(plan.cells, view.results, strict=True):
            if status in _STORED:
                stored.append((item, cell_id, place))
            elif status in _REFUSED_FOR_GOOD:
                if status == 400:
                    what = "a cell was refused as malformed"
                elif item.out.lane == INTAKE_LANE:
                    # An answer's slot comes from the reply code its submitter chose:
                    # this device refuses a second answer under one code, but one
                    # queued before it did (or by an earlier runner) meets the first.
                    what = (
                        "an answer to the public intake was refused: its reply slot "
                        "already holds another cell (an earlier answer under the same "
                        "reply code, which the submitter reads)"
                    )
                else:
                    what = (
                        "a different cell already holds one of our slots (a relay that "
                        "answers so for an honest device is lying)"
                    )
                self.log.alarm(url, f"{what}; it was set aside", report.alarms)
                self.vault.mark_done("net_out", item.entry_id)
            elif status == 404:
                self.log.alarm(url, "the relay does not know a tenant we deposit to", report.alarms)
        signed = view.bundle.signed_head
        checks: list[CellCheck] = [
            (i.out.tenant_id, i.out.slot, i.out.cell, p) for i, _, p in stored if p is not None
        ]
        proved: dict[bytes, EntryProof] | None = None
        if signed is None or len(checks) != len(stored):
            self.log.unproved(url, report.alarms)
        elif checks:
            try:
                proved = await self.log.check(url, source, signed, checks, report.alarms)
            except Deferred:
                # What proves the receipts is not in the answer: the cells stay in
                # the outbox and go again (deposits are idempotent).
                self.log.alarm(url, "the relay's answer lacked what proves it", report.alarms)
                return
        keep = proved is not None and not self._recovering(url)
        with self._tx():
            for item, cell_id, place in stored:
                out = item.out
                if proved is not None and out.channel_id and place is not None:
                    self._note_deposit(out, cell_id, place)
                if keep and proved is not None and place is not None and out.slot in proved:
                    self._keep_cell(out, place.leaf_index, proved[out.slot].leaf)
                self.vault.mark_done("net_out", item.entry_id)
                report.deposited += 1
        if signed is not None:
            self._notice_rewind(url, _head_size(signed), report.alarms)

    def _note_deposit(self, out: NetOut, cell_id: bytes, place: CellLog) -> None:
        """Remember our latest logged deposit on a channel, to name it to the peer."""
        old: DepositNote | None = self._get("log_notes", out.channel_id, DepositNote)
        if old is None or old.round < out.round:
            note = DepositNote(out.round, cell_id, place.leaf_index, place.batch_position)
            self._put("log_notes", out.channel_id, note)

    # --- fetch ----------------------------------------------------------------------

    def _round_queries(self, known: int) -> tuple[Query, ...]:
        """The round's log queries: what the waiting checks need, then padding."""
        suspect = self.log.suspect_sizes(self.mission().relay_url)
        # The last place is the witnesses' (witnessing.py): the relay's cosigned
        # checkpoint every CHECKPOINT_EVERY fetches, or padding.
        witness = self.witness_query(known)
        places = QUERIES - 1 if witness is not None else QUERIES
        queries = plan_queries(self._due(), self._seen_for_notes(), known, suspect, places)
        # Spare places search the relay's log after a rewind (rewind.py).
        free = [i for i, q in enumerate(queries[:places]) if q.kind is QueryKind.NONE]
        for i, probe in zip(free, self.recovery_queries(len(free)), strict=False):
            queries[i] = probe
        if witness is not None:
            queries[-1] = witness
        return tuple(queries)

    def fetch_plan(self, *, queries: bool = True) -> FetchPlan:
        """The round's fetch: every lane's window and, unless ``queries`` is false
        (a fetch from a relay being left), the round's log queries."""
        m = self.mission()
        channels: dict[bytes, dict[int, bytes]] = {}
        slots: list[bytes] = []
        for rec in self.channels():
            ep = self._endpoint(rec.channel_id)
            first = ep.next_recv_round
            window = {r: ep.slot_to_fetch(r) for r in range(first, first + CHANNEL_WINDOW)}
            channels[rec.channel_id] = window
            slots.extend(window.values())
        mailbox: dict[bytes, LaneWindow] = {}
        for o in self.colleagues():
            mailbox[o] = self.mailbox.window(o, MAILBOX_WINDOW)
            slots.extend(mailbox[o].slots)
        known = self._known_size(m.relay_url)
        # The log queries ride in the same request: those the last fetch made due
        # (a peer's gossip, a note naming a cell) are answered in this one.
        asked = self._round_queries(known) if queries else ()
        return FetchPlan(m.relay_url, m.tenant_id, tuple(slots), known, asked, channels, mailbox)

    async def take_fetch(self, plan: FetchPlan, view: FetchView, report: SyncReport) -> bool:
        """Act on a fetch's answer; True when every window showed this device caught up."""
        url, tenant = plan.relay_url, plan.tenant_id
        if plan.unchecked:
            return self._take_unchecked(plan, view, report)
        source = AnswerSource(view.bundle, plan.known_size, view)
        # The checkpoint first: it was asked against the head held when the request
        # was made, which the checks below may move on.
        await self._take_witnessing(url, source, plan.queries, view.answers, report.alarms)
        # Then the gossip: its queries too were asked against the head this device
        # held when it built the request.
        await self._check_gossip(source, report)
        seen: dict[bytes, SlotSeen] = {}
        checked = await self._check_answer(url, source, tenant, view, report)
        if checked is not None:
            proved, absent_ok = checked
            for slot in plan.slots:
                if slot in proved:
                    seen[slot] = SlotSeen(slot, view.bundle.signed_head or b"", proved[slot])
                elif absent_ok and view.absent is not None and slot not in view.cells:
                    seen[slot] = SlotSeen(slot, view.bundle.signed_head or b"", None, view.absent)
        elif view.bundle.signed_head is None:
            self.log.unproved(url, report.alarms)
        for sender, lanes in plan.mailbox.items():
            report.joint_objects += self.mailbox.take_window(
                sender, lanes, view.cells, report.alarms
            )
            if any(slot in view.cells for slot in lanes.slots):
                self._seen(sender)
        self._check_unseen()
        if view.bundle.signed_head is not None:
            self._notice_rewind(url, _head_size(view.bundle.signed_head), report.alarms)
        self._take_recovery(url, plan.queries, view.answers, report.alarms)
        caught_up = all(
            len(w.slots) > 0 and w.slots[-1] not in view.cells and w.old is None
            for w in plan.mailbox.values()
        )
        for channel_id, window in plan.channels.items():
            self._take_channel(channel_id, window, view, seen, report)
            caught_up = caught_up and window[max(window)] not in view.cells
        self.seen_at_new(plan, view.cells)
        return caught_up

    def _take_unchecked(self, plan: FetchPlan, view: FetchView, report: SyncReport) -> bool:
        """What a relay the mission is leaving still holds for us (relay_move.py)."""
        for sender, lanes in plan.mailbox.items():
            report.joint_objects += self.mailbox.take_window(
                sender, lanes, view.cells, report.alarms
            )
            if any(slot in view.cells for slot in lanes.slots):
                self._seen(sender)  # a colleague's device not moved yet is still there
        for channel_id, window in plan.channels.items():
            self._take_channel(channel_id, window, view, {}, report, checked=False)
        return False

    def idle(self) -> bool:
        """Nothing of ours waits to go out: no object, no cell, no message fragment,
        no receipt for a message received, no peer's gossip waiting for the log
        queries that check it (they go out with the next fetch)."""
        pending = self.vault.pending
        if self.mailbox.waiting() or pending("net_out") or pending("gossip_due"):
            return False
        if not self.is_runner:
            return True
        for rec in self.channels():
            ep = self._endpoint(rec.channel_id)
            if ep.pending_cells or (ep.sends and ep.receipt_due is not None):
                return False
        return True

    def _take_channel(
        self,
        channel_id: bytes,
        window: dict[int, bytes],
        view: FetchView,
        seen: dict[bytes, SlotSeen],
        report: SyncReport,
        checked: bool = True,
    ) -> None:
        if self._endpoint(channel_id).rekey_held:
            return  # nothing is read until the peer's new card comes (protocol/rekey.py)
        present = [r for r, s in window.items() if s in view.cells]
        if not present:
            self._skip_expired(channel_id, min(window), window, view, seen, report)
            return
        last = max(present)
        first = min(window)
        url = self.mission().relay_url
        # The peer deposits its rounds in order, one cell each: a round missing
        # while the relay serves a later one was dropped, unless it is old enough
        # to have expired (a device back after a long time away).
        gaps = [
            r
            for r in range(first, last)
            if window[r] not in view.cells
            and not (checked and self._may_have_expired(channel_id, r, last, window[last], view))
        ]
        stop = last
        if gaps:
            held = self._hold(channel_id, gaps[0])
            if held == 1:  # once per gap, in the round it shows
                for r in gaps:
                    if window[r] in seen:
                        text = (
                            f"the relay says the peer's cell of round {r} is not there "
                            "while it serves later rounds: a dropped cell"
                        )
                        self.log.alarm(url, text, report.alarms)
            if held <= HOLD_ROUNDS:
                # Not passed over yet: a peer whose relay was restored from an
                # older copy deposits the lost rounds again, oldest first (rewind.py).
                stop = gaps[0] - 1
                if checked:
                    self._gossip_held(channel_id, gaps[0], window, view)
        with self._tx():  # what the relay served, held or not (the peer's notes need it)
            for r in range(first, last + 1):
                if window[r] in seen:
                    self._put("log_seen", round_key(channel_id, r), seen[window[r]])
        for r in range(first, stop + 1):
            if r > first and not self._reads_on(channel_id, r, window[r]):
                break
            self._receive_round(channel_id, r, view.cells.get(window[r]), report, checked)
            report.rounds_received += 1

    def _reads_on(self, channel_id: bytes, r: int, slot: bytes) -> bool:
        """Whether round ``r`` is still read from the slot the window fetched: a
        re-key received in an earlier round of the window moved the channel to
        new slots (read by the next fetch), and one that waits for the peer's
        card stops the channel (protocol/rekey.py)."""
        ep = self._endpoint(channel_id)
        return not ep.rekey_held and ep.slot_to_fetch(r) == slot

    def _hold(self, channel_id: bytes, round_no: int) -> int:
        """Count the fetches that found the gap at ``round_no``; 1 the first time."""
        hold: GapHold | None = self._get(GAP_HOLDS, channel_id, GapHold)
        if hold is None or hold.round != round_no:
            hold = GapHold(round_no, 0, round_no)
        hold = replace(hold, fetches=hold.fetches + 1)
        self._put(GAP_HOLDS, channel_id, hold)
        return hold.fetches

    def _gossip_held(
        self, channel_id: bytes, gap: int, window: dict[int, bytes], view: FetchView
    ) -> None:
        """Check the gossip of the rounds served after a gap, before they are received."""
        hold: GapHold = self._get(GAP_HOLDS, channel_id, GapHold)
        ep = self._endpoint(channel_id)
        newest = hold.gossip_read
        with self._tx():
            for r in sorted(window):
                cell = view.cells.get(window[r])
                if r <= max(gap, hold.gossip_read) or cell is None:
                    continue
                try:
                    gossip = ep.gossip_of(r, cell)
                except BackchannelError:
                    continue  # received in its turn, it raises its own alarm
                if gossip is not None:
                    due = GossipDue(channel_id, gossip)
                    self.vault.append("gossip_due", statecodec.dumps(due))
                newest = r
            self._put(GAP_HOLDS, channel_id, replace(hold, gossip_read=newest))

    def _skip_expired(
        self,
        channel_id: bytes,
        first: int,
        window: dict[int, bytes],
        view: FetchView,
        seen: dict[bytes, SlotSeen],
        report: SyncReport,
    ) -> None:
        """Move past rounds the relay no longer keeps (a device back after a long time).

        Only when the relay signed that the whole window is empty, and the
        window lies before the relay's signed retention by the round clock. On
        the schedule the peer's runner deposits round ``r`` during round ``r``
        of the clock or before it (``sync --rounds`` runs ahead), so those cells
        are gone; a runner that was itself away deposits later than that, and a
        message it sent then shows as a gap (docs/client.md, known limits).
        """
        if view.absent is None or not all(slot in seen for slot in window.values()):
            return
        absence = Absence.decode(view.absent)
        seconds = self.channel(channel_id).terms.round_seconds or ROUND_SECONDS
        horizon = (absence.served_at - absence.retention) // seconds - 1
        if first >= horizon:
            return
        for r in range(first, horizon):
            self._receive_round(channel_id, r, None, report)

    def _may_have_expired(
        self, channel_id: bytes, r: int, last: int, last_slot: bytes, view: FetchView
    ) -> bool:
        """Whether round ``r`` may have outlived the relay's retention before this read.

        The peer deposits at most one round per round length, so round ``r`` went
        in at least ``(last - r)`` round lengths before the batch that holds
        ``last``; if that is before the retention the relay signed, it may be gone.
        """
        place = view.places.get(last_slot)
        if place is None or view.absent is None:
            return False
        leaf = view.bundle.leaves.get(place.leaf_index)
        if leaf is None:
            return False
        absence = Absence.decode(view.absent)
        seconds = self.channel(channel_id).terms.round_seconds or ROUND_SECONDS
        deposited_by = LogLeaf.decode(leaf).coarse_time - (last - r) * seconds
        return deposited_by + absence.retention < absence.served_at

    # --- gossip ---------------------------------------------------------------------


_shuffle = secrets.SystemRandom().shuffle


def _head_size(signed: bytes) -> int:
    return SignedHead.decode(signed).head.size
