"""A relay that takes the request and never answers: how long a device waits for it.

* A request the relay leaves unanswered is tried twice, not five times as a
  refused connection is, and never for longer than its budget (a round's length).
* One ``sync`` round against such a relay ends within a round's length on the
  device's clock, says the relay did not answer, and leaves the cells waiting;
  they go out, once, when the relay answers again.
* Under ``run``, a request still unanswered when the schedule's next one is due
  gives up: every deposit and fetch goes at its moment of its round.
* A deposit the relay stored but never answered goes again the next round, is
  answered as already held, and reaches the colleague once.

The relay's silence is played on an injected clock: each try lasts the timeout
the client gave it, then fails as httpx's would, so no test waits for it. Two
tests meet a real silent server, with timeouts of a fraction of a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import httpx
import pytest

from backchannel.client.driver import DEPOSIT_AT, FETCH_AT, MIN_PHASE_SECONDS
from backchannel.client.relay_client import RelayClient, RetryPolicy
from backchannel.client.report import SyncReport
from backchannel.client.service import Client, RelayFactory
from backchannel.errors import RelayUnavailable
from backchannel.protocol.payload import note
from tests.client.evil_relay import Clock, LyingRelay
from tests.client.test_engine_faults import _missions, _rounds_until

DEPOSIT = "/v1/batch/deposit"
#: Float slack when comparing moments on the clock (about 1.8e9 s: ulps of 2e-7).
EPS = 1e-6
LANES = 3  # the cells Ri's device keeps waiting: the channel's, the mailbox's, the intake's


class Silent(httpx.AsyncBaseTransport):
    """A relay that takes every request and does not answer while ``silent``.

    Each try lasts the read timeout the client gave it, on ``clock``, then ends
    in :class:`httpx.ReadTimeout`. With ``app``, the relay acts on the request
    first (only its answer is lost); once not ``silent``, ``app`` answers."""

    def __init__(self, clock: Clock, app: object | None = None) -> None:
        self.clock = clock
        self.inner = httpx.ASGITransport(app=app) if app is not None else None  # type: ignore[arg-type]
        self.silent = True
        #: (path, start, end) of every try that went unanswered.
        self.tries: list[tuple[str, float, float]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.silent and self.inner is not None:
            return await self.inner.handle_async_request(request)
        start = self.clock.now
        if self.inner is not None:
            await self.inner.handle_async_request(request)
        self.clock.now += request.extensions["timeout"]["read"]
        self.tries.append((request.url.path, start, self.clock.now))
        raise httpx.ReadTimeout("no answer", request=request)

    def sleep(self) -> Callable[[float], Awaitable[None]]:
        async def sleep(seconds: float) -> None:
            self.clock.now += seconds

        return sleep

    def factory(self) -> RelayFactory:
        """Clients as a device makes them (default retries and timeout), on ``clock``."""

        def make(url: str, tenant: str | None, credential: str | None) -> RelayClient:
            return RelayClient(url, tenant, credential, transport=self, sleep=self.sleep())

        return make

    def per_request(self) -> list[tuple[str, int]]:
        """(path, tries) of each request, in order (consecutive tries of one path)."""
        out: list[tuple[str, int]] = []
        for path, _, _ in self.tries:
            kind = "deposit" if path == DEPOSIT else "fetch"
            if out and out[-1][0] == kind:
                out[-1] = (kind, out[-1][1] + 1)
            else:
                out.append((kind, 1))
        return out


async def _scripted(transport: httpx.AsyncBaseTransport) -> tuple[int, list[float], str]:
    """``info()`` over ``transport`` with the default policy; (tries, waits, error)."""
    waits: list[float] = []
    tries = 0

    class Counting(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal tries
            tries += 1
            return await transport.handle_async_request(request)

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with RelayClient("http://relay", transport=Counting(), sleep=sleep) as client:
        with pytest.raises(RelayUnavailable) as err:
            await client.info()
    return tries, waits, str(err.value)


def _raising(exc: type[httpx.TransportError]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("no", request=request)

    return httpx.MockTransport(handler)


async def test_an_unanswered_request_is_tried_twice_and_a_refused_one_five_times() -> None:
    tries, waits, error = await _scripted(_raising(httpx.ReadTimeout))
    assert (tries, len(waits)) == (2, 1)
    assert error == "cannot read the relay's info: relay did not answer (ReadTimeout); retry later"
    tries, waits, error = await _scripted(_raising(httpx.ConnectError))
    assert (tries, len(waits)) == (5, 4)
    assert error == "cannot read the relay's info: relay is unreachable (ConnectError); retry later"


async def test_a_request_lasts_at_most_its_budget_tries_and_waits_included() -> None:
    clock = Clock()
    silent = Silent(clock)
    policy = RetryPolicy()
    start = clock.now
    async with RelayClient(
        "http://relay", transport=silent, sleep=silent.sleep(), clock=clock
    ) as client:
        with pytest.raises(RelayUnavailable, match="did not answer"):
            await client.info()
        assert len(silent.tries) == policy.timeout_attempts == 2
        assert clock.now - start <= policy.budget == 60
        # A caller's schedule shortens it: the time it gives is shared by the tries.
        silent.tries.clear()
        start = clock.now
        with client.within(lambda: start + 10 - clock.now), pytest.raises(RelayUnavailable):
            await client.info()
        assert [round(end - begin, 3) for _, begin, end in silent.tries][:1] == [5.0]
        assert clock.now - start <= 10 + EPS
        # With no time left, nothing is sent.
        silent.tries.clear()
        with client.within(lambda: 0.0), pytest.raises(RelayUnavailable, match="no time was left"):
            await client.info()
        assert silent.tries == []


@asynccontextmanager
async def _server(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[tuple[str, list[int]]]:
    """A server on 127.0.0.1 running ``serve`` per connection; its URL and connection count."""
    connections = [0]
    held: list[tuple[asyncio.StreamWriter, asyncio.Task[None] | None]] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        held.append((writer, asyncio.current_task()))
        # The client gave up, or the server is closing.
        with suppress(ConnectionError, asyncio.CancelledError):
            await serve(reader, writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        for writer, task in held:
            writer.close()
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for _, t in held if t is not None), return_exceptions=True)


async def _never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(1 << 16):  # reads the request, and waits for the client to leave
        pass


async def _trickles(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers a byte at a time, never fast enough to end, never slow enough for a read timeout."""
    await reader.read(1 << 20)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while not writer.is_closing():
        writer.write(b"{")
        await writer.drain()
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("serve", [_never_answers, _trickles], ids=["silent", "trickling"])
async def test_a_real_relay_that_does_not_answer_is_given_up_on_after_two_tries(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> None:
    async with _server(serve) as (url, connections):
        began = time.monotonic()
        async with RelayClient(url, timeout=0.2) as client:
            with pytest.raises(RelayUnavailable) as err:
                await asyncio.wait_for(client.info(), 5)
        took = time.monotonic() - began
    assert connections[0] == 2
    assert "did not answer" in str(err.value) and "Timeout" in str(err.value), err.value
    # Two tries of 0.2 s and a wait of at most 0.1 s: given up on by itself, well
    # before the 5 s guard, however loaded the machine.
    assert took < 4, took


@asynccontextmanager
async def _drafted(
    tmp_path: Path, text: str
) -> AsyncIterator[tuple[Clock, LyingRelay, tuple[Client, ...], tuple[Client, ...]]]:
    """Two missions on a relay, on an injected clock, and a draft of ``text`` on
    Ri's device (its cells wait for the rounds): (clock, relay, New York, Washington)."""
    clock = Clock()
    relay = LyingRelay(tmp_path / "relay", clock)
    async with relay.running():
        ny, dc = await _missions(relay, tmp_path, clock)
        ny[0].compose(ny[0].channel_for("Washington").channel_id, note(text))
        yield clock, relay, ny, dc


async def test_one_sync_against_a_relay_that_never_answers_ends_within_a_round(
    tmp_path: Path,
) -> None:
    async with _drafted(tmp_path, "across the silence") as (clock, _, ny, dc):
        ri, han = ny
        honest, silent = ri._relay, Silent(clock)
        ri._relay = silent.factory()
        start = clock.now
        report = await ri.sync(1)
        # One round, not five minutes: each request tried twice, within its part of it.
        assert clock.now - start <= ri.round_seconds() + EPS, clock.now - start
        assert silent.per_request() == [("deposit", 2), ("fetch", 2)]
        assert report.relay_error == (
            "cannot fetch a batch of cells: relay.test did not answer (ReadTimeout); retry later"
        )
        assert (report.deposited, report.alarms) == (0, [])
        assert report.waiting == len(ri.vault.pending("net_out")) == LANES
        ri._relay = honest
        report = await ri.sync(1)
        assert (report.relay_error, report.deposited, report.waiting) == (None, LANES, 0)
        assert await _rounds_until((*ny, *dc), clock, han.cosign_requests) == []
        [request] = han.cosign_requests()
        assert han.show_cosign(request.request_id)[1].text == "across the silence"


async def _run(
    device: Client, silent: Silent, rounds: int, length: float = 60.0
) -> tuple[float, list[SyncReport]]:
    """``rounds`` rounds of ``run`` from the start of a round; (that start, the reports)."""
    clock = silent.clock
    clock.now = (clock.now // length + 1) * length
    first = clock.now
    reports: list[SyncReport] = []
    await device.run(
        reports.append, seconds=length, clock=clock, sleep=silent.sleep(), rounds=rounds
    )
    return first, reports


async def test_under_run_a_request_unanswered_when_the_next_is_due_gives_up(
    tmp_path: Path,
) -> None:
    async with _drafted(tmp_path, "on schedule") as (clock, _, ny, _):
        ri = ny[0]
        silent = Silent(clock)
        ri._relay = silent.factory()
        length = 60.0
        first, reports = await _run(ri, silent, 3, length)
    # Every request at its moment of its round, and over when the next one is due.
    deposits = [t for t in silent.tries if t[0] == DEPOSIT]
    fetches = [t for t in silent.tries if t[0] != DEPOSIT]
    for r in range(3):
        begins = first + r * length
        (_, d_start, _), (_, _, d_end) = deposits[2 * r : 2 * r + 2]
        (_, f_start, _), (_, _, f_end) = fetches[2 * r : 2 * r + 2]
        assert d_start == pytest.approx(begins + DEPOSIT_AT * length, abs=EPS), r
        assert d_end <= begins + FETCH_AT * length + EPS, (r, d_end - begins)
        assert f_start == pytest.approx(begins + FETCH_AT * length, abs=EPS), r
        assert f_end <= begins + (1 + DEPOSIT_AT) * length + EPS, (r, f_end - begins)
    assert silent.per_request() == [("deposit", 2), ("fetch", 2)] * 3
    assert [r.rounds for r in reports] == [1, 1, 1]
    assert all("did not answer" in (r.relay_error or "") for r in reports)
    assert [r.waiting for r in reports] == [LANES] * 3  # nothing lost, nothing piles up


async def test_a_deposit_stored_but_never_answered_goes_again_and_arrives_once(
    tmp_path: Path,
) -> None:
    async with _drafted(tmp_path, "said once") as (clock, relay, ny, dc):
        ri, han = ny
        silent = Silent(clock, relay.app)  # the relay acts on each request; answers lost
        ri._relay = silent.factory()
        _, [lost] = await _run(ri, silent, 1)
        assert lost.relay_error is not None and lost.waiting == LANES
        held = await relay.store.count_cells()
        silent.silent = False
        _, [again] = await _run(ri, silent, 1)
        # The same cells at the same slots: the relay held them already.
        assert (again.relay_error, again.waiting, again.alarms) == (None, 0, [])
        assert await relay.store.count_cells() == held
        assert await _rounds_until((*ny, *dc), clock, han.cosign_requests) == []
        assert len(han.cosign_requests()) == 1


class Slow(Silent):
    """A relay that answers every request, ``delay`` seconds later on the clock."""

    def __init__(self, clock: Clock, app: object, delay: float) -> None:
        super().__init__(clock, app)
        self.delay = delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.inner is not None
        self.clock.now += self.delay
        return await self.inner.handle_async_request(request)


async def test_short_rounds_still_wait_for_a_busy_relay(tmp_path: Path) -> None:
    # Rounds of a second (a demo, a test) would leave a deposit a fraction of a
    # second: a relay that is only busy still gets MIN_PHASE_SECONDS to answer.
    async with _drafted(tmp_path, "in a short round") as (clock, relay, ny, _):
        ri = ny[0]
        slow = Slow(clock, relay.app, MIN_PHASE_SECONDS - 1)
        ri._relay = slow.factory()
        _, [report] = await _run(ri, slow, 1, length=1.0)
    assert (report.relay_error, report.deposited, report.waiting) == (None, LANES, 0)


class _Recording(httpx.AsyncBaseTransport):
    """The relay's app, each request's path and moment on ``clock`` written down."""

    def __init__(self, clock: Clock, app: object) -> None:
        self.clock, self.seen = clock, []  # type: list[tuple[str, float]]
        self.inner = httpx.ASGITransport(app=app)  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.url.path, self.clock.now))
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("phase", [0.05, DEPOSIT_AT, DEPOSIT_AT + 0.001, 0.3, 0.7])
async def test_a_device_started_within_a_round_keeps_to_the_schedule(
    tmp_path: Path, phase: float
) -> None:
    # Started after a round's deposit moment, a device waits for the next round:
    # depositing and fetching at once would show when it started.
    async with _drafted(tmp_path, "on time") as (clock, relay, ny, _):
        ri, length = ny[0], 60.0
        recording = _Recording(clock, relay.app)
        ri._relay = lambda url, tenant, credential: RelayClient(  # type: ignore[assignment]
            url, tenant, credential, transport=recording, sleep=Silent(clock).sleep()
        )
        clock.now = (clock.now // length + 1 + phase) * length
        begun = int(clock.now // length)
        await ri.run(lambda _: None, seconds=length, clock=clock, sleep=Silent(clock).sleep(),
                     rounds=2)  # fmt: skip
        moments = [
            (int(t // length) - begun, round(t % length / length, 3)) for _, t in recording.seen
        ]
        first = 0 if phase <= DEPOSIT_AT else 1
        deposit, fetch = round(DEPOSIT_AT, 3), round(FETCH_AT, 3)
        assert moments == [
            (first, deposit),
            (first, fetch),
            (first + 1, deposit),
            (first + 1, fetch),
        ]
