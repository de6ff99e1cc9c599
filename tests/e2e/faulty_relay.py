"""A relay in front of a real one that misbehaves on cue, for the devices' rounds.

:class:`FaultyRelay` listens on 127.0.0.1 and passes every request on to a
real relay process, unless told otherwise by :attr:`FaultyRelay.mode`:

* ``"ok"``: passed on, and the relay's answer passed back;
* a status (``"500"``, ``"409"``, ``"413"``...): that status, with an error body;
* ``"garbage"``: 200 and bytes that are no answer at all;
* ``"truncated"``: 200 and a body cut short of its announced length;
* ``"close"``: the connection closed without an answer;
* ``"hang"``: no answer, ever;
* ``"lost"``: passed on (the relay acts on it), and the answer replaced by garbage.

:attr:`FaultyRelay.only`, when set, limits the misbehaviour to requests whose
path contains it (``"/batch/deposit"``, ``"/batch/fetch"``).
"""

from __future__ import annotations

import http.server
import socket
import threading
from typing import Any

import httpx

_PASSED_HEADERS = ("authorization", "content-type")


class FaultyRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "ok"
        self.only: str | None = None
        #: Requests that met the misbehaviour.
        self.struck = 0
        self._stop = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._stop.set()  # a hanging answer ends
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FaultyRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pass_on(self, method: str, path: str, body: bytes, headers: Any) -> httpx.Response:
        wanted = {k: v for k, v in headers.items() if k.lower() in _PASSED_HEADERS}
        return httpx.request(method, self.upstream + path, content=body, headers=wanted, timeout=30)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                mode = relay.mode
                if relay.only is not None and relay.only not in self.path:
                    mode = "ok"
                if mode != "ok":
                    relay.struck += 1
                if mode in ("ok", "lost"):
                    r = relay._pass_on(self.command, self.path, body, self.headers)
                    if mode == "ok":
                        self._answer(r.status_code, r.content)
                        return
                if mode.isdigit():
                    self._answer(int(mode), b'{"error": "the relay refuses this"}')
                elif mode in ("garbage", "lost"):
                    self._answer(200, b"\x00\xffno answer of a relay" * 8)
                elif mode == "truncated":
                    self._answer(200, b"\x01" * 100, length=100_000)
                    self.close_connection = True
                elif mode == "hang":
                    relay._stop.wait()
                elif mode == "close":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_POST = do_PUT = _serve

        return Handler
