"""Start real relay processes (``python -m backchannel.relay serve``) for tests.

Only 127.0.0.1 is used. PostgreSQL tests get a fresh schema per run through
``options=-csearch_path=...`` in the URL, and drop it afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from backchannel.crypto.signing import VerifyKey
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.misbehaviour import open_signed_head

REPO = Path(__file__).resolve().parents[2]
PG_BASE = "postgresql://127.0.0.1:5432/test"
OPERATOR = "relay-test-operator"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line")


class RelayProcess:
    def __init__(self, db_url: str, extra_env: Mapping[str, str] | None = None) -> None:
        self.db_url = db_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
        )
        env.update(
            {
                "BACKCHANNEL_RELAY_OPERATOR_TOKEN": OPERATOR,
                "BACKCHANNEL_RELAY_IP_RATE": "0",
                "BACKCHANNEL_RELAY_TENANT_RATE": "0",
                "BACKCHANNEL_RELAY_LOG_LEVEL": "warning",
            }
        )
        env.update(extra_env or {})
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        #: When set, no file the relay writes may grow past this many bytes (a full disk).
        self.file_limit: int | None = None
        #: When set, the relay's stderr is appended to this file instead of a pipe
        #: (a long run under faults logs more than a pipe holds unread).
        self.log_path: Path | None = None

    def _limits(self) -> None:
        import resource

        if self.file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_limit, self.file_limit))

    def start(self, timeout: float = 20.0) -> RelayProcess:
        cmd = [
            sys.executable,
            "-m",
            "backchannel.relay",
            "serve",
            "--db",
            self.db_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if self.log_path is None else self.log_path.open("ab"),
            preexec_fn=self._limits if self.file_limit is not None else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                if self.log_path is not None:
                    err = self.log_path.read_text(errors="replace")
                raise RuntimeError(f"relay exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("relay did not become ready in time")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no graceful anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait for a graceful exit; return the exit status.

        uvicorn re-raises the signal once its graceful shutdown (and our lifespan
        shutdown) is over, so a clean stop exits with -SIGTERM; a hang ends in
        SIGKILL (-9).
        """
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stderr:
            self.proc.stderr.close()
        return self.proc.returncode

    def stopped_cleanly(self) -> bool:
        return self.stop() in (0, -signal.SIGTERM)

    def __enter__(self) -> RelayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def postgres_reachable() -> str | None:
    """None if PostgreSQL answers at 127.0.0.1:5432 database ``test``, else why not."""
    try:
        from backchannel.store import pg_scratch
    except ImportError as e:  # no PostgreSQL driver: skip, with the reason
        return f"PostgreSQL driver missing: {e}"
    return pg_scratch.unreachable_reason(PG_BASE)


def fresh_pg_schema() -> AbstractContextManager[str]:
    """A store URL pointing at a new, empty schema; the schema is dropped afterwards."""
    from backchannel.store import pg_scratch

    return pg_scratch.scratch_schema(PG_BASE, "relay_test_")


async def register(base_url: str, tenant_id: str, credential: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        r = await http.post(
            "/v1/tenants",
            json={"tenant_id": tenant_id, "credential": credential},
            headers={"Authorization": f"Bearer {OPERATOR}"},
        )
        assert r.status_code == 201, r.text


def worker_pids(supervisor: int) -> list[int]:
    """The pids of a ``relay serve --workers N`` supervisor's worker processes
    (its spawned Python children)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == supervisor and b"multiprocessing.spawn" in cmdline:
            out.append(int(entry.name))
    return out


def started_workers(supervisor: int, count: int, timeout: float = 20.0) -> list[int]:
    """The pids of the supervisor's workers once ``count`` of them run, sorted."""
    deadline = time.monotonic() + timeout
    while len(worker_pids(supervisor)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = sorted(worker_pids(supervisor))
    assert len(pids) == count, f"{len(pids)} of {count} workers started"
    return pids


def log_key(base_url: str) -> VerifyKey:
    """The relay's log key, as ``GET /v1/log/key`` gives it."""
    raw = httpx.get(base_url + "/v1/log/key").json()
    return VerifyKey(bytes.fromhex(raw["ed25519"]), bytes.fromhex(raw["mldsa65"]))


def check_heads(base_url: str, key: VerifyKey, heads: Iterable[TreeHead]) -> TreeHead:
    """The log's head now, signed by ``key``; every one of ``heads`` is proved
    consistent with it (``GET /v1/log/proof/consistency``)."""
    final = open_signed_head(
        bytes.fromhex(httpx.get(base_url + "/v1/log/head").json()["signed_head"]), key
    )
    for head in heads:
        if head.size < final.size:
            r = httpx.get(
                base_url + "/v1/log/proof/consistency",
                params={"first": head.size, "second": final.size},
            )
            head.check_consistent(final, [bytes.fromhex(h) for h in r.json()["proof"]])
        else:
            assert head == final or head.root == final.root
    return final


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]
