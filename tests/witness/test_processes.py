"""A witness process and a relay process: set up as the docs say, cosigned over HTTP."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from backchannel.protocol.note import Verifier, open_checkpoint, verify_cosignature
from tests.relay.procs import (
    OPERATOR,
    REPO,
    RelayProcess,
    free_port,
    fresh_pg_schema,
    postgres_reachable,
)


def _witness(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "backchannel.witness", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_relay_and_witness_processes(tmp_path: Path) -> None:
    _relay_and_witness(tmp_path, f"sqlite:///{tmp_path / 'relay.db'}", workers=1)


def test_every_worker_serves_a_cosigned_checkpoint(tmp_path: Path) -> None:
    reason = postgres_reachable()
    if reason:
        pytest.skip(reason)
    with fresh_pg_schema() as url:
        _relay_and_witness(tmp_path, url, workers=2)


def _relay_and_witness(tmp_path: Path, db_url: str, workers: int) -> None:
    wdir = tmp_path / "witness"
    init = _witness("init", "--dir", str(wdir), "--name", "witness.test/w1")
    assert init.returncode == 0, init.stderr
    cosigners = [Verifier.from_vkey(v) for v in init.stdout.split()]
    assert sorted(c.sig_type for c in cosigners) == [0x04, 0x06]
    again = _witness("init", "--dir", str(wdir), "--name", "witness.test/w1")
    assert again.returncode == 2 and "already holds a witness" in again.stderr

    port = free_port()
    spec = f"http://127.0.0.1:{port} " + " ".join(c.vkey() for c in cosigners)
    env = {
        "BACKCHANNEL_RELAY_WITNESSES": spec,
        "BACKCHANNEL_RELAY_WITNESS_INTERVAL_SECONDS": "0.3",
        "BACKCHANNEL_RELAY_WORKERS": str(workers),
    }
    with RelayProcess(db_url, env) as relay:
        vkey = httpx.get(relay.base_url + "/v1/log/key").json()["checkpoint_vkey"]
        follow = _witness("follow", "--dir", str(wdir), vkey)
        assert follow.returncode == 0, follow.stderr
        command = ["serve", "--dir", str(wdir), "--port", str(port)]
        serve = subprocess.Popen(
            [sys.executable, "-m", "backchannel.witness", *command],
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            credential = secrets.token_urlsafe(32)
            r = httpx.post(
                relay.base_url + "/v1/tenants",
                json={"tenant_id": "mission-w", "credential": credential},
                headers={"Authorization": f"Bearer {OPERATOR}"},
            )
            assert r.status_code == 201, r.text
            for _ in range(3):
                slot = secrets.token_hex(32)
                put = httpx.put(
                    f"{relay.base_url}/v1/tenants/mission-w/slots/{slot}",
                    content=secrets.token_bytes(4096),
                    headers={"Content-Type": "application/octet-stream"},
                )
                assert put.status_code == 201, put.text
            size = httpx.get(relay.base_url + "/v1/log/head").json()["size"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                answer = httpx.get(relay.base_url + "/v1/log/checkpoint")
                if answer.status_code == 200:
                    cp, note = open_checkpoint(answer.content, Verifier.from_vkey(vkey))
                    if cp.size >= size:
                        break
                time.sleep(0.2)
            else:
                raise AssertionError("no cosigned checkpoint within 30 s")
            for cosigner in cosigners:
                verify_cosignature(note, cosigner)
            # Whichever worker a new connection reaches has a cosigned checkpoint.
            for _ in range(4 * workers):
                answer = httpx.get(relay.base_url + "/v1/log/checkpoint")
                assert answer.status_code == 200, answer.text
                _, again = open_checkpoint(answer.content, Verifier.from_vkey(vkey))
                for cosigner in cosigners:
                    verify_cosignature(again, cosigner)
        finally:
            serve.terminate()
            serve.wait(10)
            if serve.stderr:
                serve.stderr.close()
    show = _witness("show", "--dir", str(wdir))
    assert show.returncode == 0
    assert f"log {cp.origin} size {cp.size} root {cp.root.hex()}" in show.stdout.splitlines()
