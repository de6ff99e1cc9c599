"""The relay's settings: frozen data, resolved once at start-up.

Sources, in increasing precedence: the defaults below, a TOML file, environment
variables ``BACKCHANNEL_RELAY_<FIELD>`` (upper-case field name; the data
directory is ``BACKCHANNEL_RELAY_DATA``), then command-line flags. In every
source the database may be a URL or a plain file path, which means SQLite
(:func:`store_url_from`). Nothing here
reads the environment at import time: :func:`resolve_settings` is called once
by the command line (or by a test) and the result is passed to ``create_app``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backchannel.errors import ConfigError, DecodeError
from backchannel.protocol.batch import INTAKE_ASK_LEN, MAX_QUERIES, QUERY_LEN
from backchannel.protocol.constants import CELL_SIZE, MIN_RETENTION_SECONDS, SLOT_LEN
from backchannel.protocol.misbehaviour import MAX_ABSENT_SLOTS
from backchannel.protocol.note import TYPE_COSIGNATURE_ED25519, TYPE_COSIGNATURE_MLDSA44, Verifier
from backchannel.relay.ratelimit import trusted_networks
from backchannel.store.factory import sqlite_url

ENV_PREFIX = "BACKCHANNEL_RELAY_"
#: The commit pacing a deployed relay runs with (``relay init`` writes it, the
#: container image sets it): at most ten log leaves a second, a deposit's answer
#: at most 100 ms later, which a round of a minute absorbs (docs/relay.md).
PRODUCTION_LOG_INTERVAL_MS = 100
#: Environment variable naming the data directory (the one exception to the
#: ``BACKCHANNEL_RELAY_<FIELD>`` rule, kept short because people type it).
ENV_DATA_DIR = "BACKCHANNEL_RELAY_DATA"
#: Environment variable naming a TOML settings file.
ENV_CONFIG = "BACKCHANNEL_RELAY_CONFIG"
DEFAULT_DATA_DIR = Path("~/.local/share/backchannel/relay")
DEFAULT_PORT = 8470
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("plain", "json")


_ORIGIN = re.compile(r"[!-*,-~]{1,255}")

#: A store URL scheme written without its ``//`` (``sqlite:relay.db``): a slip, not a file name.
_BARE_SCHEME = re.compile(r"(?i)(sqlite|postgres|postgresql|memory):(?!//)")


def store_url_from(value: str) -> str:
    """The store URL for a ``--db`` value: a URL as it is, a plain path as SQLite.

    ``relay.db`` and ``/var/lib/backchannel/relay.db`` mean ``sqlite:///<absolute
    path>`` (a relative path is taken from the current directory, ``~`` is
    expanded); anything with ``://`` is a URL, checked when the store is made.
    Empty stays empty: the embedded database in the data directory.
    """
    if not value or "://" in value:
        return value
    if _BARE_SCHEME.match(value):
        raise ConfigError(
            "the database is a URL with // (sqlite:///path.db, postgresql://...) "
            "or a plain file path (relay.db)"
        )
    if value.endswith(("/", os.sep)):
        raise ConfigError(
            f"the relay database {value} is a directory; give a file in it, "
            f"e.g. {os.path.join(value, 'relay.db')}"
        )
    return sqlite_url(value)


@dataclass(frozen=True, slots=True)
class WitnessPeer:
    """A witness: where to push, and the cosigner keys accepted from it."""

    url: str
    cosigners: tuple[Verifier, ...]


def parse_witnesses(spec: str) -> tuple[WitnessPeer, ...]:
    """``<URL prefix> <vkey> [<vkey> ...]`` entries, separated by commas."""
    peers = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        url, *vkeys = entry.split()
        if not url.startswith(("http://", "https://")) or not vkeys:
            raise DecodeError("a witness is '<http(s) URL prefix> <cosigner vkey> [...]'")
        cosigners = tuple(Verifier.from_vkey(v) for v in vkeys)
        kinds = (TYPE_COSIGNATURE_ED25519, TYPE_COSIGNATURE_MLDSA44)
        if any(c.sig_type not in kinds for c in cosigners):
            raise DecodeError("a witness's vkeys are cosigner keys (type 0x04 or 0x06)")
        peers.append(WitnessPeer(url.rstrip("/"), cosigners))
    return tuple(peers)


def _secret(default: str | None = None) -> Any:
    # repr=False keeps the token out of tracebacks and log lines that print settings.
    return field(default=default, repr=False)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Everything the relay needs to know, fixed for the life of the process."""

    #: Where the store lives: ``sqlite:///<path>`` or ``postgresql://...`` (a
    #: plain file path given in any source becomes ``sqlite:///<absolute path>``).
    #: Empty means the embedded SQLite database ``<data_dir>/relay.db``.
    db_url: str = _secret("")  # may hold a database password: never in a repr
    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: Every deposited cell has exactly this many bytes.
    cell_size: int = CELL_SIZE
    #: Cells older than this are deleted by the expiry task.
    retention_seconds: int = 7 * 24 * 3600
    #: How often the expiry task runs.
    expire_interval_seconds: float = 60.0
    #: Times handed to the store are rounded down to a multiple of this.
    time_granularity_seconds: int = 60
    #: Least time between two store commits, in milliseconds: the log then
    #: gains at most one leaf per interval whatever the load (bounded growth),
    #: each commit carries everything that arrived meanwhile (far less CPU per
    #: deposit under a building's load), and a deposit waits up to this long
    #: more. 0 commits as soon as possible (tests and closed-loop benchmarks);
    #: ``relay init`` and the container image set
    #: :data:`PRODUCTION_LOG_INTERVAL_MS`.
    log_interval_ms: int = 0
    #: Bearer token that authorises tenant registration; None disables it
    #: unless ``open_registration`` is set.
    operator_token: str | None = _secret()
    #: Anyone may register a tenant (demos and tests only).
    open_registration: bool = False
    default_quota_cells: int = 100_000
    #: Keep the public rendezvous tenant where missions pair by a short code.
    rendezvous: bool = True
    max_quota_cells: int = 10_000_000
    #: Most slots in one fetch or ack request, and most cells in one batch deposit.
    max_batch: int = 256
    #: Largest request body accepted, in bytes; larger bodies get 413 unread.
    #: Batch bodies have their own limits, computed from ``max_batch`` and
    #: ``cell_size`` (:attr:`batch_deposit_limit`, :attr:`batch_fetch_limit`).
    body_limit: int = 64 * 1024
    #: Token-bucket rates in requests per second (0 disables that limit). The
    #: per-address limits key an IPv4 client by its address and an IPv6 client
    #: by its /64 (``ratelimit.client_key``).
    ip_rate: float = 200.0
    ip_burst: int = 1000
    tenant_rate: float = 500.0
    tenant_burst: int = 2000
    #: Most rate-limit buckets kept per scope; the least recently used go first.
    rate_limit_buckets: int = 10_000
    #: Reverse proxies in front of the relay: comma-separated addresses or CIDR
    #: networks. A request from one of them is keyed, for every per-address
    #: limit, by the client its ``X-Forwarded-For`` names (the rightmost entry
    #: that is not a trusted proxy); any other peer's header is ignored. Empty:
    #: the client is always the connection's peer (``ratelimit.client_keyer``).
    trusted_proxies: str = ""
    #: Most tenant records cached in memory (tenants are never deleted).
    tenant_cache_size: int = 10_000
    #: Most requests served at once; more get 503 from the server.
    max_concurrency: int = 2048
    #: Seconds the server waits for in-flight requests on shutdown.
    graceful_shutdown_seconds: float = 30.0
    log_level: str = "info"
    #: ``plain`` lines or ``json`` (one object per line, for log collectors).
    log_format: str = "plain"
    #: The origin line of the log's checkpoints (c2sp.org/tlog-checkpoint), a
    #: schema-less URL naming this log. Empty: ``backchannel.relay/<first 8
    #: bytes of the log key's fingerprint, in hex>``, stable for the key's life.
    log_origin: str = ""
    #: Witnesses the relay asks to cosign its checkpoints: comma-separated
    #: entries ``<submission URL prefix> <cosigner vkey> [<vkey> ...]``.
    witnesses: str = ""
    #: How often the relay pushes its latest checkpoint to its witnesses.
    witness_interval_seconds: float = 60.0
    #: The public intake (docs/intake.md): leading zero bits of the proof of
    #: work a request needs (2**bits SHA-256 hashes on average for the sender;
    #: 14 keeps a browser submission under a second, docs/benchmarks.md).
    intake_pow_bits: int = 14
    #: Most requests a tenant's intake holds that its mission has not fetched
    #: yet; more get 507. A request stops counting once a device of the mission
    #: fetches past its number (it stays stored, for the other devices, until
    #: it expires): a full intake takes requests again as the mission fetches,
    #: one place per request fetched past, not only when requests expire.
    intake_queue_cap: int = 10_000
    #: Intake requests per second per client address (an IPv6 client: per /64),
    #: and the burst allowed.
    intake_ip_rate: float = 0.2
    intake_ip_burst: int = 10
    #: Intake requests per second per tenant, and the burst allowed.
    intake_tenant_rate: float = 20.0
    intake_tenant_burst: int = 200
    #: Intake requests per second for the whole relay, and the burst allowed:
    #: what a flood at every tenant together can take from the official rounds.
    intake_rate: float = 50.0
    intake_burst: int = 200
    #: Relay processes serving one port (SO_REUSEPORT), under one supervisor.
    #: More than one needs PostgreSQL: every process then shares its log.
    workers: int = 1

    def __post_init__(self) -> None:
        checks = [
            (self.cell_size > 0, "cell_size must be positive"),
            (self.body_limit >= self.cell_size, "body_limit must be at least cell_size"),
            (0 < self.port < 65536, "port must be between 1 and 65535"),
            (
                MIN_RETENTION_SECONDS <= self.retention_seconds < 1 << 32,
                f"retention_seconds must be at least {MIN_RETENTION_SECONDS} (one hour): "
                "clients hold the relay to keeping every cell that long",
            ),
            (self.expire_interval_seconds > 0, "expire_interval_seconds must be positive"),
            (self.time_granularity_seconds > 0, "time_granularity_seconds must be positive"),
            (0 <= self.log_interval_ms <= 60_000, "log_interval_ms must be 0 to 60000"),
            (
                0 < self.default_quota_cells <= self.max_quota_cells,
                "default_quota_cells must be positive and at most max_quota_cells",
            ),
            (0 < self.max_batch <= MAX_ABSENT_SLOTS, "max_batch must be 1 to 1024"),
            (self.ip_rate >= 0 and self.tenant_rate >= 0, "rates must not be negative"),
            (self.ip_burst > 0 and self.tenant_burst > 0, "bursts must be positive"),
            (self.rate_limit_buckets > 0, "rate_limit_buckets must be positive"),
            (self.tenant_cache_size > 0, "tenant_cache_size must be positive"),
            (self.max_concurrency > 0, "max_concurrency must be positive"),
            (
                self.log_level.lower() in LOG_LEVELS,
                f"log_level must be one of {', '.join(LOG_LEVELS)}",
            ),
            (self.log_format in LOG_FORMATS, f"log_format must be one of {', '.join(LOG_FORMATS)}"),
            (self.witness_interval_seconds > 0, "witness_interval_seconds must be positive"),
            (1 <= self.workers <= 64, "workers must be 1 to 64"),
            (0 <= self.intake_pow_bits <= 32, "intake_pow_bits must be 0 to 32"),
            (self.intake_queue_cap >= 0, "intake_queue_cap must not be negative"),
            (
                min(self.intake_ip_rate, self.intake_tenant_rate, self.intake_rate) >= 0,
                "intake rates must not be negative",
            ),
            (
                min(self.intake_ip_burst, self.intake_tenant_burst, self.intake_burst) > 0,
                "intake bursts must be positive",
            ),
            (
                self.workers == 1 or self.db_url.startswith(("postgresql://", "postgres://")),
                "several workers need PostgreSQL (--db postgresql://...): one SQLite file "
                "has one writing process",
            ),
            (
                not self.log_origin or _ORIGIN.fullmatch(self.log_origin) is not None,
                "log_origin is one line of printable characters without spaces or '+'",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid relay setting: {message}")
        try:
            parse_witnesses(self.witnesses)
        except DecodeError as e:
            raise ConfigError(f"invalid relay setting: witnesses: {e}") from None
        try:
            trusted_networks(self.trusted_proxies)
        except ValueError as e:
            raise ConfigError(f"invalid relay setting: trusted_proxies: {e}") from None

    @property
    def batch_deposit_limit(self) -> int:
        """Largest batch deposit body: ``max_batch`` cells to tenant ids of 64 characters."""
        return 1 + 8 + 2 + self.max_batch * (1 + 64 + SLOT_LEN + 4 + self.cell_size)

    @property
    def batch_fetch_limit(self) -> int:
        """Largest batch fetch body: ``max_batch`` slots, the most queries and an intake ask."""
        slots = self.max_batch * SLOT_LEN
        return 1 + 8 + 4 + 2 + slots + 1 + MAX_QUERIES * QUERY_LEN + INTAKE_ASK_LEN

    @property
    def store_url(self) -> str:
        """The database URL, with the embedded SQLite default filled in."""
        if self.db_url:
            return self.db_url
        return sqlite_url(self.data_dir.expanduser() / "relay.db")


_FIELDS = {f.name: f for f in dataclasses.fields(RelaySettings)}


def _coerce(name: str, raw: object) -> object:
    """Turn a TOML, environment or flag value into the field's type."""
    kind = _FIELDS[name].type
    if name == "db_url":
        return store_url_from(str(raw))
    if name == "trusted_proxies" and isinstance(raw, list):
        # A TOML array of addresses is the comma-separated list.
        if not all(isinstance(entry, str) for entry in raw):
            raise ConfigError("relay setting trusted_proxies is a list of addresses as strings")
        return ", ".join(raw)
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(text)
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(str(raw))
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(str(raw))
        if kind == "Path":
            return Path(str(raw)).expanduser()
        if kind == "str | None":
            return None if raw is None else str(raw)
        return str(raw)
    except ValueError:
        raise ConfigError(f"relay setting {name} has an invalid value; expected {kind}") from None


def _from_toml(path: Path) -> dict[str, object]:
    try:
        with path.expanduser().open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read relay settings file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"relay settings file {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"relay settings file {path} {not_utf8(e)}") from None
    # Accept either top-level keys or a [relay] table, not both.
    table = data.get("relay", data)
    if not isinstance(table, dict):
        raise ConfigError(f"relay settings file {path}: [relay] must be a table")
    outside = outside_relay_table(data)
    if outside:
        raise ConfigError(f"relay settings file {path}: {outside}")
    unknown = sorted(set(table) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"relay settings file {path}: unknown keys {', '.join(unknown)}")
    return {k: _coerce(k, v) for k, v in table.items()}


def not_utf8(e: UnicodeDecodeError) -> str:
    """Why a settings file that is not text was refused (the words after its path)."""
    return f"is not a UTF-8 TOML file (byte {e.start} is not UTF-8)"


def outside_relay_table(data: Mapping[str, object]) -> str | None:
    """The problem with settings written above a ``[relay]`` table, if there are any.

    With a ``[relay]`` table only that table is read: a key outside it (a line
    added above the header of the file ``relay init`` writes) would be dropped
    without a word.
    """
    if "relay" not in data:
        return None
    outside = [key for key in data if key != "relay"]
    if not outside:
        return None
    return (
        "settings outside [relay] are not read; move them under the [relay] header: "
        + ", ".join(outside)
    )


def _env_name(name: str) -> str:
    return ENV_DATA_DIR if name == "data_dir" else ENV_PREFIX + name.upper()


def _from_env(env: Mapping[str, str]) -> dict[str, object]:
    return {name: _coerce(name, env[_env_name(name)]) for name in _FIELDS if _env_name(name) in env}


def resolve_settings(
    flags: Mapping[str, object] | None = None,
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> RelaySettings:
    """Merge defaults, TOML file, environment and flags (``None`` flags are unset).

    ``config_file`` falls back to ``$BACKCHANNEL_RELAY_CONFIG``; ``env`` to
    ``os.environ``.
    """
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    if config_file is None and env.get(ENV_CONFIG):
        config_file = Path(env[ENV_CONFIG])
    if config_file is not None:
        values.update(_from_toml(config_file))
    values.update(_from_env(env))
    for name, raw in (flags or {}).items():
        if name not in _FIELDS:
            raise ConfigError(f"unknown relay setting {name}")
        if raw is not None:
            values[name] = _coerce(name, raw)
    try:
        return RelaySettings(**values)  # type: ignore[arg-type]
    except TypeError as e:
        raise ConfigError(f"invalid relay settings: {e}") from None
