"""Structured logs: one JSON object per line (``log_format = "json"``).

Each line holds ``time`` (UTC, to the second), ``level``, ``logger`` and
``message``, plus ``exception`` when one was logged. The relay logs no path,
slot, tenant id or cell (see ``docs/relay.md``); this formatter adds nothing
that the plain one does not show.
"""

from __future__ import annotations

import json
import logging
import logging.config
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def json_log_config(level: str) -> dict[str, object]:
    """A ``logging.config`` dictionary: the relay's loggers, as JSON lines on stderr.

    The same loggers as the plain configuration in ``server.py``: uvicorn's
    access log (which prints paths, and so slots) stays off.
    """
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "backchannel": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }


def use_json_logs(level: str) -> None:
    logging.config.dictConfig(json_log_config(level))
