"""Checking what the relay's answers say about its log, between the round's requests.

The engine (:mod:`backchannel.client.engine`) hands each answer here: its
cells are proved in the relay's log and its empty slots in a signed
statement, and the peer's gossip (its view of the log and the note of its
latest deposit) is compared with ours. A check that needs what the answer
does not carry waits in the vault; :func:`plan_queries` turns the waiting
checks into the log queries of the next round's fetch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from backchannel.client import statecodec
from backchannel.client.answers import AnswerSource, Deferred, FetchView
from backchannel.client.log_watch import CellCheck, SlotSeen
from backchannel.client.receiving import GossipDue, Receiving
from backchannel.client.report import SyncReport
from backchannel.protocol.batch import Query
from backchannel.protocol.misbehaviour import EntryProof, SignedHead

#: Log queries in every check request (unused ones are padding).
QUERIES = 6
#: Rounds for which a device remembers what the relay served at its inbound slots,
#: to check the peer's notes of its deposits (relay-log-v1 §5).
SEEN_ROUNDS = 64
#: Rounds a gossip check may wait for the answers it needs before it is given up.
MAX_TRIES = 8


class LogChecks(Receiving):
    """The relay-log checks of a round's answers, and the gossip still to check."""

    def _known_size(self, url: str) -> int:
        monitor = self.log.monitor(url)
        if monitor is None or not monitor.pinned:
            return 0
        return SignedHead.decode(monitor.pinned).head.size

    def _due(self) -> list[tuple[int, GossipDue]]:
        return self.vault.pending_decoded("gossip_due", GossipDue, statecodec.loads)

    def _seen_for_notes(self) -> dict[tuple[bytes, int], SlotSeen]:
        out: dict[tuple[bytes, int], SlotSeen] = {}
        for _, due in self._due():
            note = due.gossip.note
            if note is None:
                continue
            seen: SlotSeen | None = self._get(
                "log_seen", round_key(due.channel_id, note.round), SlotSeen
            )
            if seen is not None:
                out[(due.channel_id, note.round)] = seen
        return out

    async def _check_answer(
        self, url: str, source: AnswerSource, tenant_id: str, view: FetchView, report: SyncReport
    ) -> tuple[dict[bytes, EntryProof], bool] | None:
        """Prove a fetch answer's cells and check its absence statement."""
        signed = view.bundle.signed_head
        if signed is None:
            return None
        checks: list[CellCheck] = []
        for slot, cell in view.cells.items():
            place = view.places.get(slot)
            if place is None:
                self.log.alarm(
                    url, "the relay served a cell without its place in the log", report.alarms
                )
            else:
                checks.append((tenant_id, slot, cell, place))
        try:
            proved = await self.log.check(url, source, signed, checks, report.alarms)
        except Deferred:
            self.log.alarm(url, "the relay's answer lacked what proves it", report.alarms)
            return None
        if proved is None:
            return None
        if view.spent:
            text = "the relay says slots were acknowledged that this device never acknowledged"
            self.log.alarm(url, text, report.alarms)
        empty = set(view.asked) - set(view.cells) - view.spent
        absent_ok = self.log.check_absence(
            url, signed, view.absent, tenant_id, empty, report.alarms, view.spent
        )
        return proved, absent_ok

    async def _check_gossip(self, source: AnswerSource, report: SyncReport) -> None:
        """Compare the peer's view of our relay's log with ours (relay-log-v1 §5).

        Gossip waits in the vault (``gossip_due``) until its checks complete; a
        check that needs what this answer does not carry waits another round
        (its queries go into the next fetch).
        """
        url = self.mission().relay_url
        tenant = self.mission().tenant_id
        by_channel: dict[bytes, list[tuple[int, GossipDue]]] = {}
        for entry_id, due in self._due():
            by_channel.setdefault(due.channel_id, []).append((entry_id, due))
        for channel_id, entries in by_channel.items():
            gossip = [g.gossip for _, g in entries]
            largest = max(gossip, key=lambda g: SignedHead.decode(g.head).head.size)
            try:
                await self.log.compare(url, source, largest.head, report.alarms)
                for note in {g.note for g in gossip if g.note is not None}:
                    key = round_key(channel_id, note.round)
                    seen: SlotSeen | None = self._get("log_seen", key, SlotSeen)
                    if seen is not None:
                        await self.log.check_note(url, source, tenant, seen, note, report.alarms)
            except Deferred:
                with self._tx():  # try again next round, with the queries it needs
                    for entry_id, due in entries:
                        self.vault.mark_done("gossip_due", entry_id)
                        if due.tries < MAX_TRIES:
                            again = replace(due, tries=due.tries + 1)
                            self.vault.append("gossip_due", statecodec.dumps(again))
                if any(due.tries >= MAX_TRIES for _, due in entries):
                    text = "the relay's answers never carried what checks the peer's gossip"
                    self.log.alarm(url, text, report.alarms)
                continue
            with self._tx():
                for entry_id, _ in entries:
                    self.vault.mark_done("gossip_due", entry_id)
            self._forget_seen(channel_id)

    def _forget_seen(self, channel_id: bytes) -> None:
        """What the relay served more than SEEN_ROUNDS rounds ago is no longer needed."""
        horizon = self._endpoint(channel_id).next_recv_round - SEEN_ROUNDS
        with self._tx():
            # items(): the table stays in the read cache from round to round,
            # where keys() would open every record's key each time.
            for key, _ in self.vault.items("log_seen"):
                if key[:-8] == channel_id and int.from_bytes(key[-8:], "big") < horizon:
                    self.vault.delete("log_seen", key)


def plan_queries(
    due: Sequence[tuple[int, GossipDue]],
    seen: dict[tuple[bytes, int], SlotSeen],
    known_size: int,
    suspect: Sequence[int] = (),
    places: int = QUERIES,
) -> list[Query]:
    """The log queries the waiting gossip checks need, in the first ``places`` of
    :data:`QUERIES` (the rest padding).

    Mirrors :meth:`LogWatch.compare` and :meth:`LogWatch.check_note`: a peer
    head of another size needs a consistency proof, and the relay's head at
    the peer's size in case the proof fails (a fork is then proved at once); a note
    naming a cell we were not served needs the cell's entry proof and a fresh
    read of the slot. An open contradiction (``suspect``, from
    :meth:`LogWatch.suspect_sizes`) comes first: the relay's heads at its sizes.
    """
    wanted: list[Query] = [Query.head_at(size) for size in suspect if size]
    if known_size:
        heads: dict[bytes, int] = {}
        for _, g in due:
            size = SignedHead.decode(g.gossip.head).head.size
            heads[g.channel_id] = max(size, heads.get(g.channel_id, -1))
        for size in heads.values():
            if size and size != known_size:
                wanted.append(Query.consistency(min(size, known_size), max(size, known_size)))
                # The relay's own head at the peer's size: a fork is two roots for it.
                # (Its head at ours is the one this device pinned.)
                wanted.append(Query.head_at(size))
        for _, g in due:
            note = g.gossip.note
            if note is None:
                continue
            s = seen.get((g.channel_id, note.round))
            if s is None or (s.entry is not None and s.entry.cell_id == note.cell_id):
                continue
            wanted.append(Query.entry(note.leaf_index, note.batch_position, known_size))
            if s.entry is None:
                wanted.append(Query.absence(s.slot))
    unique = list(dict.fromkeys(wanted))[:places]
    return unique + [Query.none()] * (QUERIES - len(unique))


def round_key(channel_id: bytes, round_no: int) -> bytes:
    return channel_id + max(round_no, 0).to_bytes(8, "big")
