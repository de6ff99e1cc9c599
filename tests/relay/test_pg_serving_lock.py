"""PostgreSQL: no restore under a serving relay, no workers outliving their supervisor,
and no signed head served for leaves the log does not hold.

Each relay process holds a shared advisory lock on its schema while it serves;
``relay restore`` takes it exclusively. A supervisor killed outright takes its
workers with it. A head left ahead of the log is dropped when the store opens.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.ops.test_backup import TENANT, cells, deposit, log_state, relay_cli
from tests.relay.procs import RelayProcess, register, started_workers

pytestmark = pytest.mark.postgres


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_restore_under_a_serving_relay_is_refused(tmp_path: Path, pg_url: str) -> None:
    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    relay = RelayProcess(pg_url).start()
    try:
        asyncio.run(register(relay.base_url, TENANT, credential))
        asyncio.run(deposit(relay.base_url, cells(3)))
        made = relay_cli("backup", str(tmp_path / "backup"), "--db", pg_url)
        if made.returncode != 0 and "not installed" in made.stderr:
            pytest.skip(made.stderr.strip())
        assert made.returncode == 0, made.stderr
        asyncio.run(deposit(relay.base_url, cells(3)))
        before = log_state(relay.base_url)
        out = relay_cli("restore", str(tmp_path / "backup"), "--db", pg_url, "--force")
        assert out.returncode == 2 and "a relay is serving" in out.stderr, out.stderr
        assert log_state(relay.base_url) == before  # untouched, and it goes on
        asyncio.run(deposit(relay.base_url, cells(1)))
    finally:
        assert relay.stopped_cleanly()
    out = relay_cli("restore", str(tmp_path / "backup"), "--db", pg_url, "--force")
    assert out.returncode == 0, out.stderr


def test_a_signed_head_ahead_of_the_log_is_dropped_not_served(pg_url: str) -> None:
    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    relay = RelayProcess(pg_url).start()
    try:
        asyncio.run(register(relay.base_url, TENANT, credential))
        asyncio.run(deposit(relay.base_url, cells(2)))
        log_state(relay.base_url)  # a full signed head, kept with the next commit
        asyncio.run(deposit(relay.base_url, cells(2)))
        size = log_state(relay.base_url)[1]
    finally:
        assert relay.stopped_cleanly()
    # What a restore under a serving relay used to leave: a head of leaves that are gone.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE log_head SET signed_size = size + 1000 WHERE id = 1")
    relay = RelayProcess(pg_url).start()
    try:
        assert log_state(relay.base_url)[1] == size
    finally:
        assert relay.stopped_cleanly()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT signed_size <= size FROM log_head WHERE id = 1").fetchone()
    assert row is not None and row[0]


def test_workers_stop_when_their_supervisor_is_killed(pg_url: str) -> None:
    relay = RelayProcess(pg_url, {"BACKCHANNEL_RELAY_WORKERS": "2"}).start()
    try:
        workers = started_workers(relay.pid, 2)
        os.kill(relay.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their supervisor"
    finally:
        relay.kill()
