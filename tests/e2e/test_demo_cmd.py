"""``backchannel demo``: the steps' outcomes, and no plaintext anywhere on disk."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tests.e2e.conftest import Officer, backchannel, base_env

EXPECTED = {
    "found missions": "ok",
    "pair": "ok",
    "solo send": "refused",
    "co-sign": "ok",
    "deliver": "ok",
    "solo open": "refused",
    "joint open": "ok",
    "receipt": "ok",
    "relay log": "ok",
    "record": "ok",
}


def every_file(directory: Path) -> list[Path]:
    return [Path(root) / f for root, _, files in os.walk(directory) for f in files]


def test_demo_keeps_no_plaintext_on_disk(tmp_path: Path) -> None:
    message = f"Back-channel talks at the lake house, code {secrets.token_hex(12)}"
    kept = tmp_path / "kept"
    env = base_env()
    del env["BACKCHANNEL_KDF"]  # the default Argon2 parameters, as `make demo` runs
    r = backchannel("demo", "--message", message, "--keep", kept, "--json", env=env, timeout=120)
    assert r.code == 0, r.err
    doc = r.json
    assert {s["name"]: s["outcome"] for s in doc["steps"]} == EXPECTED
    assert doc["relay"].startswith("http://127.0.0.1:")
    assert doc["kept"]["homes"] == ["new-york-1", "new-york-2", "washington-1", "washington-2"]

    files = every_file(kept)
    names = {f.name for f in files}
    assert {"relay.db", "keystore.bcks", "vault.db"} <= names
    needles = [message.encode(), message.encode("utf-16-le"), message.split()[-1].encode()]
    for f in files:  # relay.db and its -wal/-shm, keystores, vaults: every byte
        data = f.read_bytes()
        for needle in needles:
            assert needle not in data, f"plaintext found in {f}"

    # The kept homes open with the printed passphrase, and the message is there, sealed
    # in the encrypted vault: Washington's officers opened it together.
    smith = Officer(kept / "washington-1", "Officer Smith")
    smith_env = base_env(BACKCHANNEL_PASSPHRASE=doc["kept"]["passphrase"])
    [item] = smith.run("--json", "inbox", env=smith_env).json["messages"]
    assert item["state"] == "opened"
    read = smith.run("--json", "read", item["message_id"][:8], env=smith_env)
    assert read.code == 0 and read.json["text"] == message


def test_demo_without_keep_leaves_nothing_and_prints_steps(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    r = backchannel("demo", "--message", "short-lived", env=base_env(TMPDIR=str(scratch)))
    assert r.code == 0, r.err
    assert list(scratch.iterdir()) == []  # the relay database and the homes are gone
    lines = r.out.splitlines()
    assert len(lines) == len(EXPECTED)
    for line, (name, outcome) in zip(lines, EXPECTED.items(), strict=True):
        assert line.startswith(outcome) and f" {name}: " in line
    assert "passphrase" not in r.out
