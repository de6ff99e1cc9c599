"""``relay backup`` while the relay serves, ``relay restore``, then serve the restored copy.

SQLite and PostgreSQL (skipped with the reason when PostgreSQL is unreachable).
The restored relay holds exactly the cells deposited before the backup, under
the same signing key and log head; cells deposited after it are gone (a
rewind, which clients detect: see test_rewind.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.relay.procs import REPO, RelayProcess, fresh_pg_schema, postgres_reachable, register

pytestmark = pytest.mark.slow

TENANT = "mission-backup"


def relay_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKCHANNEL_RELAY_", "PG"))}
    env["PYTHONPATH"] = str(REPO / "src")
    return subprocess.run(
        [sys.executable, "-m", "backchannel.relay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def deposit(base_url: str, cells: dict[bytes, bytes]) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for slot, cell in cells.items():
            r = await http.put(
                f"/v1/tenants/{TENANT}/slots/{slot.hex()}",
                content=cell,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert r.status_code == 201, r.text


async def read(base_url: str, credential: str, slots: list[bytes]) -> dict[bytes, bytes]:
    auth = {"Authorization": f"Bearer {credential}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        r = await http.post(
            f"/v1/tenants/{TENANT}/fetch", json={"slots": [s.hex() for s in slots]}, headers=auth
        )
        assert r.status_code == 200, r.text
        return {bytes.fromhex(k): base64.b64decode(v) for k, v in r.json()["cells"].items()}


def log_state(base_url: str) -> tuple[str, int, str]:
    key = httpx.get(base_url + "/v1/log/key").json()["fingerprint"]
    head = httpx.get(base_url + "/v1/log/head").json()
    return key, head["size"], head["root"]


def cells(n: int) -> dict[bytes, bytes]:
    return {secrets.token_bytes(32): secrets.token_bytes(4096) for _ in range(n)}


def backup_restore_serve(source_db: str, target_db: str, backup_dir: Path, *, force: bool) -> None:
    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    before, after = cells(20), cells(5)
    first = RelayProcess(source_db).start()
    try:
        asyncio.run(register(first.base_url, TENANT, credential))
        asyncio.run(deposit(first.base_url, before))
        at_backup = log_state(first.base_url)
        made = relay_cli("backup", str(backup_dir), "--db", source_db)  # online: the relay serves
        assert made.returncode == 0, made.stderr
        asyncio.run(deposit(first.base_url, after))
        assert log_state(first.base_url)[1] > at_backup[1]
    finally:
        assert first.stopped_cleanly()
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["format"] == "backchannel-relay-backup"

    again = relay_cli("backup", str(backup_dir), "--db", source_db)
    assert again.returncode == 2 and "exists" in again.stderr

    args = ["restore", str(backup_dir), "--db", target_db] + (["--force"] if force else [])
    restored = relay_cli(*args)
    assert restored.returncode == 0, restored.stderr
    assert "rewind" in restored.stdout

    second = RelayProcess(target_db).start()
    try:
        assert log_state(second.base_url) == at_backup  # same key, same head
        found = asyncio.run(read(second.base_url, credential, [*before, *after]))
        assert found == before  # every cell before the backup, byte for byte; none after
        asyncio.run(deposit(second.base_url, after))  # the rewound relay takes deposits again
        assert asyncio.run(read(second.base_url, credential, list(after))) == after
    finally:
        assert second.stopped_cleanly()


def test_sqlite_backup_restore_serve(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    source = str(tmp_path / "a" / "relay.db")
    target = str(tmp_path / "b" / "relay.db")
    backup_dir = tmp_path / "backup"
    backup_restore_serve(source, target, backup_dir, force=False)
    assert stat.S_IMODE((backup_dir / "relay-key").stat().st_mode) == 0o600
    assert (tmp_path / "b" / "relay-key").read_bytes() == (
        tmp_path / "a" / "relay-key"
    ).read_bytes()


def test_restore_refuses_what_is_not_a_backup_or_another_store(tmp_path: Path) -> None:
    not_backup = relay_cli("restore", str(tmp_path), "--db", str(tmp_path / "r.db"))
    assert not_backup.returncode == 2 and "is not a relay backup" in not_backup.stderr
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "manifest.json").write_text(
        json.dumps(
            {
                "format": "backchannel-relay-backup",
                "format_version": 1,
                "store": "postgresql",
                "created": "x",
            }
        )
    )
    other = relay_cli("restore", str(tmp_path / "pg"), "--db", str(tmp_path / "r.db"))
    assert other.returncode == 2 and "restore into the same kind" in other.stderr
    assert not (tmp_path / "r.db").exists()
    missing = relay_cli("backup", str(tmp_path / "out"), "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "there is no relay database" in missing.stderr
    assert not (tmp_path / "out").exists()


def test_postgres_backup_restore_serve(tmp_path: Path) -> None:
    reason = postgres_reachable()
    if reason:
        pytest.skip(reason)
    with fresh_pg_schema() as url:
        # The password, if any, never reaches pg_dump's argv: it travels in PGPASSWORD.
        backup_restore_serve(url, url, tmp_path / "backup", force=True)
        # The dump holds the signing key: only its owner reads it.
        assert stat.S_IMODE((tmp_path / "backup" / "relay.pgdump").stat().st_mode) == 0o600
        refused = relay_cli("restore", str(tmp_path / "backup"), "--db", url)
        assert refused.returncode == 2 and "--force" in refused.stderr
