"""The witnesses' word on the relay's log, asked for on the schedule.

Every :data:`CHECKPOINT_EVERY`-th fetch of a device (the first one included)
carries, in its last log-query place, a CHECKPOINT query: the relay answers
with its latest checkpoint and the witnesses' cosignatures on it, the log
key's binding of the checkpoint key, and the consistency proof between the
checkpoint and the head this device holds (``docs/spec/relay-log-v1.md`` §8).
Every device asks it, whatever the mission's policy and whatever its officers
do, so the exchange keeps its shape.

The device verifies the answer (:func:`~backchannel.protocol.witnessing.check_checkpoint`)
against its mission's :class:`~backchannel.protocol.witnessing.WitnessRule`:

* a head this device holds counts as **witnessed** once a checkpoint at least
  as large, consistent with it, carries the cosignatures of ``needed`` of the
  policy's witnesses. A head that stays unwitnessed longer than the rule's lag
  raises one alarm (until witnessed heads come again): the relay shows this
  device a history its witnesses did not see, or the witnesses are down;
* a checkpoint that does not square with the head held is a relay showing its
  witnesses another log. At equal sizes the two signed statements prove it at
  once (a *checkpoint fork*, kept as evidence); otherwise the next checks ask
  the relay for its own head at the checkpoint's size, which proves either a
  checkpoint fork or, through the log checks, a fork of the relay's own log.

Nothing here blocks a round: the mailbox keeps working when the witnesses are
down (a witness must not be able to silence a channel), and the alarm says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from backchannel.client.answers import AnswerSource
from backchannel.client.device import Device
from backchannel.errors import DecodeError, RemoteProtocolError
from backchannel.protocol.batch import Query, QueryKind
from backchannel.protocol.codec import Writer
from backchannel.protocol.evidence import checkpoint_fork_evidence
from backchannel.protocol.merkle import ProofError, TreeHead
from backchannel.protocol.misbehaviour import SignedHead, relay_key_from_bytes
from backchannel.protocol.note import Checkpoint, Note
from backchannel.protocol.witnessing import (
    CheckpointAnswer,
    Witnessed,
    WitnessError,
    WitnessRule,
    check_checkpoint,
)

#: A device asks for the relay's cosigned checkpoint every this many checks (rounds).
CHECKPOINT_EVERY = 10
#: Relay url -> :class:`WitnessWatch`.
WITNESSING = "relay_witnessing"
#: Relay url -> :class:`CheckpointConflict`: a checkpoint that contradicted the head held.
CONFLICTS = "relay_checkpoint_conflicts"
#: Checks that ask for the relay's head at a conflicting checkpoint's size before
#: the conflict stays an alarm only.
MAX_CONFLICT_TRIES = 8


def rule_digest(rule: WitnessRule) -> bytes:
    """What names the rule a watch was kept under (a local key, never sent)."""
    w = Writer()
    rule.write(w)
    return hashlib.sha256(w.bytes()).digest()


@dataclass(frozen=True)
class WitnessWatch:
    """How far the mission's witnesses vouch for the log this device holds, of one relay."""

    #: The rule this watch is kept under (a change of policy starts a new watch).
    rule: bytes = b""
    #: The largest checkpoint size, consistent with the head held, that the
    #: rule's witnesses cosigned; who did; and by when (their time).
    size: int = 0
    names: tuple[str, ...] = ()
    cosigned_at: int = 0
    #: When this device last verified a checkpoint (its clock; 0: never).
    checked_at: float = 0.0
    #: The oldest head size this device held that no such checkpoint covers
    #: yet, and since when (this device's clock); 0: none.
    open_size: int = 0
    open_since: float = 0.0
    #: The alarm for the open head was raised.
    late: bool = False

    def after(self, seen: Witnessed | None, held: int, now: float) -> WitnessWatch:
        """This watch once ``seen`` (None: nothing verified) came while ``held`` was held."""
        out = self
        if seen is not None:
            out = replace(out, checked_at=now)
            if seen.enough and seen.size >= out.size:
                out = replace(out, size=seen.size, names=seen.names, cosigned_at=seen.cosigned_at)
        if out.open_size and out.size >= out.open_size:
            out = replace(out, open_size=0, open_since=0.0, late=False)
        if not out.open_size and held > out.size:
            out = replace(out, open_size=held, open_since=now)
        return out

    def overdue(self, now: float, lag_seconds: int) -> bool:
        return bool(self.open_size) and not self.late and now - self.open_since > lag_seconds


@dataclass(frozen=True)
class CheckpointConflict:
    """A checkpoint that did not square with the head held, waiting for the relay's
    own head at its size."""

    answer: bytes = field(repr=False)
    size: int = 0
    tries: int = 0


class Witnessing(Device):
    """The schedule's CHECKPOINT queries and what their answers say."""

    _checks = 0

    def witness_watch(self) -> tuple[WitnessRule, WitnessWatch]:
        """The mission's witness rule and how far its witnesses vouch for the relay's log."""
        m = self.mission()
        rule = m.policy.witnesses
        watch = self._get(WITNESSING, m.relay_url.encode(), WitnessWatch)
        if watch is None or watch.rule != rule_digest(rule):
            watch = WitnessWatch(rule_digest(rule))
        return rule, watch

    def witness_report(self) -> dict[str, object]:
        """For ``status`` and the desk: what the policy asks and how far it is met."""
        rule, watch = self.witness_watch()
        return {
            "asked": rule.describe(),
            "needed": rule.needed,
            "witnessed_size": watch.size,
            "cosigned_by": list(watch.names),
            "cosigned_at": watch.cosigned_at or None,
            "checked_at": watch.checked_at or None,
            "late": watch.late,
        }

    def witness_query(self, known_size: int) -> Query | None:
        """The query for this check's reserved place, or None (NONE padding).

        A conflict under way asks for the relay's head at its size every check;
        otherwise every :data:`CHECKPOINT_EVERY`-th check asks for the checkpoint.
        """
        conflict = self._get(CONFLICTS, self.mission().relay_url.encode(), CheckpointConflict)
        due = self._checks % CHECKPOINT_EVERY == 0
        self._checks += 1
        if conflict is not None:
            return Query.head_at(conflict.size)
        return Query.checkpoint(known_size) if due else None

    async def _take_witnessing(
        self,
        url: str,
        source: AnswerSource,
        queries: tuple[Query, ...],
        answers: dict[Query, tuple[bool, bytes]],
        alarms: list[str],
    ) -> None:
        if url != self.mission().relay_url or not queries:
            return
        asked = queries[-1]
        if asked.kind is QueryKind.CHECKPOINT and asked in answers:
            self._take_checkpoint(url, asked.numbers[0], answers[asked], alarms)
        elif asked.kind is QueryKind.HEAD_AT:
            await self._take_conflict_head(url, source, answers.get(asked), alarms)

    def _held(self, url: str) -> tuple[bytes, TreeHead | None]:
        monitor = self.log.monitor(url)
        if monitor is None:
            return b"", None
        return monitor.relay_key, monitor.head

    def _take_checkpoint(
        self, url: str, known_size: int, answer: tuple[bool, bytes], alarms: list[str]
    ) -> None:
        relay_key, held = self._held(url)
        if not relay_key or (held.size if held else 0) != known_size:
            return  # the head moved since the query was made: the next one asks again
        rule, watch = self.witness_watch()
        now = self._clock()
        seen: Witnessed | None = None
        ok, payload = answer
        if ok:
            try:
                parsed = CheckpointAnswer.decode(payload)
                seen = check_checkpoint(parsed, relay_key, held, rule, now)
            except WitnessError as exc:
                self.log.alarm(url, f"the relay's checkpoint does not verify: {exc}", alarms)
            except ProofError:
                self._conflict(url, parsed, held, alarms)
            except DecodeError:
                self.log.alarm(url, "the relay's checkpoint answer could not be read", alarms)
        watch = watch.after(seen, known_size, now)
        if rule.asked and watch.overdue(now, rule.lag_seconds):
            watch = replace(watch, late=True)
            minutes = int(now - watch.open_since) // 60
            self.log.alarm(
                url,
                f"no checkpoint cosigned by {rule.needed} of the mission's witnesses "
                f"({', '.join(rule.names)}) has covered log size {watch.open_size} for "
                f"{minutes} minutes: the relay may be showing this device a history its "
                "witnesses have not seen, or the witnesses are down",
                alarms,
            )
        with self._tx():
            self._put(WITNESSING, url.encode(), watch)

    def _conflict(
        self, url: str, parsed: CheckpointAnswer, held: TreeHead | None, alarms: list[str]
    ) -> None:
        """A checkpoint that does not square with the head held: prove it, or find out."""
        cp = Checkpoint.parse(Note.decode(parsed.note).text)
        monitor = self.log.monitor(url)
        assert monitor is not None and held is not None
        if cp.size == held.size:
            key = relay_key_from_bytes(monitor.relay_key)
            blob = checkpoint_fork_evidence(
                key, monitor.pinned, parsed.checkpoint_key, parsed.binding, parsed.note
            )
            with self._tx():
                self.log.keep(url, blob, alarms)
            return
        self.log.alarm(
            url,
            f"the relay's checkpoint of size {cp.size} does not square with the log this "
            "device holds: the relay shows its witnesses another history; its own head at "
            "that size is asked for next",
            alarms,
        )
        with self._tx():
            self._put(CONFLICTS, url.encode(), CheckpointConflict(parsed.encode(), cp.size))

    async def _take_conflict_head(
        self, url: str, source: AnswerSource, answer: tuple[bool, bytes] | None, alarms: list[str]
    ) -> None:
        conflict = self._get(CONFLICTS, url.encode(), CheckpointConflict)
        monitor = self.log.monitor(url)
        if conflict is None or monitor is None:
            return
        parsed = CheckpointAnswer.decode(conflict.answer)
        cp = Checkpoint.parse(Note.decode(parsed.note).text)
        key = relay_key_from_bytes(monitor.relay_key)
        try:
            if answer is None or not answer[0]:
                raise DecodeError("not answered")
            head = SignedHead.decode(answer[1])
            head.verify(key)
        except RemoteProtocolError as exc:  # unreadable, or not signed by the pinned key
            self._conflict_unanswered(url, conflict, str(exc), alarms)
            return
        with self._tx():
            self.vault.delete(CONFLICTS, url.encode())
            if head.head.size == cp.size and head.head.root != cp.root:
                blob = checkpoint_fork_evidence(
                    key, answer[1], parsed.checkpoint_key, parsed.binding, parsed.note
                )
                self.log.keep(url, blob, alarms)
                return
        # The relay's own head agrees with its checkpoint: its log, not only what it
        # showed the witnesses, contradicts the head this device holds.
        await self.log.hold(
            url,
            source,
            answer[1],
            "the relay's own head at its checkpoint's size does not square with the log "
            "this device holds",
            alarms,
        )

    def _conflict_unanswered(
        self, url: str, conflict: CheckpointConflict, why: str, alarms: list[str]
    ) -> None:
        with self._tx():
            if conflict.tries + 1 >= MAX_CONFLICT_TRIES:
                self.vault.delete(CONFLICTS, url.encode())
                self.log.alarm(
                    url,
                    f"the relay never served its head at its checkpoint's size {conflict.size} "
                    f"({why}); the conflict stays an alarm",
                    alarms,
                )
            else:
                self._put(CONFLICTS, url.encode(), replace(conflict, tries=conflict.tries + 1))
