"""Run the relay under uvicorn: :func:`serve`, one process or a supervisor of ``workers``.

With ``workers > 1`` the process that runs :func:`serve` becomes a supervisor:
it starts that many worker processes (``spawn``, so each starts clean; the
settings, operator token included, travel over the multiprocessing pipe, never
in argv or the environment), each binding the port with ``SO_REUSEPORT`` so the
kernel spreads connections among them. Every worker opens the PostgreSQL store,
whose log is shared (one head row, appended under its lock), so answers carry
one log whatever process gave them. Worker 0 alone runs expiry; every worker
pushes to the witnesses, so each has a cosigned checkpoint to serve. A worker
that dies is started again (at most once a second); SIGTERM or SIGINT is
passed on to every worker, which finish their requests as a single process
would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

import uvicorn

from backchannel.errors import StoreUnavailable
from backchannel.relay import dblock
from backchannel.relay.app import create_app, store_for
from backchannel.relay.config import is_memory
from backchannel.relay.settings import RelaySettings
from backchannel.store.factory import sqlite_path


def _log_config(level: str) -> dict[str, Any]:
    # uvicorn's own access log prints the request path, which holds the slot
    # address: it stays off, and the relay's access logger names routes only.
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {
                "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
                "datefmt": "%Y-%m-%dT%H:%M",
            },
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "backchannel": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }


def uvicorn_config(settings: RelaySettings, *, background: bool = True) -> uvicorn.Config:
    """The server configuration for these settings (uvloop and httptools when present)."""
    return uvicorn.Config(
        create_app(settings, background=background),
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_config=_log_config(settings.log_level),
        # Behind a proxy, the operator terminates TLS there. uvicorn's proxy
        # headers stay off: they would rewrite every request's client and
        # scheme, trusting $FORWARDED_ALLOW_IPS (loopback when unset; a
        # malformed entry taken silently), and only under uvicorn, not in the
        # app create_app builds. The relay's one use for a client address, the
        # per-address limits, reads X-Forwarded-For itself, from the proxies
        # the validated ``trusted_proxies`` setting names
        # (ratelimit.client_keyer), so a client cannot pick its own key.
        proxy_headers=False,
        server_header=False,
        # Every answer carries its bytes and no more: the round's exchange is
        # the bulk of a device's traffic, and the clock is in the signed heads.
        date_header=False,
        limit_concurrency=settings.max_concurrency,
        timeout_graceful_shutdown=max(1, int(settings.graceful_shutdown_seconds)),
    )


def _server(settings: RelaySettings, *, background: bool = True) -> uvicorn.Server:
    config = uvicorn_config(settings, background=background)  # configures plain logging
    if settings.log_format == "json":
        from backchannel.relay.logformat import use_json_logs

        use_json_logs(settings.log_level)
    return uvicorn.Server(config)


def serve(settings: RelaySettings) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight requests and close the store.

    An SQLite database is served by one relay at a time (:mod:`.dblock`); a
    store that cannot be opened is said in one line before anything listens.
    """
    path = sqlite_path(settings.store_url)
    with contextlib.ExitStack() as held:
        if path is not None:
            busy = f"another relay is serving {path}; one relay at a time serves a database"
            held.enter_context(dblock.holding(path, busy))
        elif dblock.is_postgres(settings.store_url):
            busy = "a restore of this PostgreSQL database is under way; serve once it is done"
            held.enter_context(dblock.holding_pg(settings.store_url, busy, shared=True))
        check_store(settings)
        if settings.workers > 1:
            _supervise(settings)
            return
        logging.getLogger("backchannel.relay").debug(
            "starting on %s:%d", settings.host, settings.port
        )
        _server(settings).run()


def check_store(settings: RelaySettings) -> None:
    """Open the store and close it again; :class:`StoreUnavailable` naming it if it cannot.

    Run before serving: a damaged or unreachable database found by the
    server's start-up would end in a traceback in the log instead.
    """
    if is_memory(settings.store_url):
        return  # nothing to find wrong
    path = sqlite_path(settings.store_url)
    where = f"the relay database {path}" if path is not None else "the PostgreSQL database"

    async def probe() -> None:
        store = store_for(settings)
        await store.open()
        await store.close()

    try:
        asyncio.run(probe())
    except StoreUnavailable as e:  # the URL is never echoed: it may hold a password
        raise StoreUnavailable(f"cannot open {where}: {e}") from None


def _reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _worker(settings: RelaySettings, index: int, supervisor: int) -> None:
    """One worker: its own socket on the shared port, its own store connection pool."""
    _die_with(supervisor)
    sock = _reuseport_socket(settings.host, settings.port)
    _server(settings, background=index == 0).run(sockets=[sock])


def _die_with(supervisor: int) -> None:
    """Have the kernel stop this worker (SIGTERM) when its supervisor dies, however
    it dies: left running, workers nobody supervises would serve beside the next
    relay's, and the supervisor's lock on the database would be gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor:  # it died before the above took hold
        os._exit(0)


def _supervise(settings: RelaySettings) -> None:
    log = logging.getLogger("backchannel.relay")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ctx = multiprocessing.get_context("spawn")
    stopping = False
    # Shared metrics: every worker writes its values under this directory
    # (inherited through the environment), and any worker's /metrics reads all.
    metrics_dir = tempfile.mkdtemp(prefix="backchannel-relay-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    def start(index: int) -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(
            target=_worker, args=(settings, index, os.getpid()), name=f"relay-worker-{index}"
        )
        proc.start()
        return proc

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    procs = {i: start(i) for i in range(settings.workers)}
    log.info(
        "relay supervisor: %d workers on %s:%d", settings.workers, settings.host, settings.port
    )
    started = {i: time.monotonic() for i in procs}
    try:
        while not stopping:
            time.sleep(0.2)
            for i, proc in list(procs.items()):
                if proc.is_alive() or stopping:
                    continue
                log.error(
                    "relay worker %d exited with status %s; starting it again", i, proc.exitcode
                )
                if proc.pid is not None:
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(proc.pid, metrics_dir)  # type: ignore[no-untyped-call]
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started[i])))
                procs[i] = start(i)
                started[i] = time.monotonic()
    finally:
        for proc in procs.values():
            if proc.is_alive() and proc.pid is not None:
                proc.terminate()  # SIGTERM: the worker's graceful shutdown
        deadline = time.monotonic() + settings.graceful_shutdown_seconds + 5
        for proc in procs.values():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("relay supervisor stopped")
