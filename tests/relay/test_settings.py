"""Settings resolution, the rate limiter's memory bound, expiry, and the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from backchannel.errors import ConfigError
from backchannel.relay.ratelimit import TokenBuckets
from backchannel.relay.settings import RelaySettings, resolve_settings
from backchannel.store.memory import MemoryRelayStore

from .conftest import AppFactory, Clock, deposit, new_cell, new_slot, register, running
from .procs import REPO


def test_precedence_defaults_toml_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "relay.toml"
    toml.write_text('[relay]\nport = 9001\nhost = "127.0.0.2"\nretention_seconds = 7200\n')
    env = {
        "BACKCHANNEL_RELAY_PORT": "9002",
        "BACKCHANNEL_RELAY_OPEN_REGISTRATION": "yes",
        "BACKCHANNEL_RELAY_DATA": str(tmp_path / "data"),
    }
    s = resolve_settings({"port": 9003, "host": None}, config_file=toml, env=env)
    assert s.port == 9003  # flag beats env beats file
    assert s.host == "127.0.0.2"  # file beats default; an unset flag changes nothing
    assert s.retention_seconds == 7200
    assert s.open_registration is True
    assert s.data_dir == tmp_path / "data"
    assert s.store_url == f"sqlite://{tmp_path / 'data' / 'relay.db'}"
    assert resolve_settings(env={}).store_url.endswith("/.local/share/backchannel/relay/relay.db")
    assert resolve_settings({"db_url": "memory://"}, env={}).store_url == "memory://"


def test_retention_below_the_protocol_floor_is_refused() -> None:
    # Clients hold a relay to keeping each cell an hour (MIN_RETENTION_SECONDS):
    # a relay that expired sooner would sign what looks like a proof of a drop.
    with pytest.raises(ConfigError, match="at least 3600"):
        resolve_settings({"retention_seconds": 3599}, env={})
    assert resolve_settings({"retention_seconds": 3600}, env={}).retention_seconds == 3600


def test_config_file_from_environment(tmp_path: Path) -> None:
    toml = tmp_path / "relay.toml"
    toml.write_text("ip_rate = 0\n")
    assert resolve_settings(env={"BACKCHANNEL_RELAY_CONFIG": str(toml)}).ip_rate == 0


def test_operator_token_stays_out_of_repr() -> None:
    s = RelaySettings(operator_token="hunter2-operator")
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(
    ("flags", "env", "toml"),
    [
        ({"port": 0}, {}, None),
        ({}, {"BACKCHANNEL_RELAY_PORT": "eighty"}, None),
        ({}, {"BACKCHANNEL_RELAY_OPEN_REGISTRATION": "maybe"}, None),
        ({"body_limit": 100}, {}, None),
        ({"nonsense": 1}, {}, None),
        ({}, {}, "colour = 'red'\n"),
        ({}, {}, "port = [\n"),
    ],
)
def test_bad_settings_raise_config_error(
    tmp_path: Path, flags: dict[str, object], env: dict[str, str], toml: str | None
) -> None:
    path = None
    if toml is not None:
        path = tmp_path / "bad.toml"
        path.write_text(toml)
    with pytest.raises(ConfigError):
        resolve_settings(flags, config_file=path, env=env)


def test_keys_outside_a_relay_table_are_refused_by_name(tmp_path: Path) -> None:
    # relay init writes a [relay] table: a line added above its header would
    # otherwise be dropped without a word.
    toml = tmp_path / "relay.toml"
    toml.write_text('port = 1234\nbogus = 1\n[relay]\nhost = "127.0.0.1"\n')
    with pytest.raises(ConfigError, match=r"settings outside \[relay\].*: port, bogus$"):
        resolve_settings(config_file=toml, env={})
    toml.write_text("[relay]\nport = 1234\n[other]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"settings outside \[relay\].*: other$"):
        resolve_settings(config_file=toml, env={})
    toml.write_text('[relay]\nport = 1234\nhost = "127.0.0.2"\n')
    assert resolve_settings(config_file=toml, env={}).port == 1234


def test_a_settings_file_that_is_not_utf8_is_config_error(tmp_path: Path) -> None:
    toml = tmp_path / "relay.toml"
    toml.write_bytes(b"port = 1\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="is not a UTF-8 TOML file"):
        resolve_settings(config_file=toml, env={})


def test_missing_config_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_settings(config_file=tmp_path / "absent.toml", env={})


def test_token_buckets_stay_bounded_under_distinct_keys() -> None:
    clock = Clock(0)
    buckets = TokenBuckets(rate=1.0, burst=2, capacity=100, clock=clock)
    for i in range(100_000):
        buckets.take(f"key-{i}")
    assert len(buckets) == 100
    assert buckets.take("k") == 0 and buckets.take("k") == 0
    assert buckets.take("k") == pytest.approx(1.0)
    clock.now += 0.5
    assert buckets.take("k") == pytest.approx(0.5)
    assert not TokenBuckets(0, 1, 1, clock).enabled
    # Looking does not spend: a bucket with one token left says so, and keeps it.
    peek = TokenBuckets(rate=1.0, burst=1, capacity=10, clock=clock)
    assert peek.wait("p") == 0 and peek.wait("p") == 0
    assert peek.take("p") == 0
    assert peek.wait("p") == pytest.approx(1.0) and peek.wait("p") == pytest.approx(1.0)
    clock.now += 1.0
    assert peek.wait("p") == 0 and peek.take("p") == 0


async def test_expiry_task_removes_old_cells(
    make_app: AppFactory, store: MemoryRelayStore, clock: Clock
) -> None:
    app: Starlette = make_app(expire_interval_seconds=0.01, retention_seconds=3600)
    async for http in running(app):
        t = await register(http, "mission-old")
        slot = new_slot()
        assert (await deposit(http, t.tenant_id, slot, new_cell())).status_code == 201
        clock.now += 3600 + 60
        for _ in range(100):
            await asyncio.sleep(0.01)
            if await store.count_cells() == 0:
                break
        assert await store.count_cells() == 0
        metrics = (await http.get("/metrics")).text
        assert "backchannel_relay_cells_expired_total 1.0" in metrics


def test_cli_help_and_bad_config(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "backchannel.relay", "serve", "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in ("--db", "--host", "--port", "--config", "--data-dir", "--open-registration"):
        assert flag in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "backchannel.relay", "serve", "--port", "0", "--db", "memory://"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "port must be" in bad.stderr


def test_serve_with_memory_store_answers_and_warns_that_it_keeps_nothing(tmp_path: Path) -> None:
    from .procs import RelayProcess

    relay = RelayProcess("memory://")
    relay.log_path = tmp_path / "relay.log"
    with relay:
        assert httpx.get(relay.base_url + "/v1/info").json()["cell_size"] == 4096
    assert (
        "warning: the memory:// store keeps everything in the relay's memory: tenants, cells "
        "and the relay's key are gone when it stops"
    ) in relay.log_path.read_text()


def test_a_database_password_never_shows_in_the_settings_repr() -> None:
    s = resolve_settings({"db_url": "postgresql://relay:hunter2@db.example/relay"}, env={})
    assert s.db_url.endswith("@db.example/relay")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
