"""Run the relay under uvicorn: :func:`serve`."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings


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


def uvicorn_config(settings: RelaySettings) -> uvicorn.Config:
    """The server configuration for these settings (uvloop and httptools when present)."""
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_config=_log_config(settings.log_level),
        # Behind a proxy, the operator terminates TLS there; the relay does not
        # trust forwarded headers by default, so a client cannot pick its own
        # rate-limit key.
        proxy_headers=False,
        server_header=False,
        # Every answer carries its bytes and no more: the round's exchange is
        # the bulk of a device's traffic, and the clock is in the signed heads.
        date_header=False,
        limit_concurrency=settings.max_concurrency,
        timeout_graceful_shutdown=max(1, int(settings.graceful_shutdown_seconds)),
    )


def serve(settings: RelaySettings) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight requests and close the store."""
    server = uvicorn.Server(uvicorn_config(settings))
    logging.getLogger("backchannel.relay").debug("starting on %s:%d", settings.host, settings.port)
    server.run()
