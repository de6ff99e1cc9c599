"""Only the rounds talk to the relay: every other command works on the home alone.

The four officers reach a real relay through a TCP proxy that counts
connections. The whole flow of a message runs through the ``backchannel``
command; after each command the count must not have moved, except for the
commands that run rounds (``sync``, ``run``). Founding a mission registers it
(``mission adopt`` on the founder), pairing by code meets the peer over the
relay (``peer invite``/``peer join``) and ``relay serve`` is the relay: those
are the documented exceptions and are not run here (the missions are founded
through the library).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import OPEN_REGISTRATION, Officer, set_up_missions
from tests.relay.procs import RelayProcess


class CountingProxy:
    """Forwards TCP connections to ``target`` and counts them."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[CountingProxy]:
    with RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", OPEN_REGISTRATION) as relay:
        parts = urlsplit(relay.base_url)
        proxy = CountingProxy((parts.hostname or "127.0.0.1", parts.port or 80))
        try:
            yield proxy
        finally:
            proxy.close()


def test_no_command_but_the_rounds_reaches_the_relay(
    tmp_path: Path, proxied: CountingProxy
) -> None:
    m = set_up_missions(tmp_path / "homes", proxied.url, proxied.url)
    ri, han, smith, jones = m.ri, m.han, m.smith, m.jones
    offline_runs = 0

    def offline(officer: Officer, *args: str) -> dict[str, object]:
        """Run a command that must not touch the network; returns its --json answer."""
        nonlocal offline_runs
        before = proxied.connections
        answer: dict[str, object] = officer.json(*args)
        assert proxied.connections == before, f"{officer.name} {args} reached the relay"
        offline_runs += 1
        return answer

    def rounds(*officers: Officer) -> None:
        before = proxied.connections
        for o in officers:
            o.settle()
        assert proxied.connections > before  # the rounds do reach it

    for o in (ri, han, smith, jones):
        offline(o, "status")
        offline(o, "mission", "show")
        offline(o, "peer", "list")
    offline(ri, "mission", "card")
    draft = offline(ri, "compose", "Washington", "--text", "Talks resume on Monday.")
    offline(ri, "drafts")
    rounds(ri, han)
    [request] = offline(han, "cosign", "list")["requests"]  # type: ignore[misc]
    offline(han, "cosign", "approve", request["request_id"][:8])
    rounds(han, ri, smith, jones)
    [item] = offline(smith, "inbox")["messages"]  # type: ignore[misc]
    offline(smith, "open", item["message_id"][:8])
    rounds(smith, jones)
    [share] = offline(jones, "share", "list")["requests"]  # type: ignore[misc]
    offline(jones, "share", "approve", share["request_id"][:8])
    rounds(jones, smith)
    read = offline(smith, "read", item["message_id"][:8])
    assert read["text"] == "Talks resume on Monday."
    offline(han, "officer", "rotate-key")
    offline(smith, "evidence", "list")
    offline(jones, "forget", item["message_id"][:8])
    offline(jones, "audit", "list")
    assert offline(jones, "audit", "verify")["holds"] is True
    offline(jones, "audit", "export", "--out", str(tmp_path / "dc.audit"))
    # The public intake: officers' commands queue; the rounds carry everything.
    offline(ri, "intake", "open")
    card = offline(ri, "intake", "card", "--out", str(tmp_path / "card.txt"))
    rounds(ri, han)
    request = tmp_path / "request.txt"
    request.write_text("Kind: interview\nSubject: Ten minutes\n\nOn the record?\n")
    submitted = han.run("--json", "intake", "submit", str(tmp_path / "card.txt"), "--file",
                        str(request))  # the public's own request: it reaches the relay  # fmt: skip
    assert submitted.code == 0 and card["open"] is True, submitted.err
    rounds(ri, han)
    [listed] = offline(han, "intake", "list")["requests"]  # type: ignore[misc]
    offline(han, "intake", "show", str(listed["number"]))
    offline(han, "intake", "tag", "1", "press")
    offline(han, "intake", "note", "1", "--file", str(request))
    offline(han, "intake", "assign", "1", "Officer Ri")
    offline(ri, "intake", "answer", "1", "--file", str(request))
    rounds(ri, han)
    [proposal] = offline(han, "intake", "show", "1")["proposals"]  # type: ignore[index]
    offline(han, "intake", "approve", "1", proposal["id"][:8])
    rounds(han, ri)
    rounds(smith, ri)
    [sent] = offline(ri, "drafts")["drafts"]  # type: ignore[misc]
    assert sent["draft_id"] == draft["draft_id"] and sent["state"] == "delivered"
    assert offline_runs >= 20
