"""The relay's settings file: ``relay init`` writes it, ``relay check-config`` reads it back.

:func:`template` renders a commented TOML file with every setting of
:class:`~backchannel.relay.settings.RelaySettings`: what it does, its
environment variable and its default (commented out, so that a later release's
default applies unless the operator chose otherwise). :func:`check` resolves
the settings as ``relay serve`` would and reports every problem it finds, not
only the first, plus where each effective value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backchannel.errors import ConfigError
from backchannel.relay import settings as rs

#: One line (or two) per setting, in the order the file shows them.
DESCRIPTIONS: dict[str, str] = {
    "db_url": (
        "The database: a file path (SQLite), sqlite:///<path> or postgresql://...\n"
        "Empty: the embedded SQLite database <data_dir>/relay.db."
    ),
    "data_dir": "Where the embedded database and the relay's signing key (relay-key) live.",
    "host": "Address to listen on; terminate TLS in a proxy in front of the relay.",
    "port": "Port to listen on.",
    "cell_size": "Bytes in every cell; clients must use the same size.",
    "retention_seconds": "Cells older than this are deleted (at least 3600: clients rely on it).",
    "expire_interval_seconds": "How often the expiry task runs.",
    "time_granularity_seconds": "Times given to the store are rounded down to this step.",
    "log_interval_ms": (
        "Least time between two commits: at most one log leaf per interval, and\n"
        "one commit for all that arrived meanwhile (relay init writes 100;\n"
        "100-1000 in production; 0 commits at once, for tests and benchmarks)."
    ),
    "operator_token": (
        "Bearer token that authorises registering a tenant (one per mission).\n"
        "Keep this file readable by the relay's user only."
    ),
    "open_registration": "Anyone may register a tenant (demos and tests only).",
    "default_quota_cells": "Cells a tenant may hold unless registered with another quota.",
    "rendezvous": "Keep the public rendezvous tenant where missions pair by a short code.",
    "max_quota_cells": "Largest quota a tenant may be given.",
    "max_batch": "Most slots in one fetch or ack, and most cells in one batch deposit.",
    "body_limit": "Largest request body in bytes (batch bodies have their own limits).",
    "ip_rate": "Requests per second per client address, IPv6 per /64 (0: no limit).",
    "ip_burst": "Burst allowed per client address, IPv6 per /64.",
    "tenant_rate": "Requests per second per tenant (0: no limit).",
    "tenant_burst": "Burst allowed per tenant.",
    "rate_limit_buckets": "Most rate-limit buckets kept per scope (least recently used go first).",
    "trusted_proxies": (
        "Reverse proxies in front of the relay (addresses or CIDR networks, comma-separated,\n"
        'e.g. "127.0.0.1, ::1"): their X-Forwarded-For names the client for the per-address\n'
        "limits. Any other peer's header is ignored. Empty: the peer is the client."
    ),
    "tenant_cache_size": "Most tenant records cached in memory.",
    "max_concurrency": "Most requests served at once; more get 503.",
    "graceful_shutdown_seconds": "Seconds in-flight requests get to finish on shutdown.",
    "log_level": "critical, error, warning, info or debug.",
    "log_format": "plain, or json (one object per line).",
    "log_origin": (
        "Origin line of the log's checkpoints, e.g. relay.example.org/log.\n"
        "Empty: backchannel.relay/<key fingerprint prefix>. Never change it once clients know it."
    ),
    "witnesses": (
        "Witnesses that cosign the log's checkpoints (c2sp.org/tlog-witness):\n"
        "comma-separated '<URL prefix> <cosigner vkey> [<vkey> ...]' entries."
    ),
    "witness_interval_seconds": "How often the latest checkpoint goes to the witnesses.",
    "intake_pow_bits": (
        "Proof of work an intake request needs: leading zero bits of SHA-256\n"
        "(14: about 16,000 hashes, a tenth of a second in a browser)."
    ),
    "intake_queue_cap": (
        "Most intake requests one tenant holds that its mission has not fetched yet;\n"
        "more get 507 until the mission fetches."
    ),
    "intake_ip_rate": "Intake requests per second per client address, IPv6 per /64 (0: no limit).",
    "intake_ip_burst": "Intake burst allowed per client address, IPv6 per /64.",
    "intake_tenant_rate": "Intake requests per second per tenant (0: no limit).",
    "intake_tenant_burst": "Intake burst allowed per tenant.",
    "intake_rate": (
        "Intake requests per second for the whole relay (0: no limit): the most\n"
        "a flood at every mission together takes from the official rounds."
    ),
    "intake_burst": "Intake burst allowed for the whole relay.",
    "workers": (
        "Relay processes serving the port (SO_REUSEPORT) under one supervisor;\n"
        "more than 1 needs PostgreSQL. About one per core."
    ),
}

_FIELDS = {f.name: f for f in dataclasses.fields(rs.RelaySettings)}


def env_name(name: str) -> str:
    """The environment variable of a setting."""
    return rs.ENV_DATA_DIR if name == "data_dir" else rs.ENV_PREFIX + name.upper()


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if value is None:
        return '""'
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def template(chosen: Mapping[str, object] | None = None) -> str:
    """The commented TOML file: ``chosen`` settings set, every other one commented out."""
    chosen = dict(chosen or {})
    unknown = sorted(set(chosen) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown relay settings: {', '.join(unknown)}")
    defaults = rs.RelaySettings()
    lines = [
        "# Backchannel relay settings.",
        "#",
        "# Precedence, lowest first: the defaults shown here, this file, environment",
        f"# variables ({rs.ENV_PREFIX}<SETTING>, {rs.ENV_DATA_DIR} for data_dir), flags.",
        "# Check it with: backchannel relay check-config --config <this file>",
        "# A commented-out line shows the default, which applies.",
        "",
        "[relay]",
    ]
    for name in _FIELDS:
        lines.append("")
        lines.extend(f"# {part}" for part in DESCRIPTIONS[name].splitlines())
        lines.append(f"# Environment: {env_name(name)}")
        if name in chosen:
            lines.append(f"{name} = {_toml_value(chosen[name])}")
        else:
            lines.append(f"# {name} = {_toml_value(getattr(defaults, name))}")
    return "\n".join(lines) + "\n"


def write_new(path: Path, text: str, *, force: bool = False) -> None:
    """Write ``text`` to a new file readable by its owner only (it may hold a token)."""
    path = path.expanduser()
    if not path.parent.is_dir():
        raise ConfigError(f"the directory {path.parent} does not exist; create it first")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; pass --force to replace it") from None
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


#: Shorter operator tokens get a warning (one from :func:`new_operator_token` has 43).
MIN_OPERATOR_TOKEN = 32


def new_operator_token() -> str:
    """A fresh operator token: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


@dataclass
class Report:
    """What ``check-config`` found: problems, and where each value came from."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    settings: rs.RelaySettings | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        out = [f"error: {e}" for e in self.errors] + [f"warning: {w}" for w in self.warnings]
        if self.settings is not None:
            for name in _FIELDS:
                value = getattr(self.settings, name)
                if name in ("operator_token",) and value is not None:
                    value = "(set, hidden)"
                elif name == "db_url":
                    value = _hide_password(self.settings.store_url)
                out.append(f"{name} = {value}  [{self.sources.get(name, 'default')}]")
        return out


def _hide_password(url: str) -> str:
    if "://" not in url or "@" not in url.split("://", 1)[1].split("/", 1)[0]:
        return url
    scheme, rest = url.split("://", 1)
    userinfo, host = rest.split("@", 1)
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else url


def _suggest(name: str, known: list[str]) -> str:
    near = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {near[0]}?)" if near else ""


def check(
    flags: Mapping[str, object] | None = None,
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Report:
    """Resolve the settings as ``relay serve`` would, collecting every problem."""
    env = os.environ if env is None else env
    report = Report()
    raw: dict[str, object] = {}
    if config_file is None and env.get(rs.ENV_CONFIG):
        config_file = Path(env[rs.ENV_CONFIG])
    if config_file is not None:
        _read_file(config_file, raw, report)
    env_names = {env_name(n): n for n in _FIELDS}
    for var in sorted(env):
        if not var.startswith(rs.ENV_PREFIX) or var == rs.ENV_CONFIG:
            continue
        if var in env_names:
            raw[env_names[var]] = env[var]
            report.sources[env_names[var]] = f"environment {var}"
        else:
            report.errors.append(
                f"unknown environment variable {var}{_suggest(var, [*env_names, rs.ENV_CONFIG])}"
            )
    for name, value in (flags or {}).items():
        if value is not None:
            raw[name] = value
            report.sources[name] = "flag"
    values: dict[str, object] = {}
    bad_values = False
    for name, value in raw.items():
        try:
            values[name] = rs._coerce(name, value)
        except ConfigError as e:
            report.errors.append(f"{e} [{report.sources.get(name, 'default')}]")
            bad_values = True
    if bad_values:
        return report
    try:
        report.settings = rs.RelaySettings(**values)  # type: ignore[arg-type]
    except ConfigError as e:
        report.errors.append(str(e))
        return report
    _check_places(report.settings, report)
    return report


def _read_file(path: Path, raw: dict[str, object], report: Report) -> None:
    try:
        with path.expanduser().open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        report.errors.append(f"cannot read the settings file {path}: {e.strerror}")
        return
    except tomllib.TOMLDecodeError as e:
        report.errors.append(f"the settings file {path} is not valid TOML: {e}")
        return
    except UnicodeDecodeError as e:
        report.errors.append(f"the settings file {path} {rs.not_utf8(e)}")
        return
    table = data.get("relay", data)
    if not isinstance(table, dict):
        report.errors.append(f"{path}: [relay] must be a table")
        return
    outside = rs.outside_relay_table(data)
    if outside:
        report.errors.append(f"{path}: {outside}")
    for key, value in table.items():
        if key not in _FIELDS:
            report.errors.append(f"{path}: unknown setting {key}{_suggest(key, list(_FIELDS))}")
            continue
        raw[key] = value
        report.sources[key] = f"file {path}"
    mode = path.expanduser().stat().st_mode
    if "operator_token" in table and mode & 0o077:
        report.warnings.append(
            f"{path} holds the operator token and is readable by others "
            f"(mode {mode & 0o777:o}); chmod 600 it"
        )


def _check_places(settings: rs.RelaySettings, report: Report) -> None:
    """Problems ``serve`` would meet only at start-up: the store, directories and registration."""
    if _check_store_url(settings, report):
        _check_directories(settings, report)
        _check_database_file(settings.store_url, report)
    if settings.operator_token is None and not settings.open_registration:
        report.warnings.append(
            "no operator_token and registration closed: no tenant can be registered"
        )
    if settings.open_registration:
        report.warnings.append("open_registration: anyone may register a tenant (demos only)")
    if settings.operator_token is not None and len(settings.operator_token) < MIN_OPERATOR_TOKEN:
        # Guessable at the per-address rate: relay init writes 43 characters.
        report.warnings.append(
            f"operator_token is shorter than {MIN_OPERATOR_TOKEN} characters and could be "
            "guessed; `backchannel relay init` writes a random one of 43"
        )


#: What ``check-config`` and ``serve`` say of a relay that keeps nothing.
MEMORY_WARNING = (
    "the memory:// store keeps everything in the relay's memory: tenants, cells and the "
    "relay's key are gone when it stops (tests and demos only; give --db a file for a relay)"
)


def is_memory(url: str) -> bool:
    """Whether ``url`` is the store that keeps nothing past the process."""
    return url.partition("://")[0].lower() == "memory"


def _check_store_url(settings: rs.RelaySettings, report: Report) -> bool:
    """Whether ``serve`` could make its store from the URL; the warning of memory://."""
    from backchannel.store.factory import relay_store_from_url

    try:
        # The code that makes serve's store; it opens nothing and connects nowhere.
        relay_store_from_url(settings.store_url, cell_size=settings.cell_size)
    except ConfigError as e:  # never echoes the URL, which may hold a password
        report.errors.append(str(e))
        return False
    if is_memory(settings.store_url):
        report.warnings.append(MEMORY_WARNING)
    return True


def _check_directories(settings: rs.RelaySettings, report: Report) -> None:
    from backchannel.store.factory import sqlite_path

    if not settings.db_url:
        data_dir = settings.data_dir.expanduser()
        existing = data_dir
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing.exists() and not existing.is_dir():
            report.errors.append(f"the data directory {data_dir} is not a directory")
        elif not os.access(existing, os.W_OK):
            report.errors.append(f"the data directory {data_dir} cannot be written")
        return
    path = sqlite_path(settings.db_url)
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        report.errors.append(f"the relay database {path} is a directory")
    elif not os.path.isdir(directory):
        report.errors.append(f"the directory of the relay database, {directory}, does not exist")
    elif not os.access(directory, os.W_OK):
        report.errors.append(f"the directory of the relay database, {directory}, cannot be written")


def _check_database_file(url: str, report: Report) -> None:
    """Refuse an SQLite file that ``serve`` would refuse, reading it only.

    A file that does not exist is a new relay's. One that does is checked
    (``PRAGMA quick_check``: every page read once), then its schema: another
    application's database, or one a newer release wrote, stops ``serve`` too.
    """
    import sqlite3
    from urllib.parse import quote

    from backchannel.errors import StoreUnavailable
    from backchannel.store import _migrations
    from backchannel.store._sqlite_conn import check_ours, is_busy
    from backchannel.store.factory import sqlite_path

    path = sqlite_path(url)
    if path is None or not os.path.isfile(path):
        return
    path = os.path.abspath(path)
    where = f"the relay database at {path}"
    restore = "it was left untouched: restore it from a backup or point the relay at another file"
    # mode=ro: nothing is written to the file. A database at rest (no -wal or
    # -shm: its last relay closed it) is read immutable too, else SQLite would
    # leave a -wal and a -shm beside it, owned by whoever runs the check (root,
    # say), which the relay's own user then could not open.
    live = os.path.exists(path + "-wal") or os.path.exists(path + "-shm")
    uri = f"file:{quote(path)}?mode=ro" + ("" if live else "&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5)
    except sqlite3.Error as e:
        report.errors.append(
            f"{where} cannot be read ({_sqlite_reason(e)}); check its owner and mode"
        )
        return
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            report.errors.append(f"{where} is damaged ({'; '.join(problems)[:300]}); {restore}")
            return
        try:
            check_ours(conn)
        except StoreUnavailable:
            report.errors.append(
                f"{where} is not a relay database (an SQLite database of another "
                "application); point the relay at a new or a Backchannel database file"
            )
            return
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "schema_version" in tables:
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            known = len(_migrations.load("sqlite"))
            if int(row[0]) > known:
                report.errors.append(
                    f"{where} was written by a newer Backchannel (schema version {row[0]}, "
                    f"this relay knows {known}); upgrade the relay"
                )
    except sqlite3.Error as e:
        if is_busy(e):
            report.warnings.append(f"{where} was locked by another process and was not checked")
        elif (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_NOTADB:
            report.errors.append(
                f"{where} is not a relay database ({_sqlite_reason(e)}); {restore}"
            )
        else:
            report.errors.append(f"{where} is damaged ({_sqlite_reason(e)}); {restore}")
    finally:
        conn.close()


def _sqlite_reason(e: Exception) -> str:
    name = getattr(e, "sqlite_errorname", None) or type(e).__name__
    return f"{name}: {e}"
