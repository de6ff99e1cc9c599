"""Depositing again what a rewound relay lost.

A relay restored from an older copy of its database (docs/operations.md,
backup and restore) has lost every cell deposited after that copy was made,
and the receipts that proved them stored no longer hold. The devices prove
the rewind (:mod:`backchannel.client.log_watch`); this module makes sure it
loses nothing:

* every cell a device deposited and proved in the relay's log is **kept**,
  with the log leaf that proved it, the newest :data:`KEEP_CELLS` of them;
* once the relay's log no longer grows on from the head the device pinned
  (a rewind or a fork of its own view), it **searches** the relay's current
  log for where its kept leaves stop being there: the loss is a suffix of the
  log (a restore keeps what the copy held and nothing after it), so the leaves
  the relay still serves are a prefix of the kept ones, and the check
  request's spare log queries ask for leaves a few at a time (a multi-way
  search: a few rounds, no extra request);
* then every kept cell from that point on is **queued again**, oldest first,
  and goes out at its own slot in the lanes' next rounds. A cell the relay
  still holds answers as the same cell again, so erring towards more costs
  rounds, never a duplicate.

While the search runs, the lanes to that relay deposit *filler*: a random
slot and random bytes, as cover in the intake lane is. A lane deposits one
cell a round whatever happens (docs/metadata.md); a channel's next round or a
mailbox position deposited during the search would land ahead of the lost ones,
and a peer that saw a later round before an earlier one came back would pass
the earlier one as dropped.

Only the mission's own relay answers this device's log queries: for lanes to
another relay (a peer mission on another relay) the search cannot run, and the
device queues again what certainly was lost, the kept cells at or past the
size of the relay's shortened log (docs/client.md, known limits).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace

from backchannel.client import statecodec
from backchannel.client.device import Device
from backchannel.client.records import NetOut, dump_out
from backchannel.protocol.batch import Query, QueryKind
from backchannel.protocol.constants import SLOT_LEN

#: How many deposited cells a device keeps to deposit again after a rewind (at
#: 4 KiB a cell, 16 MiB; with four lanes and one-minute rounds, about 17 hours).
KEEP_CELLS = 4096
#: The kept cells (sequence number -> :class:`KeptCell`) and their range.
KEPT = "net_kept"
_KEPT_RANGE = b"range"
KEPT_META = "net_kept_meta"
#: Relay url -> :class:`Recovery`.
RECOVERIES = "rewind_recoveries"
#: Checks without answers to the search's queries before it stops asking.
MAX_UNANSWERED = 8


@dataclass(frozen=True)
class KeptCell:
    """A deposited cell, and the log leaf that proved it stored."""

    out: NetOut = field(repr=False)
    leaf_index: int
    leaf: bytes


@dataclass(frozen=True)
class Recovery:
    """The search, after a rewind of one relay, for where its log lost our cells.

    ``leaves`` are the distinct leaf indexes of the kept cells, in order, and
    ``hashes`` the leaves themselves. Invariant: the relay still serves
    ``leaves[:lo]`` as we kept them and has lost ``leaves[hi:]``.
    """

    relay_url: str
    #: The head this device had pinned when the search began: a later rewind,
    #: once the pinned head has moved on, is searched for again.
    pinned: bytes = field(repr=False)
    leaves: tuple[int, ...]
    kept: tuple[bytes, ...] = field(repr=False)
    lo: int = 0
    hi: int = 0
    #: Cells queued again once the search ended; -1 while it runs.
    requeued: int = -1
    #: Rounds of answers taken so far.
    rounds: int = 0
    #: Checks in a row whose answer held none of our queries.
    unanswered: int = 0

    @classmethod
    def start(cls, url: str, pinned: bytes, kept: dict[int, bytes], head_size: int) -> Recovery:
        leaves = tuple(sorted(kept))
        # A leaf at or past the shortened log's size is certainly gone.
        hi = next((i for i, index in enumerate(leaves) if index >= head_size), len(leaves))
        return cls(url, pinned, leaves, tuple(kept[i] for i in leaves), 0, hi)

    @property
    def searching(self) -> bool:
        return self.requeued < 0 and self.lo < self.hi

    @property
    def lost_from(self) -> int | None:
        """The first lost leaf index once the search has ended (None: nothing lost)."""
        return self.leaves[self.hi] if self.hi < len(self.leaves) else None

    def probes(self, n: int) -> list[int]:
        """Up to ``n`` leaf indexes to ask for, splitting ``[lo, hi)`` evenly."""
        if not self.searching or n <= 0:
            return []
        # In the first round the newest leaf too: if the relay still holds it, it
        # holds every older one (the usual answer for a device that lost nothing).
        picks = {self.hi - 1} if self.rounds == 0 else set()
        k = n - len(picks)
        width = self.hi - self.lo
        picks |= {self.lo + width * (j + 1) // (k + 1) for j in range(k)}
        return [self.leaves[p] for p in sorted(picks) if self.lo <= p < self.hi]

    def take(self, served: dict[int, bytes | None]) -> Recovery:
        """Narrow the search with the relay's answers: leaf index -> leaf (None: refused)."""
        lo, hi = self.lo, self.hi
        position = {index: p for p, index in enumerate(self.leaves)}
        for index, leaf in served.items():
            p = position.get(index)
            if p is None or not lo <= p < hi:
                continue
            if leaf != self.kept[p]:
                hi = p
        for index, leaf in served.items():
            p = position.get(index)
            if p is not None and lo <= p < hi and leaf == self.kept[p]:
                lo = max(lo, p + 1)
        return replace(self, lo=lo, hi=hi, rounds=self.rounds + 1, unanswered=0)

    def unanswered_check(self) -> Recovery:
        """A check came back without our queries' answers; after
        :data:`MAX_UNANSWERED` in a row, everything not known held is taken as lost
        (depositing again what the relay still holds costs rounds, not a duplicate)."""
        r = replace(self, unanswered=self.unanswered + 1)
        return replace(r, hi=r.lo) if r.unanswered >= MAX_UNANSWERED else r


class Rewind(Device):
    """Keeps deposited cells, and deposits again what a rewound relay lost."""

    # --- keeping --------------------------------------------------------------

    def _kept_range(self) -> tuple[int, int]:
        raw = self.vault.get(KEPT_META, _KEPT_RANGE)
        if raw is None:
            return 0, 0
        return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")

    def _keep_cell(self, out: NetOut, leaf_index: int, leaf: bytes) -> None:
        """Keep a cell the relay proved it stored (inside the caller's transaction)."""
        first, nxt = self._kept_range()
        kept = KeptCell(replace(out, cell=b""), leaf_index, leaf)  # the cell beside it, raw
        self.vault.put(KEPT, nxt.to_bytes(8, "big"), statecodec.dumps_beside(kept, out.cell))
        nxt += 1
        while nxt - first > KEEP_CELLS:
            self.vault.delete(KEPT, first.to_bytes(8, "big"))
            first += 1
        self.vault.put(KEPT_META, _KEPT_RANGE, first.to_bytes(8, "big") + nxt.to_bytes(8, "big"))

    def _kept(self, url: str) -> list[KeptCell]:
        """The kept cells deposited to ``url``, oldest first."""
        cells = [_load_kept(raw) for _, raw in self.vault.items(KEPT)]
        return [c for c in cells if c.out.relay_url == url]

    # --- recovering -------------------------------------------------------------

    def recovery(self, url: str) -> Recovery | None:
        recovery: Recovery | None = self._get(RECOVERIES, url.encode(), Recovery)
        return recovery

    def _recovering(self, url: str) -> bool:
        """Whether the lanes to ``url`` deposit filler while a search runs."""
        r = self.recovery(url)
        return r is not None and r.requeued < 0

    def _filler(self, out_url: str, tenant_id: str, lane: bytes, size: int) -> NetOut:
        return NetOut(
            out_url, tenant_id, secrets.token_bytes(SLOT_LEN), secrets.token_bytes(size), b"",
            -1, lane,
        )  # fmt: skip

    def _notice_rewind(self, url: str, head_size: int, alarms: list[str]) -> None:
        """Start a recovery once ``url``'s log no longer grows on from the head
        this device pinned: the cells it proved under that head may be gone.

        Not only once the rewind is proved (that waits for the relay's clock to
        pass the longer head's): a search costs a few rounds of filler, and
        waiting would let new rounds go ahead of the lost ones. A fork between
        the peer's view and the relay's leaves this device's own cells where
        they were, and starts nothing.
        """
        pinned = self.log.contradicted(url)
        if pinned is None:
            return
        old = self.recovery(url)
        if old is not None and (old.requeued < 0 or old.pinned == pinned):
            return  # searching, or this contradiction was searched already
        kept = {c.leaf_index: c.leaf for c in self._kept(url)}
        recovery = Recovery.start(url, pinned, kept, head_size)
        if url != self.mission().relay_url:
            # No log queries reach another relay: what certainly was lost goes again.
            recovery = replace(recovery, lo=recovery.hi)
        with self._tx():
            self._put(RECOVERIES, url.encode(), recovery)
            if not recovery.searching:
                self._requeue(recovery, alarms)

    def _stop_search(self, url: str, alarms: list[str]) -> None:
        """``url`` is no longer the mission's relay (relay_move.py): a search of its
        log can no longer run, so what certainly was lost goes again, as for a
        peer's relay."""
        r = self.recovery(url)
        if r is not None and r.searching:
            self._requeue(replace(r, lo=r.hi), alarms)

    def recovery_queries(self, free: int) -> list[Query]:
        """Log queries for the mission relay's search, for ``free`` spare places."""
        r = self.recovery(self.mission().relay_url)
        if r is None:
            return []
        return [Query.leaf(index) for index in r.probes(free)]

    def _take_recovery(
        self, url: str, queries: tuple[Query, ...], answers: dict[Query, tuple[bool, bytes]],
        alarms: list[str],
    ) -> None:  # fmt: skip
        r = self.recovery(url)
        if r is None or not r.searching:
            return
        asked = [q for q in queries if q.kind is QueryKind.LEAF]
        if not asked:
            return  # no spare place this round
        served: dict[int, bytes | None] = {}
        for q in asked:
            if q in answers:
                ok, payload = answers[q]
                served[q.numbers[0]] = payload if ok else None
        r = r.take(served) if served else r.unanswered_check()
        with self._tx():
            self._put(RECOVERIES, url.encode(), r)
            if not r.searching:
                self._requeue(r, alarms)

    def _requeue(self, r: Recovery, alarms: list[str]) -> None:
        """Queue again, oldest first, every kept cell the relay lost (in a transaction)."""
        lost_from = r.lost_from
        kept = self._kept(r.relay_url) if lost_from is not None else []
        again = [c for c in kept if lost_from is not None and c.leaf_index >= lost_from]
        for c in again:
            self.vault.append("net_out", dump_out(c.out))
        self._put(RECOVERIES, r.relay_url.encode(), replace(r, requeued=len(again)))
        if again:
            self.log.alarm(
                r.relay_url,
                f"the relay no longer holds {len(again)} cells this device deposited "
                "(restored from an older copy?); they go out again with the next rounds",
                alarms,
            )


def _load_kept(raw: bytes) -> KeptCell:
    """A kept cell, its cell raw beside the rest, or a record of JSON (kept before)."""
    kept, cell = statecodec.loads_beside(KeptCell, raw)
    return kept if cell is None else replace(kept, out=replace(kept.out, cell=cell))
