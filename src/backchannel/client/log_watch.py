"""One device's watch over the relays' transparency logs (``docs/spec/relay-log-v1.md``).

For every relay it talks to, the device keeps a :class:`LogMonitor` (the
relay's key, pinned on first contact or from a mission card, and the largest
signed head it has verified). Through :class:`LogWatch` it

* proves every cell it deposits or fetches in a signed head, and keeps each
  new head consistent with the pinned one (§4);
* checks the relay's signed statement that the slots it found empty were
  empty (§3.1);
* compares the head its peer gossips inside the channel's cells with its own,
  and checks the peer's note of its latest deposit against what the relay
  served at that slot (§5).

A contradiction between signed statements becomes a proof of misbehaviour
(§6): it is verified with :func:`verify_misbehaviour` before it is kept, so a
kept proof convinces anyone, offline. Anything the device cannot turn into a
proof (a bad consistency proof, a refusal) is an alarm only. Alarms and proofs
live in the vault; ``backchannel status`` shows the alarms and ``backchannel
evidence export`` writes the proofs out.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from backchannel.client import statecodec
from backchannel.client.relay_client import CellLog, EntryPlace, FetchAnswer
from backchannel.client.vault import Vault
from backchannel.crypto.primitives import equal
from backchannel.errors import (
    RelayRefused,
    RelayUnavailable,
    RemoteProtocolError,
    SignatureError,
)
from backchannel.protocol.evidence import (
    FORK,
    KIND_NAMES,
    REWIND,
    drop_evidence,
    encode_evidence,
    evidence_kind,
    slot_conflict_evidence,
    verify_misbehaviour,
)
from backchannel.protocol.log_monitor import LogMonitor
from backchannel.protocol.merkle import EMPTY_ROOT, ProofError, TreeHead, verify_consistency
from backchannel.protocol.misbehaviour import (
    Absence,
    DepositNote,
    EntryProof,
    Gossip,
    SignedHead,
    relay_key_from_bytes,
)


class LogSource(Protocol):
    """Where the checks read the relay's log: the round's answers, or a relay client."""

    async def log_key(self) -> bytes: ...
    async def log_leaf(self, index: int) -> bytes: ...
    async def consistency_proof(self, first: int, second: int) -> list[bytes]: ...
    async def head_at(self, size: int) -> bytes: ...
    async def entry_proof(self, leaf_index: int, position: int, tree_size: int) -> EntryPlace: ...
    async def fetch_logged(self, slots: Iterable[bytes]) -> FetchAnswer: ...


MONITORS = "relay_logs"
ALARMS = "relay_alarms"
EVIDENCE = "relay_evidence"
#: Per relay and kind of lie: the incident its first proof opened, and how
#: often the relay has repeated it since.
INCIDENTS = "relay_incidents"
#: Per relay: the log sizes at which the relay's own heads may yet prove a
#: contradiction that nothing signed has proved so far. Every round asks the
#: relay for its heads at these sizes until a proof is kept or the relay's log
#: grows on consistently from the pinned head.
SUSPECTS = "relay_suspects"
#: Relay url -> the pinned head its log was last seen to contradict.
CONTRADICTED = "relay_contradicted"
#: Proofs of misbehaviour kept at most (more of the same adds nothing).
MAX_EVIDENCE = 64
#: Once this many proofs are kept, further proofs of a kind already held are dropped.
KEEP_SAME_KIND_UNTIL = 8
#: Alarms kept at most (each distinct line once).
MAX_ALARMS = 256
#: How far ahead of this device's clock a relay's signed time may be (seconds)
#: before it is an alarm: a relay dating its statements ahead would escape the
#: hour that proofs of drops and slot conflicts rely on.
CLOCK_TOLERANCE = 600

#: A checked cell: (tenant, slot, cell bytes, its place in the log).
CellCheck = tuple[str, bytes, bytes, CellLog]


def _incident_key(url: str, kind: str) -> bytes:
    """One incident per relay and lie: a rewind and the forks that follow it (the
    relay growing a log again from its old copy) are one lie about its history."""
    group = "history" if kind in (KIND_NAMES[REWIND], KIND_NAMES[FORK]) else kind
    return f"{url}\n{group}".encode()


@dataclass(frozen=True, slots=True)
class Incident:
    """A relay proven to lie one way: the first proof's summary, and the repeats since.

    A relay rolled back to an old copy of its database contradicts the head a
    device pinned in every round after; one incident is one alarm and one
    proof, and the rounds after only count.
    """

    relay_url: str
    kind: str
    summary: str
    repeats: int = 0


@dataclass(frozen=True, slots=True)
class SlotSeen:
    """What the relay served at one of our inbound slots: a proved cell, or signed absence."""

    slot: bytes = field(repr=False)
    #: The compact signed head of the answer.
    signed_head: bytes
    #: The served cell's proofs against ``signed_head``.
    entry: EntryProof | None = None
    #: The encoded :class:`Absence` naming the slot, when nothing was served.
    absence: bytes = b""


class LogWatch:
    """Log checks for one device; ``expected_keys(url)`` gives relay-key fingerprints
    that mission cards state for ``url`` (empty: trust on first contact)."""

    def __init__(
        self,
        vault: Vault,
        expected_keys: Callable[[str], set[bytes]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vault = vault
        self._expected = expected_keys
        self._clock = clock

    # -- what is kept -------------------------------------------------------------

    def monitor(self, url: str) -> LogMonitor | None:
        raw = self.vault.get(MONITORS, url.encode())
        return statecodec.loads(LogMonitor, raw) if raw is not None else None

    def _save(self, url: str, monitor: LogMonitor) -> None:
        self.vault.put(MONITORS, url.encode(), statecodec.dumps(monitor))

    def alarms(self) -> list[str]:
        return [raw.decode() for _, raw in self.vault.pending(ALARMS)]

    def evidence(self) -> list[bytes]:
        return [blob for _, blob in self.vault.items(EVIDENCE)]

    def alarm(self, url: str, text: str, alarms: list[str]) -> None:
        """Raise an alarm; one already raised is reported again but kept once."""
        line = f"relay log ({url}): {text}"
        alarms.append(line)
        kept = [raw for _, raw in self.vault.pending(ALARMS)]
        if line.encode() not in kept and len(kept) < MAX_ALARMS:
            self.vault.append(ALARMS, line.encode())

    def incidents(self) -> list[Incident]:
        return [statecodec.loads(Incident, raw) for _, raw in self.vault.items(INCIDENTS)]

    def _repeated(self, url: str, kind: str) -> bool:
        """Count a repeat of an incident already proved; False when there is none."""
        key = _incident_key(url, kind)
        raw = self.vault.get(INCIDENTS, key)
        if raw is None:
            return False
        inc = statecodec.loads(Incident, raw)
        self.vault.put(INCIDENTS, key, statecodec.dumps(replace(inc, repeats=inc.repeats + 1)))
        return True

    def suspect_sizes(self, url: str) -> list[int]:
        """The sizes at which to ask ``url`` for its heads: an open contradiction's."""
        raw = self.vault.get(SUSPECTS, url.encode())
        if raw is None:
            return []
        return [int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8)]

    def _suspect(self, url: str, sizes: Iterable[int]) -> None:
        wanted = sorted({s for s in sizes if s > 0})
        self.vault.put(SUSPECTS, url.encode(), b"".join(s.to_bytes(8, "big") for s in wanted))

    def _clear_suspicion(self, url: str) -> None:
        if self.vault.get(SUSPECTS, url.encode()) is not None:
            self.vault.delete(SUSPECTS, url.encode())

    def keep(self, url: str, blob: bytes, alarms: list[str]) -> None:
        """Keep a proof of misbehaviour, once it verifies as anyone would verify it.

        One per relay and kind of lie: a relay that repeats a lie it was proved
        to tell (a rewound relay does in every round) adds a repeat to the
        incident, not another proof and another alarm.
        """
        try:
            summary = verify_misbehaviour(blob)
        except RemoteProtocolError as exc:
            self.alarm(url, f"signed statements disagree but prove nothing offline ({exc})", alarms)
            return
        kind = evidence_kind(blob)
        if kind in (KIND_NAMES[REWIND], KIND_NAMES[FORK]):
            self._clear_suspicion(url)
        if self._repeated(url, kind):
            return
        name = hashlib.sha256(blob).digest()[:16]
        if self.vault.get(EVIDENCE, name) is not None:
            return
        kept = self.evidence()
        same = [b for b in kept if evidence_kind(b) == evidence_kind(blob)]
        if same and len(kept) >= KEEP_SAME_KIND_UNTIL:
            return  # more proofs of one lie add nothing; the first ones stand
        if len(kept) >= MAX_EVIDENCE:
            self.alarm(url, f"{summary} (not kept: {MAX_EVIDENCE} proofs already)", alarms)
            return
        self.vault.put(EVIDENCE, name, blob)
        self.vault.put(
            INCIDENTS, _incident_key(url, kind), statecodec.dumps(Incident(url, kind, summary))
        )
        self.alarm(
            url, f"{summary}; proof of misbehaviour kept (`backchannel evidence export`)", alarms
        )

    def unproved(self, url: str, alarms: list[str]) -> None:
        """An answer came without its place in the log: an alarm once the relay is known
        to keep one (its key is pinned, or a mission card names it)."""
        if self.monitor(url) is not None or self._expected(url):
            self.alarm(url, "the relay answered without proving it in its log", alarms)

    def fingerprint(self, url: str) -> bytes | None:
        monitor = self.monitor(url)
        return hashlib.sha256(monitor.relay_key).digest() if monitor else None

    def gossip(self, url: str, note: DepositNote | None) -> Gossip | None:
        """What to tell the peer about ``url``'s log: our pinned head, compact, and ``note``."""
        monitor = self.monitor(url)
        if monitor is None or not monitor.pinned:
            return None
        return Gossip(SignedHead.decode(monitor.pinned).compact().encode(), note)

    # -- pinning and checking ------------------------------------------------------

    async def pin(self, url: str, relay: LogSource, alarms: list[str]) -> LogMonitor | None:
        """The monitor of ``url``, pinning the relay's key on first contact.

        When a mission card states the key for ``url`` and the relay shows
        another, nothing is pinned and an alarm is raised.
        """
        monitor = self.monitor(url)
        if monitor is not None:
            return monitor
        key = await relay.log_key()
        expected = self._expected(url)
        if expected and hashlib.sha256(key).digest() not in expected:
            self.alarm(
                url,
                "the relay shows a key that no mission card names for it: an impostor, "
                "or a card that is out of date; nothing from it is trusted",
                alarms,
            )
            return None
        monitor = LogMonitor(key)
        self._save(url, monitor)
        return monitor

    async def check(
        self,
        url: str,
        relay: LogSource,
        signed: bytes,
        cells: Sequence[CellCheck],
        alarms: list[str],
    ) -> dict[bytes, EntryProof] | None:
        """Prove ``cells`` in ``signed`` and move the pinned head on; None on an alarm."""
        try:
            monitor = await self.pin(url, relay, alarms)
            if monitor is None:
                return None
            try:
                head = monitor.open(signed)
            except SignatureError:
                raise SignatureError(
                    "the relay's tree head is not signed by the key this device pinned for it: "
                    "the relay's key changed, or another server answers at its address"
                ) from None
            self._not_ahead(url, head.timestamp, "a tree head", alarms)
            leaves: dict[int, bytes] = {}
            proved: dict[bytes, EntryProof] = {}
            for tenant_id, slot, cell, place in cells:
                if place.leaf_index not in leaves:
                    leaves[place.leaf_index] = await relay.log_leaf(place.leaf_index)
                entry = EntryProof(
                    hashlib.sha256(cell).digest(),
                    leaves[place.leaf_index],
                    place.batch_position,
                    place.batch_proof,
                    place.inclusion_proof,
                )
                entry.verify(tenant_id, slot, head)
                proved[slot] = entry
        except RemoteProtocolError as exc:
            self.alarm(url, str(exc), alarms)
            return None
        except RelayRefused:
            self.alarm(url, "the relay refused to prove a cell in its log", alarms)
            return None
        if not await self._advance(url, relay, monitor, signed, alarms):
            return None
        return proved

    async def _advance(
        self, url: str, relay: LogSource, monitor: LogMonitor, signed: bytes, alarms: list[str]
    ) -> bool:
        head = monitor.open(signed)
        need = monitor.proof_needed(head)
        try:
            proof = await relay.consistency_proof(*need) if need else []
            moved = monitor.advance(signed, proof)
        except (RemoteProtocolError, RelayRefused) as exc:
            reason = str(exc) if isinstance(exc, RemoteProtocolError) else "no consistency proof"
            self.vault.put(CONTRADICTED, url.encode(), monitor.pinned)
            await self._contradiction(url, relay, monitor, signed, reason, alarms)
            return False
        if moved != monitor:
            self._save(url, moved)
            if moved.pinned != monitor.pinned:
                # The log grew on consistently from the pinned head: nothing
                # contradicted it after all.
                self._clear_suspicion(url)
                self.vault.delete(CONTRADICTED, url.encode())
        return True

    def contradicted(self, url: str) -> bytes | None:
        """The head this device pinned for ``url``, if the relay's log no longer
        grows on from it (the cells it proved may be gone: rewind.py)."""
        monitor = self.monitor(url)
        raw = self.vault.get(CONTRADICTED, url.encode())
        if monitor is None or raw is None or raw != monitor.pinned:
            return None
        return raw

    def check_absence(
        self,
        url: str,
        signed: bytes,
        raw: bytes | None,
        tenant_id: str,
        empty: set[bytes],
        alarms: list[str],
        spent: frozenset[bytes] = frozenset(),
    ) -> bool:
        """Whether the relay signed, at the answer's head, that exactly ``empty`` were
        empty and exactly ``spent`` acknowledged."""
        if not empty and not spent:
            return True
        monitor = self.monitor(url)
        if monitor is None:
            return False
        if raw is None:
            self.alarm(
                url, "the relay left slots out without signing that they were empty or spent",
                alarms,
            )  # fmt: skip
            return False
        try:
            absence = Absence.decode(raw)
            absence.verify(relay_key_from_bytes(monitor.relay_key))
            if (
                absence.head != SignedHead.decode(signed).head
                or absence.tenant_id != tenant_id
                or set(absence.slots) != empty
                or set(absence.spent) != spent
            ):
                raise ProofError("the relay's statement of absence does not match its answer")
            if not self._not_ahead(url, absence.served_at, "a statement of absence", alarms):
                return False
        except RemoteProtocolError as exc:
            self.alarm(url, f"statement of absence: {exc}", alarms)
            return False
        return True

    def _not_ahead(self, url: str, when: int, what: str, alarms: list[str]) -> bool:
        """Alarm when the relay dates ``what`` ahead of this device's clock."""
        if when <= self._clock() + CLOCK_TOLERANCE:
            return True
        self.alarm(
            url,
            f"the relay dated {what} more than {CLOCK_TOLERANCE} s ahead of this device's "
            "clock (a relay that post-dates what it signs escapes the proofs; or this "
            "device's clock is wrong)",
            alarms,
        )
        return False

    # -- contradictions -------------------------------------------------------------

    async def _contradiction(
        self, url: str, relay: LogSource, monitor: LogMonitor, other: bytes, reason: str,
        alarms: list[str],
    ) -> None:  # fmt: skip
        """``other`` (signed by the pinned key) does not square with the pinned head.

        Look for signed statements that contradict each other: two roots for
        one size, a shorter log signed later than a longer one, or, failing
        those, the relay's own head at the other size in our view.
        """
        pinned = monitor.pinned
        key = relay_key_from_bytes(monitor.relay_key)
        ours, theirs = monitor.open(pinned), monitor.open(other)
        blob: bytes | None = None
        if ours.size == theirs.size:
            if not equal(ours.root, theirs.root):
                blob = encode_evidence(FORK, key, pinned, other)
        else:
            (big, big_raw), (small, small_raw) = sorted(
                ((ours, pinned), (theirs, other)), key=lambda p: -p[0].size
            )
            if big.timestamp < small.timestamp:
                blob = encode_evidence(REWIND, key, big_raw, small_raw)
            else:
                blob = await self._fork_at(relay, monitor, ((small, small_raw), (big, big_raw)))
        if blob is not None:
            self.keep(url, blob, alarms)
        elif not self._repeated(url, KIND_NAMES[REWIND]):
            self.alarm(url, reason, alarms)
            # The relay's heads at these sizes, asked again in the rounds to come,
            # prove the lie once its log has grown past ours (a fork) or its
            # clock has moved on (a rewind).
            self._suspect(url, (ours.size, theirs.size))

    async def hold(
        self, url: str, relay: LogSource, other: bytes, reason: str, alarms: list[str]
    ) -> None:
        """``other``, signed by ``url``'s key, does not square with the pinned head:
        prove it from the relay's own heads, or raise ``reason`` as an alarm."""
        monitor = self.monitor(url)
        if monitor is None or not monitor.pinned:
            return
        await self._contradiction(url, relay, monitor, other, reason, alarms)

    async def _fork_at(
        self, relay: LogSource, monitor: LogMonitor, heads: Sequence[tuple[TreeHead, bytes]]
    ) -> bytes | None:
        """A FORK proof from the relay's head at one of ``heads``' sizes, if it differs."""
        key = relay_key_from_bytes(monitor.relay_key)
        for head, raw in heads:
            try:
                mine_raw = await relay.head_at(head.size)
                mine = monitor.open(mine_raw)
            except (RelayRefused, RelayUnavailable, RemoteProtocolError):
                continue  # not to be had (this round): the contradiction stays an alarm
            if mine.size == head.size and not equal(mine.root, head.root):
                return encode_evidence(FORK, key, raw, mine_raw)
        return None

    async def compare(
        self, url: str, relay: LogSource, peer_head: bytes, alarms: list[str]
    ) -> None:
        """Compare the head the peer gossiped with ours (§5); alarm or keep a proof."""
        monitor = self.monitor(url)
        if monitor is None or not monitor.pinned:
            return
        try:
            theirs = monitor.open(peer_head)
        except SignatureError:
            self.alarm(
                url,
                "the peer's view of this relay's log is signed by another key: "
                "the relay shows the two missions different keys",
                alarms,
            )
            return
        ours = monitor.open(monitor.pinned)
        if ours.size == theirs.size and equal(ours.root, theirs.root):
            return
        if 0 in (ours.size, theirs.size) and EMPTY_ROOT in (ours.root, theirs.root):
            return  # the empty log is a prefix of every log
        if ours.size != theirs.size:
            small, big = sorted((ours, theirs), key=lambda h: h.size)
            if big.timestamp >= small.timestamp:
                try:
                    proof = await relay.consistency_proof(small.size, big.size)
                    verify_consistency(small.size, big.size, small.root, big.root, proof)
                    return
                except (RemoteProtocolError, RelayRefused):
                    pass
        await self._contradiction(
            url,
            relay,
            monitor,
            peer_head,
            "the peer's view of the relay's log does not square with ours, and the relay "
            "signed nothing that proves which one it falsified",
            alarms,
        )

    async def check_note(
        self,
        url: str,
        relay: LogSource,
        tenant_id: str,
        seen: SlotSeen,
        note: DepositNote,
        alarms: list[str],
    ) -> None:
        """The peer says its cell ``note.cell_id`` went to ``seen.slot``: did we get it?"""
        if seen.entry is not None and equal(seen.entry.cell_id, note.cell_id):
            return
        monitor = self.monitor(url)
        if monitor is None or not monitor.pinned:
            return
        head = monitor.open(monitor.pinned)
        try:
            place = await relay.entry_proof(note.leaf_index, note.batch_position, head.size)
            theirs = EntryProof(
                note.cell_id,
                place.leaf,
                note.batch_position,
                place.batch_proof,
                place.inclusion_proof,
            )
            leaf = theirs.verify(tenant_id, seen.slot, head)
        except (RelayRefused, RemoteProtocolError):
            self.alarm(
                url,
                f"the peer's cell of round {note.round} is not where the peer says the relay "
                "logged it: the relay or the peer is lying",
                alarms,
            )
            return
        key = relay_key_from_bytes(monitor.relay_key)
        if seen.entry is not None:
            blob = slot_conflict_evidence(
                key, monitor.pinned, seen.signed_head, tenant_id, seen.slot, theirs, seen.entry
            )
        else:
            if leaf.batch_index >= Absence.decode(seen.absence).head.size:
                return  # the peer's cell came after we looked: late, not dropped
            # Ask again for this slot alone: a proof meant to be published must not
            # name the slots of rounds still to come (the first statement did).
            answer = await relay.fetch_logged([seen.slot])
            if answer.cells:
                text = f"the relay held back the peer's cell of round {note.round} past its round"
                self.alarm(url, text, alarms)
                return
            if answer.spent:
                # Signed as acknowledged: kept with the alarm, not a drop to prove.
                text = (
                    f"the relay signs that the peer's cell of round {note.round} was "
                    "acknowledged, which this device never did"
                )
                self.alarm(url, text, alarms)
                return
            if answer.signed_head is None or not self.check_absence(
                url, answer.signed_head, answer.absent, tenant_id, {seen.slot}, alarms
            ):
                return
            assert answer.absent is not None
            blob = drop_evidence(
                key,
                monitor.pinned,
                answer.signed_head,
                Absence.decode(answer.absent),
                seen.slot,
                theirs,
            )
        self.keep(url, blob, alarms)
