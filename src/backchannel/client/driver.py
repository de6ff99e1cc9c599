"""The round driver: the only code of a device that talks to a relay.

Each round it carries the engine's two requests (:mod:`backchannel.client.engine`):
the batch deposit at :data:`DEPOSIT_AT` of the round and the batch fetch at
:data:`FETCH_AT`, which also carries the round's log queries and asks for the
public intake's requests (:mod:`backchannel.client.intake`). The times are fixed
fractions of the round, the same whatever the officers did, so the relay and the
network see one exchange per round at the same moments. Depositing early and
fetching at mid-round lets what one device deposits reach the others in the
same round; a lie that a fetch reveals is proved by the next round's queries.
A phase's requests give up when the schedule's next request is due
(:data:`DEPOSIT_WINDOW`, :data:`FETCH_WINDOW`): a relay that does not answer
costs the round's exchange, never the schedule, and what waited goes next round.

:meth:`Driver.sync` runs rounds back to back (scripts, tests, benchmarks);
:meth:`Driver.run` keeps the schedule on a clock that tests inject.
Registering the mission's tenant, once, when the founding officer adopts the
mission, and handing the relay a credential rotation after a removal
(:meth:`Driver.hand_over_rotation`) are the only other requests a device makes
(pairing by code aside, :mod:`backchannel.client.pairing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace

from backchannel.client.answers import DepositView, FetchView
from backchannel.client.engine import PAD_TO, Engine
from backchannel.client.intake import Intake
from backchannel.client.mission import MissionState
from backchannel.client.plans import DepositPlan
from backchannel.client.relay_client import RelayClient, RelayRefusal
from backchannel.client.report import SyncReport
from backchannel.errors import RelayRefused, RelayUnavailable
from backchannel.protocol.batch import IntakeAsk
from backchannel.protocol.constants import ROUND_SECONDS

#: When in its round a device deposits, and when it fetches (fractions of the round).
DEPOSIT_AT = 0.1
FETCH_AT = 0.5
#: How long a phase's requests may take (fractions of the round): until the next
#: request of the schedule is due, the deposit until this round's fetch (24 s of a
#: 60 s round), the fetch until the next round's deposit (36 s). So no request
#: outlives its round or moves the next one, and a round of ``sync`` against a
#: relay that never answers ends within a round's length. A deposit given up
#: loses nothing: its cells wait, and the same cells at the same slots go next
#: round, which the relay answers as already held if it did store them.
DEPOSIT_WINDOW = FETCH_AT - DEPOSIT_AT
FETCH_WINDOW = 1 + DEPOSIT_AT - FETCH_AT
#: The least time a phase's requests have, however short the round: rounds of a
#: second or less (demos, tests) would otherwise give up on a relay that is only
#: busy. At the protocol's rounds (60 s) the windows above are far longer.
MIN_PHASE_SECONDS = 5.0

_RELAY_ERRORS = (RelayUnavailable, RelayRefused)
#: After the relay refuses a credential rotation (4xx), how long before it is asked again.
ROTATION_RETRY_SECONDS = 3600
_ROTATION_REFUSED = b"rotation-refused-at"
#: When the latest rotation was last queued again after the relay refused the credential.
_ROTATION_AGAIN = b"rotation-again-at"


class Driver(Engine, Intake):
    """Carries the engine's requests, round after round."""

    #: Seconds left to the running phase's requests (:meth:`_phase`).
    _left: Callable[[], float] | None = None

    async def register_tenant(self) -> None:
        """Register the mission's tenant, and pin the relay's log key for the mission card."""
        m = self.mission()
        async with self._relay(m.relay_url, None, None) as relay:
            taken = not await _register(relay, m.tenant_id, m.credential)
            with contextlib.suppress(RelayRefused):  # a relay that keeps no log
                await self.log.pin(m.relay_url, relay, [])
        if taken:
            async with self._relay(m.relay_url, m.tenant_id, m.credential) as own:
                if not await _ours(own):
                    raise RelayRefused(_squatted(m.tenant_id))

    @contextlib.asynccontextmanager
    async def relay_session(self) -> AsyncIterator[None]:
        """Keep one relay client (and its connection) per relay and tenant for the
        rounds run inside, instead of one per request: a connection (and, in the
        field, a TLS handshake) per request cost more than the requests themselves.
        One session at a time runs a home's rounds (:meth:`Home.rounds`)."""
        if self._pooling:
            yield
            return
        with self.home.rounds():
            self._pooling = True
            try:
                yield
            finally:
                self._pooling = False
                pool, self._pool = self._pool, {}
                for cm, _ in pool.values():
                    with contextlib.suppress(Exception):
                        await cm.__aexit__(None, None, None)

    @contextlib.asynccontextmanager
    async def _relay_for(
        self, url: str, tenant: str | None, credential: str | None
    ) -> AsyncIterator[RelayClient]:
        if not self._pooling:
            async with self._relay(url, tenant, credential) as relay:
                with self._in_phase(relay):
                    yield relay
            return
        key = (url, tenant, credential)
        if key not in self._pool:
            cm = self._relay(url, tenant, credential)
            self._pool[key] = (cm, await cm.__aenter__())
        with self._in_phase(self._pool[key][1]):
            yield self._pool[key][1]

    def _in_phase(self, relay: RelayClient) -> contextlib.AbstractContextManager[None]:
        """The running phase's time limit on ``relay``'s requests (none outside one)."""
        left = self._left
        return contextlib.nullcontext() if left is None else relay.within(left)

    @contextlib.contextmanager
    def _phase(self, left: Callable[[], float] | None, window: float) -> Iterator[None]:
        """The phase's requests give up once ``left()`` seconds reach 0; by default
        (rounds back to back: ``sync``, ``settle``, ``demo.lockstep``), once
        ``window`` of a round has passed since the phase began."""
        before = self._left
        length = max(MIN_PHASE_SECONDS, window * self.round_seconds())
        self._left = left or _left(self._clock() + length, self._clock)
        try:
            yield
        finally:
            self._left = before

    def round_seconds(self) -> float:
        channels = self.channels()
        return float(channels[0].terms.round_seconds if channels else ROUND_SECONDS)

    async def hand_over_rotation(self, report: SyncReport) -> None:
        """Hand the relay the credential rotation a removal left pending, before
        this round's fetch needs the new credential (only in the rounds after
        a removal: the relay must learn of it to refuse the old credential)."""
        m = self.mission_or_none()
        if m is None or not m.pending_rotation:
            return
        refused_at = self.vault.get("mission", _ROTATION_REFUSED)
        now = int(self._clock())
        if refused_at is not None and now < int(refused_at) + ROTATION_RETRY_SECONDS:
            return
        try:
            async with self._relay_for(m.relay_url, None, None) as relay:
                report.requests += 1
                await relay.rotate_credential(m.tenant_id, json.loads(m.pending_rotation))
        except RelayRefusal as exc:
            if not _judged(exc):
                report.relay_error = str(exc)  # the relay's trouble: again next round
                return
            # Its judgement of a signed chain will not change in a round: asking
            # each round would only show the relay, round after round, that a
            # device of the mission is not like the others. Said once; asked
            # again after a while (a relay upgraded meanwhile, say).
            text = (
                "the relay refused to move the mission's credential after the roster "
                f"change ({exc}): an officer the change removed may still fetch with "
                "the old one; compare the roster with your colleagues"
            )
            self.log.alarm(m.relay_url, text, report.alarms)
            self.vault.put("mission", _ROTATION_REFUSED, str(now).encode())
            return
        except _RELAY_ERRORS as exc:
            report.relay_error = str(exc)
            return
        with self._tx():
            current = self.mission()
            if current.pending_rotation == m.pending_rotation:
                self._put("mission", b"state", replace(current, pending_rotation=b""))
            self.vault.delete("mission", _ROTATION_REFUSED)

    async def deposit_phase(
        self, report: SyncReport, left: Callable[[], float] | None = None
    ) -> None:
        """This round's batch deposit (one per relay the lanes go to); its requests
        give up once ``left()`` seconds reach 0 (by default :data:`DEPOSIT_WINDOW`)."""
        with self._phase(left, DEPOSIT_WINDOW):
            if self.mission_or_none() is not None:
                self.retry_takeovers()
                self.leave_condemned(report.alarms)
                await self._register_at_fallback(report)
            await self.hand_over_rotation(report)
            for plan in self.deposit_plans():
                try:
                    if plan.mirror:
                        await self._mirror(plan, report)
                    else:
                        await self._deposit(plan, report)
                except _RELAY_ERRORS as exc:
                    if not plan.mirror:  # the relay being left may fail as it likes
                        report.relay_error = str(exc)

    async def _register_at_fallback(self, report: SyncReport) -> None:
        """The first rounds of a move (relay_move.py): the mission's tenant at the new
        relay, and its key pinned (the one the policy names, else nothing is trusted)."""
        move = self.relay_move()
        if move is None or move.registered:
            return
        m = self.mission()
        try:
            async with self._relay_for(m.relay_url, None, None) as relay:
                report.requests += 1
                taken = not await _register(relay, m.tenant_id, m.credential)
                if m.last_rotation:
                    # Also takes back a tenant someone registered first (never rotated).
                    await self._rotation_at_new_relay(relay, m, report)
                elif taken:
                    async with self._relay_for(m.relay_url, m.tenant_id, m.credential) as own:
                        report.requests += 1
                        if not await _ours(own):
                            self.log.alarm(m.relay_url, _squatted(m.tenant_id), report.alarms)
                monitor = await self.log.pin(m.relay_url, relay, report.alarms)
        except _RELAY_ERRORS as exc:
            report.relay_error = str(exc)
            return
        if monitor is not None:
            with self._tx():
                self.registered_at_fallback()

    async def _rotation_at_new_relay(
        self, relay: RelayClient, m: MissionState, report: SyncReport
    ) -> None:
        """Hand a tenant registered just now the mission's latest rotation: it never
        saw one, and a relay takes a never-rotated tenant's first rotation whatever
        its place, so an older one (an officer a removal cut off holds those)
        would move it to a credential he knows."""
        try:
            await relay.rotate_credential(m.tenant_id, json.loads(m.last_rotation))
        except RelayRefusal as exc:
            if not _judged(exc):
                raise
            text = (
                f"the new relay refused the mission's latest credential rotation ({exc}): "
                "an officer a removal cut off may move the tenant to a credential he knows"
            )
            self.log.alarm(m.relay_url, text, report.alarms)

    def _rotation_again(self) -> None:
        """The relay refuses the mission's credential: queue the latest rotation again.

        A relay restored from a copy older than the rotation holds the credential
        from before it, which an officer the removal cut off knows; handed the
        rotation again, it takes the mission's and refuses his. At most once in
        :data:`ROTATION_RETRY_SECONDS`: a refusal for another reason must not
        become a request more every round."""
        m = self.mission_or_none()
        if m is None or not m.last_rotation or m.pending_rotation:
            return
        now = int(self._clock())
        at = self.vault.get("mission", _ROTATION_AGAIN)
        if at is not None and now < int(at) + ROTATION_RETRY_SECONDS:
            return
        with self._tx():
            self._put("mission", b"state", replace(m, pending_rotation=m.last_rotation))
            self.vault.put("mission", _ROTATION_AGAIN, str(now).encode())

    async def _mirror(self, plan: DepositPlan, report: SyncReport) -> None:
        """Copy this round's mailbox cells to the relay being left, for colleagues
        whose devices still read there; its answer is not taken in."""
        cells = [(c.out.tenant_id, c.out.slot, c.out.cell) for c in plan.cells]
        async with self._relay_for(plan.relay_url, None, None) as relay:
            report.requests += 1
            await relay.batch_deposit(cells, 0)

    async def _deposit(self, plan: DepositPlan, report: SyncReport) -> None:
        cells = [(c.out.tenant_id, c.out.slot, c.out.cell) for c in plan.cells]
        async with self._relay_for(plan.relay_url, None, None) as relay:
            report.requests += 1
            answer = await relay.batch_deposit(cells, plan.known_size)
        # One vault transaction for all the answer does; the checks await nothing
        # that suspends: the answer is in hand. It need not wait for the disk:
        # lost with the power, the same cells go again (they were made durable
        # before they went) and the relay answers the same; the round's fetch,
        # which commits durably, carries it to disk first.
        with self._tx(durable=False):
            await self.take_deposit(plan, DepositView.of(answer), report)

    async def fetch_phase(
        self, report: SyncReport, left: Callable[[], float] | None = None
    ) -> bool:
        """This round's batch fetch from our own tenant; True when it found us caught
        up. Its requests give up once ``left()`` reaches 0 (default :data:`FETCH_WINDOW`)."""
        with self._phase(left, FETCH_WINDOW):
            return await self._fetch_phase(report)

    async def _fetch_phase(self, report: SyncReport) -> bool:
        m = self.mission()
        plan = self.fetch_plan()
        # The fetch also asks what the public sent since the last round, every
        # round on every device, whether or not the mission ever opened its
        # intake (it then brings nothing): the same request whatever officers do.
        # The open state it states is what the last round's fetch brought (a
        # colleague's opening or closing reaches the relay a round later).
        intake = IntakeAsk(*self.intake_window())
        try:
            async with self._relay_for(m.relay_url, m.tenant_id, m.credential) as relay:
                report.requests += 1
                answer = await relay.batch_fetch(
                    plan.slots, plan.known_size, plan.queries, PAD_TO, intake
                )
        except _RELAY_ERRORS as exc:
            report.relay_error = str(exc)
            caught_up = False
            if isinstance(exc, RelayRefusal) and exc.status == 401:
                self._rotation_again()
        else:
            with self._tx():
                view = FetchView.of(plan.slots, plan.queries, answer)
                caught_up = await self.take_fetch(plan, view, report)
            # After the cells: an intake key a colleague's mailbox object brought
            # in this answer opens the requests sealed to it.
            if answer.intake:
                report.intake += self.take_intake(list(answer.intake))
        await self._fetch_left(report)
        return caught_up

    async def _fetch_left(self, report: SyncReport) -> None:
        """During a move, then, what the relay being left still holds for us.

        After the new relay's fetch: a colleague who moved is seen there first
        (his copy at the old relay is then already read), and what the peer
        left at the old relay fills any gap the new one showed."""
        move = self.relay_move()
        plan = self.old_fetch_plan(self.fetch_plan(queries=False)) if move is not None else None
        if move is None or plan is None:
            return
        try:
            async with self._relay_for(plan.relay_url, plan.tenant_id, move.old_credential) as r:
                report.requests += 1
                answer = await r.batch_fetch(
                    plan.slots, plan.known_size, plan.queries, PAD_TO, None
                )
        except _RELAY_ERRORS:
            return  # what it holds waits there; the move goes on
        with self._tx():
            await self.take_fetch(plan, FetchView.of(plan.slots, plan.queries, answer), report)

    async def sync(self, rounds: int = 1) -> SyncReport:
        """Run ``rounds`` rounds now, back to back: deposit, then fetch, each round.

        Cells are produced and persisted even when the relay cannot be reached:
        they wait in the outbox and go out, each exactly once, in later rounds.
        """
        report = SyncReport()
        async with self.relay_session():
            for _ in range(rounds):
                await self.round(report)
        report.waiting = len(self.vault.pending("net_out"))
        return report

    async def round(self, report: SyncReport) -> bool:
        """One round now: deposit, then fetch. True when the fetch found us caught up."""
        await self.deposit_phase(report)
        caught_up = await self.fetch_phase(report)
        report.rounds += 1
        return caught_up

    async def settle(self, limit: int = 64) -> SyncReport:
        """Run rounds back to back until this device is idle and caught up (at most ``limit``).

        Every round is the same exchange; this only decides how many to run
        (scripts and tests: "until what I queued is out and what waits for me is in").
        """
        report = SyncReport()
        async with self.relay_session():
            for _ in range(limit):
                caught_up = await self.round(report)
                if report.relay_error is not None or (caught_up and self.idle()):
                    break
        report.waiting = len(self.vault.pending("net_out"))
        return report

    async def run(
        self,
        on_round: Callable[[SyncReport], None],
        *,
        seconds: float | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rounds: int | None = None,
    ) -> None:
        """Keep the schedule: deposit at DEPOSIT_AT and fetch at FETCH_AT of every round.

        A request still unanswered when the next one is due gives up (a deposit's
        cells wait for the next round), so the moments never move.
        ``clock`` and ``sleep`` are injected by tests; ``rounds`` bounds the run.
        """
        now = clock or self._clock
        length = seconds or self.round_seconds()
        current = _first_round(now(), length)
        async with self.relay_session():
            await self._run(on_round, length, now, sleep, current, rounds)

    async def _run(
        self,
        on_round: Callable[[SyncReport], None],
        length: float,
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        current: int,
        rounds: int | None,
    ) -> None:
        done = 0
        while rounds is None or done < rounds:
            report = SyncReport()
            start = current * length
            await _until(start + DEPOSIT_AT * length, now, sleep)
            await self.deposit_phase(report, _left(start + FETCH_AT * length, now, floor=True))
            await _until(start + FETCH_AT * length, now, sleep)
            await self.fetch_phase(
                report, _left(start + (1 + DEPOSIT_AT) * length, now, floor=True)
            )
            report.rounds = 1
            report.waiting = len(self.vault.pending("net_out"))
            on_round(report)
            done += 1
            # The next round on the clock; a device that fell behind skips ahead.
            current = max(current + 1, _first_round(now(), length))


def _first_round(t: float, length: float) -> int:
    """The first round whose deposit moment is still to come at ``t``.

    A device that starts, or falls behind, after a round's deposit moment
    waits for the next round rather than deposit and fetch at once, off the
    schedule: the moment it started would show.
    """
    current = int(t // length)
    return current if t <= (current + DEPOSIT_AT) * length else current + 1


def _judged(exc: RelayRefusal) -> bool:
    """A refusal that is the relay's judgement of the request (a 4xx other than a
    timeout or a rate limit): asking again the same will not change it."""
    return 400 <= exc.status < 500 and exc.status not in (408, 429)


async def _register(relay: RelayClient, tenant_id: str, credential: str) -> bool:
    """Register the mission's tenant; False when it was taken (409), which an
    earlier try or a colleague's device explains, or someone who came first
    (:func:`_ours`)."""
    try:
        await relay.register_tenant(tenant_id, credential)
    except RelayRefused as exc:
        if getattr(exc, "status", None) != 409:
            raise
        return False
    return True


async def _ours(relay: RelayClient) -> bool:
    """Whether the tenant takes the mission's credential (``relay`` holds both)."""
    try:
        await relay.fetch([])
    except RelayRefusal as exc:
        if exc.status != 401:
            raise
        return False
    return True


def _squatted(tenant_id: str) -> str:
    return (
        f"the relay already holds a tenant {tenant_id} under another credential: someone "
        "registered this mission's id there first, and nothing can be fetched from it. Ask "
        "the relay's operator to remove that tenant, or found the mission on another relay"
    )


def _left(when: float, now: Callable[[], float], *, floor: bool = False) -> Callable[[], float]:
    """Seconds from now to ``when``, on ``now``'s clock, each time asked; with
    ``floor``, ``when`` is at least :data:`MIN_PHASE_SECONDS` from now."""
    if floor:
        when = max(when, now() + MIN_PHASE_SECONDS)
    return lambda: when - now()


async def _until(
    when: float, now: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
) -> None:
    delay = when - now()
    if delay > 0:
        await sleep(delay)
