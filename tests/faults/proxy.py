"""A TCP proxy between the devices and the relay that cuts, resets and delays.

It runs its own event loop in a thread. Modes:

* ``pass``: bytes flow both ways;
* ``cut``: every open connection is closed and new ones are closed at once
  (the cable pulled);
* ``reset``: like ``cut``, but each connection ends with a TCP RST;
* ``delay``: each chunk waits ``delay`` seconds before it is forwarded.

``on_deposit`` (when set) is called from the proxy's thread once a batch
deposit's request has been forwarded whole, before the relay answers: the
harness kills the relay there, mid-batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable

from tests.relay.procs import free_port

MODES = ("pass", "cut", "reset", "delay")


class FaultProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.mode = "pass"
        self.delay = 0.0
        self.on_deposit: Callable[[], None] | None = None
        self.connections = 0
        self.broken = 0
        #: Answers of the relay with a 5xx status that passed through (a fault that bit).
        self.server_errors = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection, and end the thread."""

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.close()
            self._writers.clear()

        with contextlib.suppress(RuntimeError, TimeoutError):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        assert mode in MODES, mode
        self.mode, self.delay = mode, delay
        if mode in ("cut", "reset"):
            fut = asyncio.run_coroutine_threadsafe(self._break_all(mode == "reset"), self._loop)
            fut.result(10)

    # -- the loop's side -------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    async def _break_all(self, reset: bool) -> None:
        for w in list(self._writers):
            self._close(w, reset)

    def _close(self, writer: asyncio.StreamWriter, reset: bool) -> None:
        if reset:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.broken += 1
        writer.close()
        self._writers.discard(writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode in ("cut", "reset"):
            self._close(writer, self.mode == "reset")
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            self._close(writer, reset=True)  # the relay is down: refuse as it would
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, upstream=True),
                self._pipe(up_reader, writer, upstream=False),
            )
        finally:
            for w in (writer, up_writer):
                if w in self._writers:
                    self._writers.discard(w)
                    w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        pending = b""  # the request being forwarded, to see a batch deposit end
        want = -1
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if self.mode == "delay" and self.delay:
                    await asyncio.sleep(self.delay)
                if self.mode in ("cut", "reset"):
                    break
                if not upstream and chunk.startswith(b"HTTP/1.1 5"):
                    self.server_errors += 1
                writer.write(chunk)
                await writer.drain()
                if upstream and self.on_deposit is not None:
                    pending += chunk
                    pending, want = self._watch(pending, want)
        except (ConnectionError, OSError):
            pass
        finally:
            if writer in self._writers:
                self._writers.discard(writer)
                writer.close()

    def _watch(self, pending: bytes, want: int) -> tuple[bytes, int]:
        """Call ``on_deposit`` when a whole batch deposit request has gone upstream."""
        head_end = pending.find(b"\r\n\r\n")
        if head_end < 0:
            return pending, -1
        head = pending[:head_end].lower()
        if want < 0:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip() == b"content-length":
                    length = int(value.strip() or b"0")
            want = head_end + 4 + length
        if len(pending) < want:
            return pending, want
        if head.startswith(b"post /v1/batch/deposit"):
            hook = self.on_deposit
            if hook is not None:
                hook()
        return pending[want:], -1
