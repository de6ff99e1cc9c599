"""bench.machine_profile: the CPU of a process tree and PostgreSQL's waits, as recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.machine_profile import profiled

pytestmark = pytest.mark.skipif(
    not Path("/proc/stat").exists(), reason="the profile reads /proc (Linux only)"
)

BURN = (
    "import sys, time\n"
    "sys.stdin.readline()\n"
    "end = time.process_time() + 0.4\n"
    "while time.process_time() < end: pass\n"
    "print('burnt', flush=True)\n"
    "time.sleep(30)\n"
)


def test_the_cpu_of_the_servers_children_counts_as_the_relays() -> None:
    """A process under the 'server' (here: this test's process) that burns
    0.4 s of CPU inside the block is counted as the relay's, and as busy."""
    child = subprocess.Popen(
        [sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        with profiled(os.getpid()) as prof:
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline() == "burnt\n"
    finally:
        child.kill()
        child.wait()
    assert set(prof) >= {"seconds", "cpus", "busy_cores", "relay_cores", "postgres_cores"}
    assert prof["relay_cores"] * prof["seconds"] >= 0.35  # the child's 0.4 s, give or take ticks
    assert prof["busy_cores"] + 0.05 >= prof["relay_cores"]
    assert "session_time" not in prof  # no database named: no sampling


def test_postgres_sessions_are_sampled_running_or_waiting() -> None:
    from backchannel.store.pg_scratch import unreachable_reason

    url = "postgresql://127.0.0.1:5432/test"
    reason = unreachable_reason(url)
    if reason:
        pytest.skip(reason)
    import psycopg

    with psycopg.connect(url, autocommit=True) as busy, profiled(os.getpid(), url) as prof:
        busy.execute("SELECT pg_sleep(0.5)")
    assert prof["session_samples"] >= 10
    assert "wait_sampler_error" not in prof
    # The one active session slept: PostgreSQL reports pg_sleep as a timeout wait.
    assert prof["session_time"].get("Timeout:PgSleep", 0) > 0.5
