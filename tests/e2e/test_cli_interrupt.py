"""Ctrl-C at a hidden passphrase prompt: exit 130 (docs/cli.md), as anywhere else.

The command runs on a pseudo-terminal of its own, so the prompt is the real
one (``getpass`` on the terminal) and Ctrl-C is the terminal's interrupt.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

from tests.e2e.conftest import Officer, base_env
from tests.relay.procs import REPO


def _read_until(fd: int, marker: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_ctrl_c_at_the_passphrase_prompt_exits_130(tmp_path: Path) -> None:
    home = tmp_path / "ri"
    Officer(home, "Ri").ok("officer", "create", "--name", "Ri")
    env = base_env()
    del env["BACKCHANNEL_PASSPHRASE"]  # so that the command asks
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own, on the new terminal
        os.chdir(REPO)
        os.execve(
            sys.executable,
            [sys.executable, "-m", "backchannel.cli.main", "--home", str(home), "officer", "show"],
            env,
        )
    try:
        _read_until(fd, b"passphrase")
        os.write(fd, b"\x03")  # the terminal's interrupt character
        rest = _read_until(fd, b"\x00", timeout=30)  # until the child ends
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)  # a child the test gave up on
            os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130, (status, rest)
    assert b"Aborted" not in rest and b"Traceback" not in rest
