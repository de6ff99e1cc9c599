"""``relay init`` writes a commented TOML file; ``relay check-config`` reports every problem."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from backchannel.protocol.note import TYPE_COSIGNATURE_ED25519, Verifier
from backchannel.relay import config as cfg
from backchannel.relay.logformat import JsonFormatter
from backchannel.relay.settings import PRODUCTION_LOG_INTERVAL_MS, RelaySettings, resolve_settings
from tests.relay.procs import REPO

FIELDS = [f.name for f in dataclasses.fields(RelaySettings)]


def relay(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_RELAY_")}
    full["PYTHONPATH"] = str(REPO / "src")
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "backchannel.relay", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_setting_is_described_in_the_file_and_uncommenting_gives_the_defaults() -> None:
    text = cfg.template()
    for name in FIELDS:
        assert f"# {name} = " in text, name
        assert f"# Environment: {cfg.env_name(name)}" in text
    # Uncomment every setting line: the file then states every default explicitly.
    lines = [
        line[2:] if any(line.startswith(f"# {n} = ") for n in FIELDS) else line
        for line in text.splitlines()
    ]
    data = tomllib.loads("\n".join(lines))["relay"]
    assert sorted(data) == sorted(FIELDS)
    defaults = RelaySettings()
    explicit = resolve_settings({k: v for k, v in data.items() if k != "operator_token"}, env={})
    for name in FIELDS:
        if name in ("operator_token", "data_dir"):
            continue
        assert getattr(explicit, name) == getattr(defaults, name), name
    assert set(cfg.DESCRIPTIONS) == set(FIELDS)


def test_init_writes_a_private_file_with_a_token_that_serve_reads(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    result = relay("init", str(path), "--db", "relay.db", "--port", "9100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = resolve_settings(config_file=path, env={})
    assert settings.port == 9100
    assert settings.store_url == f"sqlite://{tmp_path / 'relay.db'}"  # absolute, not cwd-relative
    assert settings.operator_token is not None and len(settings.operator_token) >= 40
    assert settings.operator_token not in result.stdout + result.stderr
    # Deployed as production wants: commits paced, not the library's unpaced default.
    assert settings.log_interval_ms == PRODUCTION_LOG_INTERVAL_MS > RelaySettings().log_interval_ms
    # A second init would lose the token: refused without --force, file unchanged.
    before = path.read_bytes()
    again = relay("init", str(path), cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr
    assert path.read_bytes() == before
    ok = relay("check-config", "--config", str(path), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "ok:" in ok.stdout and "port = 9100  [file" in ok.stdout
    assert settings.operator_token not in ok.stdout + ok.stderr


def test_init_writes_the_pacing_asked_for_and_refuses_one_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    result = relay("init", str(path), "--log-interval-ms", "0", "--no-operator-token")
    assert result.returncode == 0, result.stderr
    assert resolve_settings(config_file=path, env={}).log_interval_ms == 0
    assert "\nlog_interval_ms = 0\n" in path.read_text()
    # The environment still overrides the file, as for every setting.
    env = {"BACKCHANNEL_RELAY_LOG_INTERVAL_MS": "250"}
    assert resolve_settings(config_file=path, env=env).log_interval_ms == 250
    other = tmp_path / "other.toml"
    bad = relay("init", str(other), "--log-interval-ms", "60001", "--no-operator-token")
    assert bad.returncode == 2 and "log_interval_ms must be 0 to 60000" in bad.stderr
    assert not other.exists()


def test_the_container_image_and_the_help_name_the_pacing_relay_init_writes() -> None:
    containerfile = (REPO / "deploy" / "container" / "Containerfile").read_text()
    assert f"BACKCHANNEL_RELAY_LOG_INTERVAL_MS={PRODUCTION_LOG_INTERVAL_MS}" in containerfile
    # The texts that state the value in words say the constant's value.
    assert f"relay init writes {PRODUCTION_LOG_INTERVAL_MS};" in cfg.DESCRIPTIONS["log_interval_ms"]
    shown = relay("init", "--help", env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert f"(default {PRODUCTION_LOG_INTERVAL_MS}, for production;" in shown.stdout


def test_init_refuses_bad_values_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    result = relay("init", str(path), "--port", "70000", cwd=tmp_path)
    assert result.returncode == 2 and "port must be between" in result.stderr
    assert not path.exists()


def test_check_config_reports_every_problem_with_its_source(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text("[relay]\nprot = 9000\nretention_seconds = 60\n")
    result = relay(
        "check-config",
        "--config",
        str(path),
        env={"BACKCHANNEL_RELAY_MAX_BTACH": "3", "BACKCHANNEL_RELAY_DATA": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "unknown setting prot (did you mean port?)" in result.stderr
    assert (
        "BACKCHANNEL_RELAY_MAX_BTACH (did you mean BACKCHANNEL_RELAY_MAX_BATCH?)" in result.stderr
    )
    assert "retention_seconds must be at least 3600" in result.stderr
    typed = relay("check-config", env={"BACKCHANNEL_RELAY_PORT": "eighty"})
    assert typed.returncode == 1
    assert (
        "port has an invalid value; expected int [environment BACKCHANNEL_RELAY_PORT]"
        in typed.stderr
    )


def test_every_setting_comes_from_the_environment(tmp_path: Path) -> None:
    defaults = RelaySettings()
    changed = {
        # PostgreSQL, so that several workers are allowed (nothing connects here).
        "db_url": "postgresql://relay@db.example/relay",
        "data_dir": str(tmp_path),
        "host": "0.0.0.0",
        "port": "9999",
        "cell_size": "8192",
        "retention_seconds": "7200",
        "expire_interval_seconds": "5.5",
        "time_granularity_seconds": "30",
        "log_interval_ms": "250",
        "operator_token": "t",
        "open_registration": "yes",
        "default_quota_cells": "5",
        "rendezvous": "off",
        "max_quota_cells": "6",
        "max_batch": "16",
        "body_limit": "9000",
        "ip_rate": "1.5",
        "ip_burst": "2",
        "tenant_rate": "3",
        "tenant_burst": "4",
        "trusted_proxies": "10.8.0.0/16",
        "rate_limit_buckets": "7",
        "tenant_cache_size": "8",
        "max_concurrency": "9",
        "graceful_shutdown_seconds": "2",
        "log_level": "debug",
        "log_format": "json",
        "log_origin": "relay.example.org/log",
        "witnesses": "https://witness.example/a "
        + Verifier("witness.example/a", TYPE_COSIGNATURE_ED25519, bytes(32)).vkey(),
        "witness_interval_seconds": "15",
        "workers": "3",
        "intake_pow_bits": "12",
        "intake_queue_cap": "50",
        "intake_ip_rate": "0.5",
        "intake_ip_burst": "3",
        "intake_tenant_rate": "5",
        "intake_tenant_burst": "9",
        "intake_rate": "7.5",
        "intake_burst": "11",
    }
    assert sorted(changed) == sorted(FIELDS)
    env = {cfg.env_name(k): v for k, v in changed.items()}
    settings = resolve_settings(env=env)
    for name in FIELDS:
        assert getattr(settings, name) != getattr(defaults, name), name
    report = cfg.check(env=env)
    assert report.ok, report.errors
    assert report.sources["max_batch"] == "environment BACKCHANNEL_RELAY_MAX_BATCH"


def test_a_database_in_a_missing_directory_is_reported(tmp_path: Path) -> None:
    report = cfg.check({"db_url": str(tmp_path / "nope" / "relay.db")}, env={})
    assert not report.ok
    assert any("does not exist" in e for e in report.errors)


def test_a_token_in_a_world_readable_file_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('[relay]\noperator_token = "secret-token-value"\n')
    path.chmod(0o644)
    report = cfg.check(config_file=path, env={"BACKCHANNEL_RELAY_DATA": str(tmp_path)})
    assert report.ok
    assert any("chmod 600" in w for w in report.warnings)
    assert all("secret-token-value" not in line for line in report.lines())


def test_a_short_operator_token_is_warned_about_and_a_generated_one_is_not(
    tmp_path: Path,
) -> None:
    env = {"BACKCHANNEL_RELAY_DATA": str(tmp_path)}
    short = cfg.check({"operator_token": "hunter2hunter2"}, env=env)
    assert short.ok and any("could be guessed" in w for w in short.warnings)
    assert all("hunter2" not in line for line in short.lines())
    fresh = cfg.check({"operator_token": cfg.new_operator_token()}, env=env)
    assert not any("could be guessed" in w for w in fresh.warnings)


def test_database_passwords_are_hidden_in_the_report() -> None:
    url = "postgresql://relay:hunter2@db.example/relay"
    report = cfg.check({"db_url": url}, env={})
    assert report.ok
    assert not any("hunter2" in line for line in report.lines())
    assert any("relay:***@db.example" in line for line in report.lines())


def test_json_log_lines_are_objects() -> None:
    import logging

    record = logging.LogRecord("backchannel.relay", logging.WARNING, "f", 1, "n=%d", (3,), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["message"] == "n=3"
    assert entry["logger"] == "backchannel.relay" and entry["time"].endswith("Z")


@pytest.mark.parametrize("value", ["xml", "JSON "])
def test_an_unknown_log_format_is_refused(value: str) -> None:
    report = cfg.check({"log_format": value}, env={})
    assert not report.ok and "log_format must be one of plain, json" in report.errors[0]


def test_serve_with_json_logs_writes_one_object_per_line(tmp_path: Path) -> None:
    from tests.relay.procs import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_RELAY_")}
    env["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backchannel.relay",
            "serve",
            "--db",
            str(tmp_path / "r.db"),
            "--port",
            str(port),
            "--log-format",
            "json",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        import time

        import httpx

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        slot = "ab" * 32
        httpx.get(f"http://127.0.0.1:{port}/v1/tenants/nobody/slots/{slot}")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) >= 3
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(e["logger"] == "backchannel.relay" for e in entries)
    assert slot not in err  # the path (with its slot) is never logged


def test_relay_key_prints_the_fingerprint_the_relay_serves(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from backchannel.relay.app import create_app

    first = relay("key", "--data-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    printed = first.stdout.strip()
    assert len(printed) == 64 and int(printed, 16) >= 0
    # The same key again, and the one the relay then serves from that directory.
    assert relay("key", "--data-dir", str(tmp_path)).stdout.strip() == printed
    settings = resolve_settings({"data_dir": tmp_path}, env={})

    async def served() -> str:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
                return str((await c.get("/v1/log/key")).json()["fingerprint"])

    assert asyncio.run(served()) == printed
    # A damaged key file is refused with a plain reason, not replaced.
    (tmp_path / "relay-key").write_bytes(b"junk")
    bad = relay("key", "--data-dir", str(tmp_path))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and bad.stderr.strip()


# -- check-config says what serve would refuse ------------------------------------------


def _relay_database(path: Path) -> None:
    """A relay's database and key at ``path``, as a relay that ran and stopped leaves them."""
    import asyncio

    from backchannel.store.sqlite import SQLiteRelayStore

    async def make() -> None:
        store = SQLiteRelayStore(path)
        await store.open()
        await store.close()

    asyncio.run(make())


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "another application"])
def test_check_config_refuses_a_database_serve_would_refuse_and_writes_nothing(
    tmp_path: Path, damage: str
) -> None:
    import sqlite3

    db = tmp_path / "relay.db"
    if damage == "random bytes":
        db.write_bytes(os.urandom(200_000))
        expected = "is not a relay database (SQLITE_NOTADB"
    elif damage == "truncated":
        _relay_database(db)
        with db.open("ab") as f:  # enough pages that half of them cut through the tables
            f.truncate(db.stat().st_size // 2)
        expected = "is damaged ("
    else:
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE songs (title TEXT)")
        conn.close()
        expected = "is not a relay database (an SQLite database of another application)"
    before = _files(tmp_path)
    result = relay("check-config", "--quiet", "--db", str(db))
    assert result.returncode == 1, result.stderr
    assert f"error: the relay database at {db} {expected}" in result.stderr
    assert "ok:" not in result.stdout and "Traceback" not in result.stderr
    assert _files(tmp_path) == before  # read only: nothing written, no -wal or -shm left


def test_check_config_passes_a_good_database_and_a_new_one_without_touching_either(
    tmp_path: Path,
) -> None:
    db = tmp_path / "relay.db"
    _relay_database(db)
    before = _files(tmp_path)
    report = cfg.check({"db_url": str(db)}, env={})
    assert report.ok, report.errors
    assert _files(tmp_path) == before
    new = cfg.check({"db_url": str(tmp_path / "new.db")}, env={})
    assert new.ok, new.errors
    assert not (tmp_path / "new.db").exists()
    # The embedded database in the data directory is checked the same way.
    db.write_bytes(b"not a database at all, " * 100)
    embedded = cfg.check(env={"BACKCHANNEL_RELAY_DATA": str(tmp_path)})
    assert any(f"the relay database at {db} is not a relay database" in e for e in embedded.errors)


def test_check_config_refuses_a_database_a_newer_release_wrote(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "relay.db"
    _relay_database(db)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_version VALUES (999, 'from_the_future', 0)")
    conn.commit()
    conn.close()
    report = cfg.check({"db_url": str(db)}, env={})
    assert any("was written by a newer Backchannel" in e for e in report.errors), report.errors


def test_check_config_refuses_an_unknown_store_url_scheme_as_serve_does() -> None:
    result = relay("check-config", "--quiet", "--db", "mysql://relay:hunter2@x/y")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "error: unknown store URL scheme; use memory://, sqlite:///path.db or postgresql://..."
    )
    assert "hunter2" not in result.stdout + result.stderr


def test_the_memory_store_is_warned_about_in_check_config(tmp_path: Path) -> None:
    result = relay("check-config", "--quiet", "--db", "memory://")
    assert result.returncode == 0
    assert "warning: the memory:// store keeps everything in the relay's memory" in result.stderr
    on_file = cfg.check({"db_url": str(tmp_path / "r.db")}, env={})
    assert not any("memory://" in w for w in on_file.warnings)


# -- settings files -----------------------------------------------------------------------


def test_settings_above_the_relay_table_are_an_error_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "mix.toml"
    path.write_text('port = 1234\nbogus = 1\n[relay]\nhost = "127.0.0.1"\n')
    env = {"BACKCHANNEL_RELAY_DATA": str(tmp_path)}
    result = relay("check-config", "--quiet", "--config", str(path), env=env)
    assert result.returncode == 1
    assert (
        f"error: {path}: settings outside [relay] are not read; move them under the [relay] "
        "header: port, bogus"
    ) in result.stderr
    served = relay("serve", "--config", str(path), env=env)
    assert served.returncode == 2
    assert "settings outside [relay] are not read" in served.stderr
    assert "port, bogus" in served.stderr
    # Top-level keys alone, or a [relay] table alone, are read as before.
    path.write_text("port = 1234\n")
    assert cfg.check(config_file=path, env=env).ok


def test_a_settings_file_that_is_not_text_is_named_not_an_internal_error(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b"port = 1\n\xff\xfe\x00junk" + bytes(range(128, 256)))
    env = {"BACKCHANNEL_RELAY_DATA": str(tmp_path)}
    for command in ("check-config", "serve"):
        result = relay(command, "--config", str(path), env=env)
        assert result.returncode == (1 if command == "check-config" else 2), result.stderr
        assert f"{path} is not a UTF-8 TOML file" in result.stderr
        assert "Traceback" not in result.stderr


# -- the data directory -------------------------------------------------------------------


def test_a_data_directory_that_is_a_file_is_named(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a file, not a directory\n")
    for command in ("key", "serve"):
        result = relay(command, "--data-dir", str(afile))
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"error: the data directory {afile} is not a directory"
        ]
    below = relay("serve", "--data-dir", str(afile / "sub"))
    assert below.returncode == 2
    assert below.stderr.splitlines() == [
        f"error: cannot create the data directory {afile / 'sub'}: Not a directory"
    ]
    assert afile.read_text() == "a file, not a directory\n"


def test_relay_key_says_when_it_just_made_a_new_relay(tmp_path: Path) -> None:
    first = relay("key", "--db", str(tmp_path / "relay.db"))
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines() == [
        f"warning: this relay had never run: a new relay key was just created in "
        f"{tmp_path / 'relay-key'} (and a new, empty database at {tmp_path / 'relay.db'}); "
        "if you meant an existing relay, check --db and --data-dir"
    ]
    printed = first.stdout.strip()
    again = relay("key", "--db", str(tmp_path / "relay.db"))
    assert again.stdout.strip() == printed and again.stderr == ""  # the relay's own key
    # A mistyped file name beside the relay's: the key is the relay's, the database new.
    typo = relay("key", "--db", str(tmp_path / "rleay.db"))
    assert typo.stdout.strip() == printed
    assert typo.stderr.splitlines() == [
        f"warning: there was no relay database at {tmp_path / 'rleay.db'}: a new, empty one "
        "was just created; if you meant an existing relay, check --db and --data-dir"
    ]
    memory = relay("key", "--db", "memory://")
    assert memory.returncode == 0 and "the memory:// store keeps no key" in memory.stderr
