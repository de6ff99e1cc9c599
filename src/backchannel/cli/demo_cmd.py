"""``backchannel demo``: the whole flow against a real relay process on 127.0.0.1.

A relay is started as a subprocess on a free port with its SQLite database in
the demo directory, :func:`backchannel.client.demo.run` drives four officers
through it, and the relay is stopped (SIGTERM, graceful) whatever happens.
Without ``--keep`` the directory is temporary and removed at the end.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import RenderableType

from backchannel.cli.context import run, settings, warn_fast_kdf
from backchannel.cli.output import Output, Text
from backchannel.client import demo as flow
from backchannel.errors import ConfigError, RelayUnavailable

_START_TIMEOUT = 30.0
_MARKS = {"ok": ("ok     ", "green"), "refused": ("refused", "yellow")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
    import httpx  # here, not with every command

    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            last = log.read().decode(errors="replace").strip().splitlines()[-1:]
            why = f": {last[0]}" if last else ""
            raise RelayUnavailable(f"the demo relay exited at start-up{why}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RelayUnavailable("the demo relay did not start in time; retry")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def local_relay(data_dir: Path) -> Iterator[str]:
    """A relay subprocess serving ``data_dir/relay.db`` on 127.0.0.1; yields its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "backchannel.relay", "serve",
        "--db", f"sqlite:///{data_dir.resolve() / 'relay.db'}",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--data-dir", str(data_dir),
        "--open-registration",
    ]  # fmt: skip
    # The relay holds no officer secret: it does not inherit the officer's
    # passphrase or home from this environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    env["BACKCHANNEL_RELAY_LOG_LEVEL"] = "warning"
    with tempfile.TemporaryFile() as log:  # outside data_dir, gone at the end
        # S603: the command is this interpreter and fixed arguments, no user input.
        proc = subprocess.Popen(  # noqa: S603
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            _wait_healthy(proc, url, log)
            yield url
        finally:
            _stop(proc)


def _workdir(stack: ExitStack, keep: Path | None) -> Path:
    if keep is None:
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="backchannel-demo-")))
    keep = keep.expanduser()
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise ConfigError(f"{keep} is not an empty directory; choose a new one for --keep")
    keep.mkdir(parents=True, exist_ok=True, mode=0o700)
    return keep


def demo(
    ctx: typer.Context,
    message: Annotated[
        str, typer.Option("--message", help="The text New York sends to Washington.")
    ] = "Proposal: working-level talks in Geneva next month.",
    keep: Annotated[
        Path | None,
        typer.Option("--keep", help="Keep the relay database and the homes in this new directory."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Two missions of two officers each, through a local relay: the two-person rule at work."""
    s = settings(ctx)
    warn_fast_kdf(s)
    out = Output(as_json or s.json)
    passphrase = secrets.token_urlsafe(18)
    with ExitStack() as stack:
        workdir = _workdir(stack, keep)
        url = stack.enter_context(local_relay(workdir))
        steps = run(flow.run(workdir, url, message, passphrase=passphrase, params=s.kdf))
    doc: dict[str, Any] = {"steps": [st.as_dict() for st in steps], "relay": url}
    lines: list[RenderableType] = [
        Text.assemble(_MARKS[st.outcome], " ", (st.name, "bold"), f": {st.detail}") for st in steps
    ]
    if keep is not None:
        where = workdir.resolve()
        homes = sorted(p.name for p in where.iterdir() if p.is_dir())
        doc["kept"] = {"dir": str(where), "homes": homes, "passphrase": passphrase}
        port = url.rsplit(":", 1)[1]
        lines += [
            Text(""),
            Text(f"kept in {where}: relay.db and the homes {', '.join(homes)}"),
            Text(f"their passphrase: {passphrase}"),
            Text("explore, e.g.:", style="dim"),
            Text(f"  BACKCHANNEL_PASSPHRASE=... backchannel --home {where / homes[-1]} inbox"),
            Text(
                f"  backchannel relay serve --db sqlite:///{where / 'relay.db'} --port {port} "
                "--open-registration   # the relay again, for sync"
            ),
        ]
    out.done(doc, *lines)
