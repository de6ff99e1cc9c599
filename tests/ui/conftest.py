"""The desk in a real browser: ``backchannel ui`` processes and Debian's Chromium.

Playwright drives the system's Chromium (``/usr/bin/chromium``; Playwright's
own browser downloads are never used). Without it every browser test skips
and says why. Each desk is a ``backchannel ui`` subprocess on its own home,
with short rounds (``--round-seconds``); its login link is read from its
first lines of output, as an officer reads it off his terminal. The link
names the desk's own ``<random>.localhost``, which Chromium resolves itself;
requests made without the browser (httpx: the system's resolver may not know
the name) go to 127.0.0.1 and name the desk in their Host header
(:meth:`DeskProcess.http`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import base_env
from tests.relay.procs import REPO

_T = TypeVar("_T")

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: Set to write a screenshot of every view to docs/img/ui-*.png.
SCREENSHOTS = os.environ.get("BACKCHANNEL_UI_SCREENSHOTS") == "1"
IMG = REPO / "docs" / "img"


def chromium() -> str | None:
    for path in (*CHROMIUM_PATHS, shutil.which("chromium") or ""):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return None


class DeskProcess:
    """``backchannel --home HOME ui --round-seconds S``: its origin and its one-time link."""

    def __init__(
        self, home: Path, round_seconds: float = 0.5, port: int | None = None,
        args: tuple[str, ...] = (), env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.home = home
        self.round_seconds = round_seconds
        self.port = port
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.link = ""
        self.origin = ""
        self.host = ""  # the desk's "<random>.localhost:<port>"

    def start(self) -> DeskProcess:
        return self.launch().ready()

    def launch(self) -> DeskProcess:
        """Start the process; :meth:`ready` waits for its link (several desks start at once)."""
        cmd = [
            sys.executable, "-m", "backchannel.cli.main", "--home", str(self.home),
            "ui", "--round-seconds", str(self.round_seconds),
            *(["--port", str(self.port)] if self.port else []), *self.args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, env=base_env(**self.env), cwd=REPO, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        return self

    def ready(self) -> DeskProcess:
        assert self.proc is not None and self.proc.stdout is not None
        for _ in range(3):
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError(f"the desk exited: {err[-2000:]}")
            if "/login/" in line:
                self.link = line.strip()
                self.origin = self.link.split("/login/")[0]
                self.host = urlsplit(self.origin).netloc
                self.port = urlsplit(self.origin).port
                return self
        raise RuntimeError("the desk printed no login link")

    def http(self, host: str | None = None, cookie: str | None = None) -> httpx.Client:
        """A client of the desk without a browser: to 127.0.0.1, naming ``host`` (the desk's)."""
        headers = {"host": host or self.host}
        if cookie is not None:
            headers["cookie"] = cookie
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=headers)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return self.proc.returncode

    def __enter__(self) -> DeskProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Package scope, not session: Playwright's sync API keeps an event loop running
# in this thread until it stops, and the async tests collected after tests/ui
# need the thread free of one.
@contextmanager
def chromium_browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (headless); skips the test without it."""
    path = chromium()
    if path is None:
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=path,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    with chromium_browser() as b:
        yield b


def screenshot(page: Any, name: str) -> None:
    """docs/img/ui-NAME.png when BACKCHANNEL_UI_SCREENSHOTS=1 (64 colours: small files)."""
    if not SCREENSHOTS:
        return
    import io

    from PIL import Image

    page.set_viewport_size({"width": 1024, "height": 640})
    image = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    image.quantize(colors=64).save(IMG / f"ui-{name}.png", optimize=True)


AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"


def axe_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it stands."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # evaluated by the driver: the page's CSP stays on
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
    )
    return list(found)


def in_thread(fn: Callable[[], _T]) -> _T:
    """Run ``fn`` in a thread of its own: Playwright's sync API keeps an event loop running
    in this one, and the library's set-up helpers start their own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def logged_in(browser: Any, desk: DeskProcess) -> tuple[Any, Any]:
    """A fresh browser context (one officer's browser) signed in to ``desk``; (context, page)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(desk.link)
    assert page.url == desk.origin + "/inbox", page.url
    return context, page
