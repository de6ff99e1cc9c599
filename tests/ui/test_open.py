"""``backchannel ui --open`` without a browser: what the browser is handed, and when it goes."""

from __future__ import annotations

import stat
import time
import webbrowser
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest

from backchannel.ui.opener import LinkFile, open_link
from backchannel.ui.security import Gate, Refusal
from tests.ui.test_gate import ORIGIN


def _opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the desk hands to ``webbrowser.open`` (no browser starts)."""
    urls: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **kw: urls.append(url) or True)
    return urls


def test_the_browser_is_handed_a_private_file_not_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    urls = _opened(monkeypatch)
    gate = Gate(ORIGIN)
    link = ORIGIN + gate.login_path
    token = link.rsplit("/", 1)[1]
    forward = open_link(link)
    try:
        [url] = urls
        assert url.startswith("file://") and token not in url and "localhost" not in url, url
        path = Path(url2pathname(urlsplit(url).path))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        text = path.read_text()
        assert f'content="0; url={link}"' in text and f'href="{link}"' in text
        assert "<script" not in text
        # The link is spent (here by a wrong guess): the file goes at once.
        gate.on_spent = forward.remove
        with pytest.raises(Refusal):
            gate.login("guess")
        assert not path.exists() and not path.parent.exists()
    finally:
        forward.remove()


def test_the_file_goes_after_a_short_time() -> None:
    forward = LinkFile(ORIGIN + "/login/x", seconds=0.05)
    deadline = time.monotonic() + 5
    while forward.dir.exists():
        assert time.monotonic() < deadline, "the file outlived its time"
        time.sleep(0.02)
    forward.remove()  # (the desk stopping later removes nothing more, and does not fail)
