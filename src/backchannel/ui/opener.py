"""``backchannel ui --open``: the login link reaches the browser through a private file.

A browser started with the link itself would carry its token on its command
line, which every user of the machine can read (``/proc/PID/cmdline``). The
desk writes instead a small page that forwards to the link (a meta refresh and
a plain link, no script) into a fresh directory only this user can enter
(mode 0700), the page itself mode 0600, and hands the browser that file's
``file://`` address. The page goes once the link is spent, after
:data:`FILE_SECONDS`, or when the desk stops, whichever comes first.

The browser is started without the keystore's passphrase in its environment
(``BACKCHANNEL_PASSPHRASE``, if the desk was given it so): a browser outlives
the desk, and hands its environment on to every program it starts.
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import tempfile
import threading
import webbrowser
from collections.abc import Iterator
from pathlib import Path

#: The longest the forwarding page stays on disk (a browser starting cold is slow).
FILE_SECONDS = 60.0
#: What the browser must not inherit from the desk's environment.
SECRET_ENVIRONMENT = ("BACKCHANNEL_PASSPHRASE",)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0; url={link}">
<title>Opening the desk · Backchannel</title>
</head>
<body>
<p><a href="{link}">Open the desk</a></p>
</body>
</html>
"""


class LinkFile:
    """The forwarding page for ``link`` in a private directory, removed after ``seconds``."""

    def __init__(self, link: str, seconds: float = FILE_SECONDS) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="backchannel-desk-"))  # mode 0700
        self.path = self.dir / "login.html"
        _write_private(self.path, PAGE.format(link=html.escape(link, quote=True)))
        self._timer = threading.Timer(seconds, self.remove)
        self._timer.daemon = True
        self._timer.start()

    @property
    def url(self) -> str:
        """The page's ``file://`` address: it holds no secret."""
        return self.path.as_uri()

    def remove(self) -> None:
        """Remove the page and its directory (again: nothing happens)."""
        self._timer.cancel()
        shutil.rmtree(self.dir, ignore_errors=True)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file that only this user can read (mode 0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


@contextlib.contextmanager
def _without_secrets() -> Iterator[None]:
    """This process's environment without :data:`SECRET_ENVIRONMENT`, for programs it starts."""
    saved = {name: os.environ.pop(name) for name in SECRET_ENVIRONMENT if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def open_link(link: str) -> LinkFile:
    """Open ``link`` in the default browser without naming it on a command line."""
    page = LinkFile(link)
    with _without_secrets():  # the browser starts before this returns
        webbrowser.open(page.url)
    return page
