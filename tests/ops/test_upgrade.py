"""Every kept release's relay database and officer homes open with today's code.

``tests/fixtures/<version>/`` holds what ``tests/fixtures/make_fixtures.py``
made with that release. Each is copied, opened with the current code (the
store's migrations run on the copy) and read in full: every cell is fetched
and hashed, the log's head and key are the same, every officer's inbox and
drafts are as they were, and the message opens where it had been opened.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from backchannel.client.home import Home
from backchannel.client.service import Client
from backchannel.errors import BackchannelError
from backchannel.store import _migrations
from backchannel.store.factory import relay_store_from_url, sqlite_url
from backchannel.store.relay_store import RelayStore
from tests.relay.procs import PG_BASE, postgres_reachable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RELEASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "manifest.json").is_file())


def manifest(release: str) -> dict[str, object]:
    return json.loads((FIXTURES / release / "manifest.json").read_text())  # type: ignore[no-any-return]


def test_there_is_a_fixture_of_this_release() -> None:
    from backchannel import __version__

    assert __version__ in RELEASES, (
        f"no fixtures of {__version__}: run python -m tests.fixtures.make_fixtures"
    )


async def _read_all(store: RelayStore, expected: dict[str, object]) -> None:
    await store.open()
    try:
        cells = expected["cells"]
        assert isinstance(cells, list) and cells
        for tenant, slot_hex, digest in cells:
            slot = bytes.fromhex(slot_hex)
            got = await store.fetch(tenant, [slot])
            assert hashlib.sha256(got[slot]).hexdigest() == digest, (tenant, slot_hex)
        assert await store.count_cells() == len(cells)
        head = await store.log_head()
        assert (head.size, head.root.hex()) == (expected["log_size"], expected["log_root"])
        assert store.log_public_key().hex() == expected["relay_key"]
        # The upgraded store still takes deposits and grows the same log.
        result = await store.deposit(cells[0][0], secrets.token_bytes(32), bytes(4096), 2**31)
        assert result.created
        assert (await store.log_head()).size == head.size + 1
    finally:
        await store.close()


@pytest.mark.parametrize("release", RELEASES)
def test_sqlite_relay_database_upgrades_and_reads(tmp_path: Path, release: str) -> None:
    shutil.copytree(FIXTURES / release / "relay-sqlite", tmp_path / "relay")
    db = tmp_path / "relay" / "relay.db"
    store = relay_store_from_url(sqlite_url(db), key_path=tmp_path / "relay" / "relay-key")
    expected = manifest(release)["relay_sqlite"]
    assert isinstance(expected, dict)
    asyncio.run(_read_all(store, expected))
    with sqlite3.connect(db) as conn:
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    assert version == len(_migrations.load("sqlite"))


@pytest.mark.parametrize("release", RELEASES)
def test_postgres_relay_dump_upgrades_and_reads(tmp_path: Path, release: str) -> None:
    reason = postgres_reachable()
    if reason:
        pytest.skip(reason)
    info = manifest(release)
    expected = info["relay_postgres"]
    if expected is None:
        pytest.skip(f"the fixtures of {release} were made without PostgreSQL")
    assert isinstance(expected, dict)
    old = str(info["postgres_schema"])
    schema = "bcupgrade_" + secrets.token_hex(6)
    script = (FIXTURES / release / "relay-postgres.sql").read_text()
    # The dump names its schema; load it under a fresh one.
    script = script.replace(f"SCHEMA {old};", f"SCHEMA {schema};").replace(f"{old}.", f"{schema}.")
    (tmp_path / "dump.sql").write_text(script)
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT="5432", PGDATABASE="test")
    loaded = subprocess.run(
        [
            "psql",
            "--quiet",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            str(tmp_path / "dump.sql"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
        asyncio.run(_read_all(relay_store_from_url(url), expected))
    finally:
        subprocess.run(
            ["psql", "--quiet", "--no-psqlrc", "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.mark.parametrize("release", RELEASES)
def test_officer_homes_open_and_every_message_reads(tmp_path: Path, release: str) -> None:
    info = manifest(release)
    shutil.copytree(FIXTURES / release / "homes", tmp_path / "homes")
    homes = info["homes"]
    assert isinstance(homes, dict) and len(homes) == 4
    opened = 0
    for name, expected in homes.items():
        client = Client(Home.unlock(tmp_path / "homes" / name, str(info["passphrase"])))
        try:
            assert client.home.officer.name == expected["officer"]
            inbox = {item.message_id.hex(): item for item in client.inbox()}
            assert sorted(inbox) == sorted(m for m, _ in expected["inbox"])
            for message_id, text in expected["inbox"]:
                if text is None:  # never opened on this device: still needs a colleague
                    with pytest.raises(BackchannelError):
                        client.read(bytes.fromhex(message_id))
                else:
                    assert client.read(bytes.fromhex(message_id)).text == text
                    opened += 1
            drafts = [[d.draft_id.hex(), d.outgoing.state.value] for d in client.drafts()]
            assert drafts == expected["drafts"]
        finally:
            client.home.close()
    assert opened >= 1
    assert any(text == info["message"] for h in homes.values() for _, text in h["inbox"])
