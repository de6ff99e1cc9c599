"""Secrets stay off the command line, and cheap keystores stay in tests and demos.

``compose`` takes its text from a file, stdin or $EDITOR (``--text`` still
works, with a warning: a command line is visible to every user of the
machine); ``peer join`` asks for its code; ``BACKCHANNEL_KDF=fast`` is refused
outside a test suite (``BACKCHANNEL_TEST=1``) and ``demo``, and warns whenever
it makes a keystore.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from backchannel.cli.context import DEFAULT_PARAMS, FAST_KDF, kdf_params
from backchannel.cli.messages import message_text
from backchannel.client.home import Home
from backchannel.client.service import Client
from backchannel.errors import ConfigError
from tests.e2e.conftest import (
    PASSPHRASE,
    REPO,
    Missions,
    assert_one_line_error,
    backchannel,
    base_env,
    set_up_missions,
)

DEAD_RELAY = "http://127.0.0.1:9"
ARGV_WARNING = "on the command line can be seen by other users of this machine"


@pytest.fixture(scope="module")
def missions(tmp_path_factory: pytest.TempPathFactory) -> Missions:
    return set_up_missions(tmp_path_factory.mktemp("homes"), DEAD_RELAY, DEAD_RELAY, register=False)


def _draft_text(home: Path) -> str:
    c = Client(Home.unlock(home, PASSPHRASE))
    try:
        [draft] = c.drafts()
        return draft.outgoing.payload.text
    finally:
        c.home.close()


def test_compose_reads_the_text_from_stdin_without_a_warning(missions: Missions) -> None:
    text = "Talks resume on Monday.\nSecond line."
    p = subprocess.run(
        [sys.executable, "-m", "backchannel.cli.main", "--home", str(missions.ri.home),
         "compose", "Washington"],
        env=base_env(), cwd=REPO, input=text, capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert _draft_text(missions.ri.home) == text


def test_compose_with_text_in_argv_warns(missions: Missions) -> None:
    r = missions.smith.run("compose", "New York", "--text", "In the open.")
    assert r.code == 0, r.err
    [line] = r.err_lines
    assert line.startswith("warning: the message text") and ARGV_WARNING in line
    assert "--file" in line
    assert _draft_text(missions.smith.home) == "In the open."


class _Stdin(io.StringIO):
    def __init__(self, text: str, tty: bool) -> None:
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_message_text_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "text.txt"
    f.write_text("from a file")
    monkeypatch.setattr(sys, "stdin", _Stdin("from stdin", tty=False))
    assert message_text(None, f) == "from a file"
    assert message_text("-", None) == "from stdin"
    monkeypatch.setattr(sys, "stdin", _Stdin("piped", tty=False))
    assert message_text(None, None) == "piped"
    assert capsys.readouterr().err == ""

    # In a terminal, without --text or --file: $EDITOR, on a private temporary file.
    monkeypatch.setattr(sys, "stdin", _Stdin("", tty=True))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", 'sh -c \'printf "from the editor" > "$0"\'')
    assert message_text(None, None) == "from the editor"
    monkeypatch.delenv("EDITOR")
    with pytest.raises(ConfigError, match="set \\$EDITOR"):
        message_text(None, None)

    assert message_text("in argv", None) == "in argv"
    assert ARGV_WARNING in capsys.readouterr().err
    for text, file in (("x", f), ("   ", None)):
        with pytest.raises(ConfigError):
            message_text(text, file)


def test_peer_join_warns_about_a_code_in_argv(missions: Missions) -> None:
    r = missions.jones.run("peer", "join", "1111-2222-3333", "--timeout", "1")
    assert r.code != 0
    assert r.err_lines[0].startswith("warning: the pairing code") and ARGV_WARNING in r.err


def test_fast_kdf_outside_a_test_suite_is_refused(tmp_path: Path) -> None:
    env = base_env()
    del env["BACKCHANNEL_TEST"]
    home = tmp_path / "officer"
    for args in (("officer", "create", "--name", "Officer X"), ("inbox",)):
        r = backchannel("--home", home, *args, env=env)
        assert r.code == 2
        assert_one_line_error(r, "BACKCHANNEL_KDF=fast", "unset it")
    assert not home.exists()
    # In a test suite it is taken, and says what it costs each time it makes a keystore.
    r = backchannel("--home", home, "officer", "create", "--name", "Officer X")
    assert r.code == 0, r.err
    assert r.err_lines == [
        "warning: BACKCHANNEL_KDF=fast: this keystore's passphrase is cheap to guess "
        "(for tests and demos only)"
    ]
    assert backchannel("--home", home, "officer", "show").err == ""  # no keystore made: silent


def test_which_commands_take_the_fast_kdf() -> None:
    fast = {"BACKCHANNEL_KDF": "fast"}
    assert kdf_params(fast, "demo") == FAST_KDF  # demo homes
    assert kdf_params({**fast, "BACKCHANNEL_TEST": "1"}, "officer") == FAST_KDF
    with pytest.raises(ConfigError):
        kdf_params(fast, "officer")
    with pytest.raises(ConfigError):
        kdf_params({**fast, "BACKCHANNEL_TEST": "yes"}, "officer")
    assert kdf_params({}, "officer") == DEFAULT_PARAMS
