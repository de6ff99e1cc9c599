"""The relay's batch answers, as the log checks read them.

The log checks (:mod:`backchannel.client.log_watch`) ask a *log source* for
what they need: the relay's key, a leaf, a consistency proof, a past head, a
batch member's proof, a fresh read of one slot. During a round that source is
an :class:`AnswerSource` over the round's own answers, never the network: what
the answer carries is served, and anything else raises :class:`Deferred`,
which leaves the check waiting in the vault. The engine plans the queries of
the next round's fetch from the checks still waiting
(:func:`backchannel.client.logchecks.plan_queries`), so a check that needs more
than the answer carries completes one round later, and the exchange with the
relay keeps the same shape whatever is being checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from backchannel.client.relay_client import CellLog, EntryPlace, FetchAnswer, RelayRefusal
from backchannel.errors import RelayUnavailable
from backchannel.protocol.batch import (
    DepositBatchAnswer,
    FetchBatchAnswer,
    LogBundle,
    Query,
    QueryKind,
)


class Deferred(RelayUnavailable):
    """What a check needs is not in this round's answer: it waits for the next round."""


@dataclass(frozen=True)
class Bundle:
    """One answer's log data: one head, the leaves it proves, a consistency proof."""

    signed_head: bytes | None
    leaves: dict[int, bytes] = field(default_factory=dict)
    inclusion: dict[int, tuple[bytes, ...]] = field(default_factory=dict)
    consistency: tuple[bytes, ...] = ()
    key: bytes | None = None

    @classmethod
    def of(cls, log: LogBundle) -> Bundle:
        return cls(
            log.signed_head or None,
            {i: leaf.leaf for i, leaf in log.leaves.items()},
            {i: tuple(leaf.inclusion_proof) for i, leaf in log.leaves.items()},
            tuple(log.consistency),
            log.key or None,
        )

    def place(
        self, leaf_index: int, position: int, batch_size: int, batch_proof: Sequence[bytes]
    ) -> CellLog:
        return CellLog(
            leaf_index,
            position,
            batch_size,
            tuple(batch_proof),
            self.inclusion.get(leaf_index, ()),
        )


@dataclass(frozen=True)
class DepositView:
    """A batch deposit's answer: per cell (status, cell id, place), and the log data."""

    results: tuple[tuple[int, bytes, CellLog | None], ...]
    bundle: Bundle

    @classmethod
    def of(cls, answer: DepositBatchAnswer) -> DepositView:
        bundle = Bundle.of(answer.log)
        results = tuple(
            (
                r.status,
                r.cell_id,
                None
                if r.place is None
                else bundle.place(
                    r.place.leaf_index,
                    r.place.batch_position,
                    r.place.batch_size,
                    r.place.batch_proof,
                ),
            )
            for r in answer.results
        )
        return cls(results, bundle)


@dataclass(frozen=True)
class FetchView:
    """A batch fetch's answer, with the slots it asked for."""

    asked: tuple[bytes, ...] = field(repr=False)
    cells: dict[bytes, bytes] = field(repr=False)
    places: dict[bytes, CellLog]
    spent: frozenset[bytes]
    absent: bytes | None
    bundle: Bundle
    answers: dict[Query, tuple[bool, bytes]] = field(repr=False)

    @classmethod
    def of(
        cls, asked: Sequence[bytes], queries: Sequence[Query], answer: FetchBatchAnswer
    ) -> FetchView:
        bundle = Bundle.of(answer.log)
        cells: dict[bytes, bytes] = {}
        places: dict[bytes, CellLog] = {}
        for c in answer.cells:
            cells[c.slot] = c.cell
            if c.place is not None:
                places[c.slot] = bundle.place(
                    c.place.leaf_index,
                    c.place.batch_position,
                    c.place.batch_size,
                    c.place.batch_proof,
                )
        answers = {
            q: (a.ok, a.payload)
            for q, a in zip(queries, answer.answers, strict=False)
            if q.kind is not QueryKind.NONE
        }
        return cls(
            tuple(asked),
            cells,
            places,
            frozenset(answer.spent),
            answer.absent or None,
            bundle,
            answers,
        )

    def as_fetch(self) -> FetchAnswer:
        return FetchAnswer(
            self.cells,
            self.bundle.signed_head,
            self.places,
            self.absent,
            self.asked,
            self.spent,
        )


class AnswerSource:
    """A log source over one round's answer; anything it lacks is :class:`Deferred`."""

    def __init__(self, bundle: Bundle, known_size: int, fetch: FetchView | None = None) -> None:
        self.bundle = bundle
        self.known_size = known_size
        self.fetch = fetch
        self.head_size = _head_size(bundle.signed_head)

    def _answer(self, query: Query) -> bytes:
        if self.fetch is None or query not in self.fetch.answers:
            raise Deferred("waiting for the next round's answer")
        ok, payload = self.fetch.answers[query]
        if not ok:
            raise _refusal("the relay could not answer a log query")
        return payload

    async def log_key(self) -> bytes:
        if self.bundle.key is None:
            raise Deferred("the relay's key comes with the first answer")
        return self.bundle.key

    async def log_leaf(self, index: int) -> bytes:
        leaf = self.bundle.leaves.get(index)
        return leaf if leaf is not None else self._answer(Query.leaf(index))

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if (first, second) == (self.known_size, self.head_size):
            return list(self.bundle.consistency)
        if {first, second} == {self.known_size, self.head_size}:
            # The answer's head is older than the one this device holds: the relay
            # went back, and no proof can connect the two.
            raise _refusal("the relay's log is shorter than the one it showed before")
        from backchannel.protocol.batch import decode_consistency

        return list(decode_consistency(self._answer(Query.consistency(first, second))))

    async def head_at(self, size: int) -> bytes:
        return self._answer(Query.head_at(size))

    async def entry_proof(self, leaf_index: int, position: int, tree_size: int) -> EntryPlace:
        from backchannel.protocol.batch import decode_entry

        leaf, batch_proof, inclusion = decode_entry(
            self._answer(Query.entry(leaf_index, position, tree_size))
        )
        return EntryPlace(leaf, tuple(batch_proof), tuple(inclusion))

    async def fetch_logged(self, slots: Iterable[bytes]) -> FetchAnswer:
        from backchannel.protocol.batch import decode_slot_read

        [slot] = list(slots)
        read = decode_slot_read(self._answer(Query.absence(slot)))
        cells = {slot: read.cell} if read.cell is not None else {}
        places: dict[bytes, CellLog] = {}
        if read.place is not None:
            places[slot] = CellLog(
                read.place.leaf_index,
                read.place.batch_position,
                read.place.batch_size,
                tuple(read.place.batch_proof),
                tuple(read.inclusion_proof),
            )
        return FetchAnswer(
            cells,
            self.bundle.signed_head,
            places,
            read.absence or None,
            (slot,),
            frozenset({slot}) if read.spent or _signed_spent(read.absence, slot) else frozenset(),
        )


def _signed_spent(statement: bytes, slot: bytes) -> bool:
    """Whether the statement (decoded when the answer was read) names ``slot`` as spent."""
    from backchannel.protocol.misbehaviour import Absence

    return bool(statement) and slot in Absence.decode(statement).spent


def _refusal(text: str) -> RelayRefusal:
    return RelayRefusal(text, 404)


def _head_size(signed: bytes | None) -> int:
    if not signed:
        return 0
    from backchannel.protocol.misbehaviour import SignedHead

    return SignedHead.decode(signed).head.size
