"""What a restore and a start refuse, so that a relay never signs a log against itself.

A relay keeps its log head in memory: a restore under a running relay, or a
second relay on the same file, would have it sign a rewind and a fork under
its own key. A damaged backup must leave the relay's database and key as they
were, and a key that did not sign a database's log must never serve it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import shutil
from pathlib import Path

import pytest

from tests.ops.test_backup import TENANT, cells, deposit, log_state, relay_cli
from tests.relay.procs import RelayProcess, register

pytestmark = pytest.mark.slow


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def serve_and_back_up(db: Path, backup_dir: Path) -> tuple[str, int, str]:
    """A relay on ``db`` that signed a head, stopped; its backup in ``backup_dir``."""
    credential = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    relay = RelayProcess(str(db)).start()
    try:
        asyncio.run(register(relay.base_url, TENANT, credential))
        asyncio.run(deposit(relay.base_url, cells(3)))
        log_state(relay.base_url)  # the full signed head, kept with the next commit
        asyncio.run(deposit(relay.base_url, cells(3)))
        state = log_state(relay.base_url)
    finally:
        assert relay.stopped_cleanly()
    made = relay_cli("backup", str(backup_dir), "--db", str(db))
    assert made.returncode == 0, made.stderr
    return state


def test_a_restore_under_a_running_relay_and_a_second_relay_are_refused(tmp_path: Path) -> None:
    (tmp_path / "live").mkdir()
    db = tmp_path / "live" / "relay.db"
    serve_and_back_up(db, tmp_path / "backup")
    relay = RelayProcess(str(db)).start()
    try:
        asyncio.run(deposit(relay.base_url, cells(2)))
        before = log_state(relay.base_url)
        restored = relay_cli("restore", str(tmp_path / "backup"), "--db", str(db), "--force")
        assert restored.returncode == 2
        assert "a relay is serving" in restored.stderr and "stop it" in restored.stderr
        second = relay_cli("serve", "--db", str(db), "--port", "1")
        assert second.returncode == 2 and "another relay is serving" in second.stderr
        assert "Traceback" not in second.stderr
        # The running relay goes on as it was: same head, and it still takes deposits.
        assert log_state(relay.base_url) == before
        asyncio.run(deposit(relay.base_url, cells(1)))
        assert log_state(relay.base_url)[1] > before[1]
    finally:
        assert relay.stopped_cleanly()
    # Stopped, the same restore goes through (the lock went with the process).
    restored = relay_cli("restore", str(tmp_path / "backup"), "--db", str(db), "--force")
    assert restored.returncode == 0, restored.stderr


def test_a_damaged_backup_leaves_the_relay_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    serve_and_back_up(tmp_path / "a" / "relay.db", tmp_path / "good")
    live = tmp_path / "b" / "relay.db"
    serve_and_back_up(live, tmp_path / "b-backup")
    kept = {p: digest(p) for p in (live, tmp_path / "b" / "relay-key")}

    bad_db = tmp_path / "bad-db"
    shutil.copytree(tmp_path / "good", bad_db)
    raw = bytearray((bad_db / "relay.db").read_bytes())
    page = 4096
    raw[2 * page : 2 * page + 200] = b"\xff" * 200  # a b-tree page's header and pointers
    (bad_db / "relay.db").write_bytes(bytes(raw))
    bad_key = tmp_path / "bad-key"
    shutil.copytree(tmp_path / "good", bad_key)
    (bad_key / "relay-key").write_bytes(b"garbage\n")
    crossed = tmp_path / "crossed"  # one relay's database, another's key
    shutil.copytree(tmp_path / "good", crossed)
    shutil.copy(tmp_path / "b-backup" / "relay-key", crossed / "relay-key")

    for backup, said in (
        (bad_db, "relay.db is damaged"),
        (bad_key, "signing key"),
        (crossed, "did not sign"),
    ):
        out = relay_cli("restore", str(backup), "--db", str(live), "--force")
        assert out.returncode == 2, (backup, out.stderr)
        assert said in out.stderr and "internal error" not in out.stderr, out.stderr
        assert {p: digest(p) for p in kept} == kept, backup
        assert sorted(p.name for p in live.parent.iterdir() if p.name.startswith(".")) == []
    relay = RelayProcess(str(live)).start()  # and it serves as before
    assert relay.stopped_cleanly()


def test_a_restore_never_puts_its_key_over_another_relays_without_force(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "shared").mkdir()
    serve_and_back_up(tmp_path / "a" / "relay.db", tmp_path / "backup-a")
    at_backup = serve_and_back_up(tmp_path / "shared" / "relay.db", tmp_path / "backup-s")
    key = tmp_path / "shared" / "relay-key"
    before = digest(key)
    # A new database file beside a relay whose key clients have pinned.
    out = relay_cli(
        "restore", str(tmp_path / "backup-a"), "--db", str(tmp_path / "shared" / "x.db")
    )
    assert out.returncode == 2 and "another signing key" in out.stderr, out.stderr
    assert digest(key) == before and not (tmp_path / "shared" / "x.db").exists()
    # The same relay's own backup needs no --force for its key (the database is gone).
    (tmp_path / "shared" / "relay.db").unlink()
    out = relay_cli(
        "restore", str(tmp_path / "backup-s"), "--db", str(tmp_path / "shared" / "relay.db")
    )
    assert out.returncode == 0, out.stderr
    relay = RelayProcess(str(tmp_path / "shared" / "relay.db")).start()
    try:
        assert log_state(relay.base_url) == at_backup
    finally:
        assert relay.stopped_cleanly()


def test_a_database_its_key_did_not_sign_or_a_damaged_one_is_not_served(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        serve_and_back_up(tmp_path / name / "relay.db", tmp_path / f"backup-{name}")
    # Relay b's key beside relay a's database: it would sign a log clients pinned to a's.
    shutil.copy(tmp_path / "b" / "relay-key", tmp_path / "a" / "relay-key")
    out = relay_cli("serve", "--db", str(tmp_path / "a" / "relay.db"), "--port", "1")
    assert out.returncode == 2 and "did not sign this database's log" in out.stderr, out.stderr
    assert str(tmp_path / "a" / "relay.db") in out.stderr
    assert "Traceback" not in out.stderr
    # A database cut in half: one line naming it, not a traceback, and the file untouched.
    db = tmp_path / "b" / "relay.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    cut = digest(db)
    out = relay_cli("serve", "--db", str(db), "--port", "1")
    assert out.returncode == 2 and f"cannot open the relay database {db}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and digest(db) == cut
