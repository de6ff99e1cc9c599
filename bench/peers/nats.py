"""NATS JetStream peer: acknowledged 4 KiB publishes into a file-backed stream.

Uses the server already listening on 127.0.0.1:4222 when it answers with
JetStream enabled; otherwise starts ``nats-server -js`` on a free loopback port
with a temporary store directory, and stops it afterwards. A fresh stream is
created for the run and deleted at the end. Each worker publishes and awaits the
server's acknowledgement before its next publish (closed loop), at concurrency
16 and 64, over one client connection as nats-py applications do.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.peers._common import (
    LOOPBACK,
    MESSAGE_BYTES,
    closed_loop,
    free_port,
    port_open,
    rss_mb,
    say,
    tail,
)

DEFAULT_URL = f"nats://{LOOPBACK}:4222"
CONCURRENCY = (16, 64)


async def _connect(url: str) -> Any:
    import nats  # the nats-py client, pinned in requirements.lock

    async def quiet(_: Exception) -> None:  # errors surface as exceptions below
        return None

    nc = await asyncio.wait_for(
        nats.connect(
            url,
            connect_timeout=2,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            allow_reconnect=False,
            error_cb=quiet,
        ),
        timeout=6,
    )
    js = nc.jetstream()
    await js.account_info()  # fails when the server has no JetStream
    return nc


class _OwnServer:
    """A nats-server we start ourselves when none is reachable."""

    def __init__(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise RuntimeError("nats-server binary not found")
        self.port = free_port()
        self.store = tempfile.mkdtemp(prefix="bcnats-")
        self.proc = subprocess.Popen(
            [binary, "-a", LOOPBACK, "-p", str(self.port), "-js", "-sd", self.store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read() if self.proc.stderr else b""
                self.stop()
                raise RuntimeError(f"nats-server did not start: {tail(err, 2)}")
            time.sleep(0.1)
        self.url = f"nats://{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.store, ignore_errors=True)


async def _bench(url: str, quick: bool) -> dict[str, Any]:
    from nats.js.api import StorageType, StreamConfig

    max_ops, max_seconds = (15000, 4.0) if quick else (60000, 12.0)
    nc = await _connect(url)
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:12]
    stream = f"BCBENCH_{tag}"
    subject = f"bcbench.{tag}"
    out: dict[str, Any] = {
        "server": url,
        "server_version": _version(nc),
        "storage": "file",
        "message_bytes": MESSAGE_BYTES,
    }
    try:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=[subject],
                storage=StorageType.FILE,
                max_bytes=1 << 30,
                num_replicas=1,
            )
        )
        payload_base = os.urandom(MESSAGE_BYTES - 8)

        async def publish(i: int) -> None:
            await js.publish(subject, i.to_bytes(8, "big") + payload_base, timeout=10)

        for c in CONCURRENCY:
            stats = await closed_loop(
                publish,
                concurrency=c,
                max_ops=max_ops,
                max_seconds=max_seconds,
                warmup_ops=200,
            )
            stats["publishes_per_s"] = stats.pop("ops_per_s")
            out[f"c{c}"] = stats
            say(
                f"nats: c{c}: {stats['publishes_per_s']:.0f} acked publishes/s, "
                f"p50 {stats['p50_ms']:.2f} ms, p99 {stats['p99_ms']:.2f} ms"
            )
        info = await js.stream_info(stream)
        out["stream_messages"] = info.state.messages
    finally:
        try:
            await js.delete_stream(stream)
        except Exception as exc:
            say(f"nats: could not delete stream {stream}: {exc}")
        await nc.close()
    return out


def run(quick: bool) -> dict[str, Any]:
    own: _OwnServer | None = None
    url = DEFAULT_URL
    try:
        host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
        if not port_open(int(port), host):
            raise ConnectionRefusedError(f"nothing listens on {host}:{port}")
        asyncio.run(_probe(url))
    except Exception as exc:
        say(f"nats: {url} not usable ({type(exc).__name__}: {exc}); starting nats-server -js")
        try:
            own = _OwnServer()
        except Exception as exc2:
            return {"skipped": f"no NATS JetStream at {url} and could not start one: {exc2}"}
        url = own.url
    try:
        result = asyncio.run(_bench(url, quick))
        result["started_by_harness"] = own is not None
        if own is not None:
            result["server_rss_mb"] = rss_mb(own.proc.pid)
        return result
    finally:
        if own is not None:
            own.stop()


def _version(nc: Any) -> str:
    v = nc.connected_server_version
    return f"{v.major}.{v.minor}.{v.patch}" if v else "?"


async def _probe(url: str) -> None:
    nc = await _connect(url)
    await nc.close()
