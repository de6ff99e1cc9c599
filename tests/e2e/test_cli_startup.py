"""What every ``backchannel`` command loads before it does anything.

A command that only reads or queues (``inbox``, ``compose``, ``approve``)
starts faster when the libraries of the network, the relay and the web desk
are loaded only by the commands that use them: ``sync``/``run`` and pairing
(httpx), ``relay serve`` (uvicorn, starlette, psycopg), ``ui`` (starlette,
jinja2).
"""

from __future__ import annotations

import json
import subprocess
import sys

LOADED_LATER = ("httpx", "uvicorn", "starlette", "psycopg", "jinja2", "prometheus_client")


def test_the_cli_loads_no_network_relay_or_web_library_at_start() -> None:
    probe = (
        "import json, sys\n"
        "import backchannel.cli.main\n"
        f"print(json.dumps([m for m in {LOADED_LATER!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_a_command_that_makes_requests_still_loads_httpx_when_it_needs_it() -> None:
    probe = (
        "import asyncio, sys\n"
        "from backchannel.client.relay_client import RelayClient\n"
        "assert 'httpx' not in sys.modules\n"
        "client = RelayClient('http://127.0.0.1:9')\n"
        "assert 'httpx' in sys.modules\n"
        "asyncio.run(client.aclose())\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)
