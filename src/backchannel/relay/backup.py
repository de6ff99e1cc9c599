"""``relay backup`` and ``relay restore``: a directory that holds the whole relay.

A backup is a directory with ``manifest.json`` and either

* ``relay.db`` (SQLite, copied with SQLite's online backup API, so the relay
  keeps serving while it runs) and ``relay-key`` (the log's signing key,
  mode 0600), or
* ``relay.pgdump`` (PostgreSQL, ``pg_dump --format=custom``; the key is in the
  database).

A restore puts both back. Stop the relay first: a running relay keeps the log
head in memory and would go on from it; for SQLite the restore refuses while a
relay holds the database's lock (:mod:`.dblock`). What a restore does to
clients (a rewind, which they detect) is in ``docs/operations.md``.

Database passwords never reach a command line: the PostgreSQL connection is
handed to ``pg_dump``/``pg_restore`` in ``PG*`` environment variables.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from backchannel import __version__
from backchannel.crypto.signing import SigningKey
from backchannel.errors import ConfigError, StoreUnavailable
from backchannel.relay import dblock
from backchannel.relay.settings import RelaySettings
from backchannel.store._log_key import check_key_signs, read_key_file
from backchannel.store.factory import sqlite_path

FORMAT = "backchannel-relay-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "relay.db"
KEY_FILE = "relay-key"
PG_FILE = "relay.pgdump"

# libpq connection keywords and the environment variables that carry them.
_PG_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "options": "PGOPTIONS",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "passfile": "PGPASSFILE",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}


class BackupError(ConfigError):
    """A backup or restore that cannot be done; the message says why."""


def _kind(settings: RelaySettings) -> str:
    url = settings.store_url
    if sqlite_path(url) is not None:
        return "sqlite"
    if url.split("://", 1)[0].lower() in ("postgresql", "postgres"):
        return "postgresql"
    raise BackupError("only SQLite and PostgreSQL relays can be backed up")


def key_path(settings: RelaySettings) -> Path:
    """Where this relay keeps its signing key (SQLite stores only)."""
    if not settings.db_url:
        return settings.data_dir.expanduser() / KEY_FILE
    path = sqlite_path(settings.db_url)
    assert path is not None
    return Path(os.path.abspath(path)).parent / KEY_FILE


def _sqlite_schema_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    except sqlite3.DatabaseError:
        return 0
    return int(row[0])


def backup(settings: RelaySettings, out: Path) -> dict[str, object]:
    """Write a backup of the relay to the new directory ``out``; return its manifest."""
    kind = _kind(settings)
    out = out.expanduser()
    if out.exists():
        raise BackupError(f"{out} exists; a backup goes into a new directory")
    if not out.parent.is_dir():
        raise BackupError(f"the directory {out.parent} does not exist")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    try:
        if kind == "sqlite":
            extra = _backup_sqlite(settings, tmp)
        else:
            extra = _backup_postgres(settings, tmp)
        manifest: dict[str, object] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "store": kind,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "relay_version": __version__,
            **extra,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _fsync_dir(tmp)
        tmp.rename(out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _backup_sqlite(settings: RelaySettings, out: Path) -> dict[str, object]:
    path = sqlite_path(settings.store_url)
    assert path is not None
    if not os.path.isfile(path):
        raise BackupError(f"there is no relay database at {path}")
    key = key_path(settings)
    if not key.is_file():
        raise BackupError(f"there is no relay key at {key}; the backup would be useless without it")
    # The source is opened read-only: the backup never writes to the live database.
    src = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(out / SQLITE_FILE)
    try:
        src.backup(dst, pages=4096)
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the copy fails SQLite's integrity check: {check}")
        version = _sqlite_schema_version(dst)
        cells = dst.execute("SELECT count(*) FROM cells").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise BackupError(f"the relay database at {path} is damaged ({e})") from None
    finally:
        dst.close()
        src.close()
    _copy_private(key, out / KEY_FILE)
    return {"schema_version": version, "cells": int(cells)}


def _uri_path(path: str) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))


def _copy_private(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pg_environment(url: str) -> tuple[dict[str, str], str | None]:
    """The ``PG*`` variables for a PostgreSQL URL, and the schema its search_path names."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:  # psycopg's ProgrammingError; never echo the URL
        raise BackupError("the PostgreSQL URL cannot be parsed") from None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in params.items():
        if value is None:
            continue
        if key not in _PG_ENV:
            raise BackupError(f"the PostgreSQL URL parameter {key} is not supported by backups")
        env[_PG_ENV[key]] = str(value)
    schema = None
    options = str(params.get("options") or "")
    for part in options.split():
        if part.startswith("-csearch_path="):
            schema = part.split("=", 1)[1].split(",")[0].strip('"') or None
    return env, schema


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise BackupError(f"{cmd[0]} is not installed; install the PostgreSQL client tools")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {result.stderr.strip()[-2000:]}")


def _backup_postgres(settings: RelaySettings, out: Path) -> dict[str, object]:
    env, schema = pg_environment(settings.store_url)
    cmd = ["pg_dump", "--format=custom", "--no-owner", "--file", str(out / PG_FILE)]
    if schema:
        cmd += ["--schema", schema]
    _run(cmd, env, "pg_dump")
    os.chmod(out / PG_FILE, 0o600)  # it holds the signing key, as relay-key does
    return {"schema": schema}


def read_manifest(backup_dir: Path) -> dict[str, object]:
    path = backup_dir.expanduser() / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise BackupError(f"{backup_dir} is not a relay backup: {e.strerror} ({path})") from None
    except ValueError:
        raise BackupError(f"{path} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{backup_dir} is not a relay backup")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{backup_dir} has backup format {manifest.get('format_version')}; "
            f"this relay reads format {FORMAT_VERSION}"
        )
    return manifest


def restore(settings: RelaySettings, backup_dir: Path, *, force: bool = False) -> dict[str, object]:
    """Put the backup in ``backup_dir`` in place of this relay's database and key.

    Without ``force`` the target must be empty (no database file, no relay
    tables). The relay must be stopped.
    """
    manifest = read_manifest(backup_dir)
    kind = _kind(settings)
    if manifest["store"] != kind:
        raise BackupError(
            f"the backup is of a {manifest['store']} relay and this relay uses {kind}; "
            "restore into the same kind of database"
        )
    if kind == "sqlite":
        _restore_sqlite(settings, backup_dir.expanduser(), force)
    else:
        _restore_postgres(settings, backup_dir.expanduser(), force, manifest)
    return manifest


def _restore_sqlite(settings: RelaySettings, backup_dir: Path, force: bool) -> None:
    """Check the whole backup first, then put its database and key in place together.

    Under the database's lock (:mod:`.dblock`): a relay that serves holds it,
    and would go on from the log head it keeps in memory over the older file.
    The copy is made and checked beside the target, so a damaged backup
    leaves the relay's own database and key as they were.
    """
    path = sqlite_path(settings.store_url)
    assert path is not None
    source = backup_dir / SQLITE_FILE
    key_src = backup_dir / KEY_FILE
    if not source.is_file() or not key_src.is_file():
        raise BackupError(f"{backup_dir} lacks {SQLITE_FILE} or {KEY_FILE}")
    if os.path.exists(path) and not force:
        raise BackupError(
            f"a relay database exists at {path}; stop the relay and pass --force to replace it"
        )
    directory = Path(os.path.abspath(path)).parent
    if not settings.db_url:
        directory.mkdir(parents=True, exist_ok=True)
    elif not directory.is_dir():
        raise BackupError(f"the directory of the relay database, {directory}, does not exist")
    key_dst = key_path(settings)
    busy = f"a relay is serving {path}; stop it before restoring"
    with dblock.holding(path, busy):
        key = _backup_key(key_src)
        if key_dst.exists() and key_dst.read_bytes() != key_src.read_bytes() and not force:
            raise BackupError(
                f"another signing key is at {key_dst} (clients have pinned it); "
                "pass --force to replace it with the backup's"
            )
        tag = secrets.token_hex(6)
        tmp_db = directory / f".{Path(path).name}.restore-{tag}"
        tmp_key = key_dst.with_name(f".{key_dst.name}.restore-{tag}")
        try:
            _copy_checked(source, tmp_db, key, key_src)
            _copy_private(key_src, tmp_key)
            _drop_journal(path)
            os.replace(tmp_key, key_dst)
            os.replace(tmp_db, path)
            _fsync_dir(directory)
            if key_dst.parent != directory:
                _fsync_dir(key_dst.parent)
        finally:
            for leftover in (tmp_db, tmp_key):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()


def _backup_key(key_src: Path) -> SigningKey:
    try:
        return read_key_file(key_src)
    except StoreUnavailable:
        raise BackupError(f"the backup's signing key {key_src} is damaged") from None


def _copy_checked(source: Path, out: Path, key: SigningKey, key_src: Path) -> None:
    """Copy the backup's database to ``out`` and check it whole, and that ``key`` signed its log."""
    try:
        src = sqlite3.connect(f"file:{_uri_path(str(source))}?mode=ro", uri=True)
        dst = sqlite3.connect(out)
        try:
            src.backup(dst)
            check = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the backup's {SQLITE_FILE} is damaged: {check}")
            row = dst.execute("SELECT signed FROM log_head WHERE id = 1").fetchone()
        finally:
            dst.close()
            src.close()
    except sqlite3.DatabaseError as e:
        raise BackupError(f"the backup's {SQLITE_FILE} is damaged ({e})") from None
    try:
        check_key_signs(key, None if row is None or row[0] is None else bytes(row[0]), key_src)
    except StoreUnavailable:
        raise BackupError(
            f"the backup's {KEY_FILE} did not sign its {SQLITE_FILE}'s log: "
            "the two come from different relays"
        ) from None


def _drop_journal(path: str) -> None:
    """Remove the old database's write-ahead log, or SQLite would replay it over the copy."""
    if os.path.exists(path):
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(path)) as old:
            old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def _restore_postgres(
    settings: RelaySettings, backup_dir: Path, force: bool, manifest: dict[str, object]
) -> None:
    source = backup_dir / PG_FILE
    if not source.is_file():
        raise BackupError(f"{backup_dir} lacks {PG_FILE}")
    env, schema = pg_environment(settings.store_url)
    if schema != manifest.get("schema"):
        raise BackupError(
            f"the backup holds schema {manifest.get('schema')} and this relay uses {schema}; "
            "pg_restore puts a schema back under its own name"
        )
    if not force and _pg_has_relay(settings.store_url):
        raise BackupError(
            "the relay's tables exist in this database; stop the relay and pass --force "
            "to replace them"
        )
    # --clean drops what the dump recreates (the schema when the URL names one):
    # without --force, only when no relay tables were found there.
    cmd = ["pg_restore", "--no-owner", "--single-transaction", "--exit-on-error"]
    cmd += ["--clean", "--if-exists"]
    cmd.append(str(source))
    # pg_restore needs the database named on its command line (the URL stays out).
    cmd += ["--dbname", env.get("PGDATABASE", "postgres")]
    busy = "a relay is serving this PostgreSQL database; stop every relay on it before restoring"
    with dblock.holding_pg(settings.store_url, busy, shared=False):
        _run(cmd, env, "pg_restore")


def _pg_has_relay(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename = 'schema_version')"
            ).fetchone()
    except psycopg.Error as e:
        raise BackupError(f"cannot reach the PostgreSQL database: {type(e).__name__}") from None
    return bool(row and row[0])


__all__ = ["BackupError", "backup", "key_path", "read_manifest", "restore"]
