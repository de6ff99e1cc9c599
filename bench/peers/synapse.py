"""Matrix Synapse peer: ~4 KiB room messages into one room, on SQLite.

Installs a pinned ``matrix-synapse`` into its own venv under ``bench/.peers/``
(kept between runs as a cache; ``--clean-peers`` removes it), generates a
config, and overrides it so that the server listens on 127.0.0.1 only, serves
the client API alone, federates with nobody, logs at WARNING, and does not
rate-limit us (stock limits throttle a sender to a few messages per second).
Two users are registered with ``register_new_matrix_user`` and the shared
secret; one creates a room, the other joins. We time PUT
``/rooms/{room}/send/m.room.message/{txn}`` at concurrency 16 and 64, then the
second user's ``/sync`` catch-up on every event sent. The server and its data
directory are removed afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.peers._common import (
    LOOPBACK,
    MESSAGE_BYTES,
    PEERS_DIR,
    closed_loop,
    free_port,
    python_for_venvs,
    rss_mb,
    say,
    tail,
)

#: Verified to install and run on Python 3.11 with the pinned client below.
SYNAPSE_VERSION = "1.163.2"
VENV = PEERS_DIR / "synapse-venv"
CONCURRENCY = (16, 64)
# Not synapse.__version__: that one appends the git branch of the current directory.
_VERSION_PROBE = "import importlib.metadata as m, synapse; print(m.version('matrix-synapse'))"
_UNLIMITED = {"per_second": 100000, "burst_count": 100000}


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _installed_version() -> str | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", _VERSION_PROBE],
        capture_output=True,
        timeout=60,
        env=_clean_env(),
        check=False,
    )
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def _install() -> float:
    """Create the venv and pip-install the pinned Synapse; returns seconds spent."""
    if _installed_version() == SYNAPSE_VERSION:
        return 0.0
    t0 = time.perf_counter()
    shutil.rmtree(VENV, ignore_errors=True)
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    say(f"synapse: installing matrix-synapse=={SYNAPSE_VERSION} into {VENV}")
    steps = [
        [python_for_venvs(), "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "pip"), "install", "--quiet", f"matrix-synapse=={SYNAPSE_VERSION}"],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, timeout=600, env=_clean_env(), check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed: {tail(proc.stderr, 2)}")
    if _installed_version() != SYNAPSE_VERSION:
        raise RuntimeError("matrix-synapse did not import after installation")
    return time.perf_counter() - t0


def _configure(run_dir: Path, port: int) -> list[Path]:
    """Generated config plus our override; returns the ``-c`` files in order."""
    base = run_dir / "homeserver.yaml"
    proc = subprocess.run(
        [
            str(VENV / "bin" / "python"), "-m", "synapse.app.homeserver",
            "--generate-config", "--server-name", "localhost", "--report-stats=no",
            "-c", str(base),
        ],
        capture_output=True, timeout=120, cwd=run_dir, env=_clean_env(), check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"--generate-config failed: {tail(proc.stderr, 2)}")
    log_config = run_dir / "localhost.log.config"
    if log_config.exists():  # INFO logging of every request would slow the peer down
        text = log_config.read_text().replace("root:\n    level: INFO", "root:\n    level: WARNING")
        log_config.write_text(text)
    override = {
        "listeners": [
            {
                "port": port,
                "bind_addresses": [LOOPBACK],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "enable_metrics": False,
        "rc_message": _UNLIMITED,
        "rc_login": {
            "address": _UNLIMITED,
            "account": _UNLIMITED,
            "failed_attempts": _UNLIMITED,
        },
        "rc_registration": _UNLIMITED,
        "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
        "rc_room_creation": _UNLIMITED,
    }
    override_path = run_dir / "bench-override.yaml"
    override_path.write_text(json.dumps(override, indent=2))  # JSON is valid YAML
    return [base, override_path]


class _Server:
    def __init__(self, run_dir: Path, configs: list[Path], port: int) -> None:
        self.port = port
        self.base_url = f"http://{LOOPBACK}:{port}"
        args = [str(VENV / "bin" / "python"), "-m", "synapse.app.homeserver"]
        for c in configs:
            args += ["-c", str(c)]
        self.log = (run_dir / "stdout.log").open("wb")
        self.proc = subprocess.Popen(
            args, cwd=run_dir, stdout=self.log, stderr=subprocess.STDOUT, env=_clean_env()
        )
        self.run_dir = run_dir

    def wait_ready(self, timeout: float) -> float:
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = (self.run_dir / "stdout.log").read_text(errors="replace")
                raise RuntimeError(f"synapse exited with {self.proc.returncode}: {tail(out, 3)}")
            try:
                r = httpx.get(f"{self.base_url}/health", timeout=2)
                if r.status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"synapse did not answer /health within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def _register(config: Path, server: _Server, user: str, password: str) -> None:
    proc = subprocess.run(
        [
            str(VENV / "bin" / "register_new_matrix_user"),
            "-u", user, "-p", password, "--no-admin", "-c", str(config), server.base_url,
        ],
        capture_output=True, timeout=120, env=_clean_env(), check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"register_new_matrix_user {user} failed: {tail(proc.stderr, 2)}")


async def _login(client: httpx.AsyncClient, user: str, password: str) -> str:
    r = await client.post(
        "/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        },
    )
    r.raise_for_status()
    token: str = r.json()["access_token"]
    return token


async def _scenario(server: _Server, config: Path, quick: bool) -> dict[str, Any]:
    max_ops, max_seconds = (300, 12.0) if quick else (1500, 40.0)
    password_a, password_b = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    for user, pw in (("alice", password_a), ("bob", password_b)):
        await asyncio.to_thread(_register, config, server, user, pw)
    out: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=max(CONCURRENCY), max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as client:
        alice = {"Authorization": f"Bearer {await _login(client, 'alice', password_a)}"}
        bob = {"Authorization": f"Bearer {await _login(client, 'bob', password_b)}"}
        r = await client.post(
            "/_matrix/client/v3/createRoom",
            headers=alice,
            json={"preset": "private_chat", "invite": ["@bob:localhost"], "name": "bench"},
        )
        r.raise_for_status()
        room = r.json()["room_id"]
        r = await client.post(f"/_matrix/client/v3/join/{room}", headers=bob, json={})
        r.raise_for_status()
        sync_filter = json.dumps(
            {
                "room": {
                    "rooms": [room],
                    "timeline": {"limit": 2 * max_ops + 100, "types": ["m.room.message"]},
                    "state": {"lazy_load_members": True},
                },
                "presence": {"not_types": ["*"]},
                "account_data": {"not_types": ["*"]},
            }
        )
        r = await client.get(
            "/_matrix/client/v3/sync",
            headers=bob,
            params={"timeout": "0", "filter": sync_filter},
        )
        r.raise_for_status()
        since = r.json()["next_batch"]

        # ~4 KiB of content per event: msgtype plus a body filling the rest.
        body = secrets.token_urlsafe(MESSAGE_BYTES)[: MESSAGE_BYTES - 40]
        txn_base = uuid.uuid4().hex[:8]
        txn_ids = itertools.count()  # unique across levels: a reused txn id is deduplicated
        sent = 0

        async def send(_: int) -> None:
            nonlocal sent
            i = next(txn_ids)
            resp = await client.put(
                f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn_base}-{i}",
                headers=alice,
                json={"msgtype": "m.text", "body": f"{i:08d}{body}"},
            )
            if resp.status_code != 200 or "event_id" not in resp.json():
                raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:120]}")
            sent += 1

        content_bytes = len(json.dumps({"msgtype": "m.text", "body": f"{0:08d}{body}"}))
        out["event_content_bytes"] = content_bytes
        for c in CONCURRENCY:
            stats = await closed_loop(
                send, concurrency=c, max_ops=max_ops, max_seconds=max_seconds, warmup_ops=max(32, c)
            )
            stats["sends_per_s"] = stats.pop("ops_per_s")
            out[f"c{c}"] = stats
            say(
                f"synapse: c{c}: {stats['sends_per_s']:.1f} sends/s, "
                f"p50 {stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms"
                + (f", {stats['errors']} errors" if stats["errors"] else "")
            )
        out["server_rss_mb"] = rss_mb(server.proc.pid)
        out["sync"] = await _catch_up(client, bob, room, since, sync_filter, sent)
        say(
            f"synapse: /sync catch-up of {out['sync']['events']} events in "
            f"{out['sync']['catchup_s']:.2f} s"
        )
    return out


async def _catch_up(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    room: str,
    since: str,
    sync_filter: str,
    expected: int,
) -> dict[str, Any]:
    """The second user's time to receive every event sent: /sync, then /messages back."""
    t0 = time.perf_counter()
    seen = 0
    requests = 0
    deadline = time.monotonic() + 60
    r = await client.get(
        "/_matrix/client/v3/sync",
        headers=headers,
        params={"since": since, "timeout": "0", "filter": sync_filter},
    )
    r.raise_for_status()
    requests += 1
    joined = r.json().get("rooms", {}).get("join", {}).get(room, {})
    timeline = joined.get("timeline", {})
    seen += sum(1 for e in timeline.get("events", []) if e.get("type") == "m.room.message")
    token = timeline.get("prev_batch")
    # A "limited" timeline leaves older events to be paginated backwards.
    while seen < expected and timeline.get("limited") and token and time.monotonic() < deadline:
        r = await client.get(
            f"/_matrix/client/v3/rooms/{room}/messages",
            headers=headers,
            params={
                "dir": "b",
                "from": token,
                "limit": "1000",
                "filter": json.dumps({"types": ["m.room.message"]}),
            },
        )
        r.raise_for_status()
        requests += 1
        page = r.json()
        chunk = page.get("chunk", [])
        if not chunk:
            break
        seen += len(chunk)
        token = page.get("end")
        if not token:
            break
    elapsed = time.perf_counter() - t0
    return {
        "events": seen,
        "expected": expected,
        "requests": requests,
        "catchup_s": round(elapsed, 3),
        "events_per_s": round(seen / elapsed, 1) if elapsed > 0 else None,
    }


def run(quick: bool) -> dict[str, Any]:
    try:
        install_s = _install()
    except Exception as exc:
        say(f"synapse: install failed: {exc}")
        return {"skipped": f"matrix-synapse {SYNAPSE_VERSION} could not be installed: {exc}"}
    run_dir = PEERS_DIR / f"synapse-run-{os.getpid()}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    server: _Server | None = None
    try:
        port = free_port()
        configs = _configure(run_dir, port)
        server = _Server(run_dir, configs, port)
        startup_s = server.wait_ready(timeout=120)
        result = asyncio.run(_scenario(server, configs[0], quick))
        result.update(
            {
                "version": SYNAPSE_VERSION,
                "database": "sqlite3",
                "install_s": round(install_s, 1),
                "startup_s": round(startup_s, 2),
            }
        )
        return result
    except Exception as exc:
        say(f"synapse: failed: {type(exc).__name__}: {exc}")
        return {"skipped": f"synapse did not run: {type(exc).__name__}: {exc}"}
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
