"""The relay's command line: ``serve``, ``init``, ``check-config``, ``key``, ``backup``,
``restore``.

The Typer app lives here, inside the relay package, so that
``python -m backchannel.relay`` runs it without the relay importing
``backchannel.cli`` (an import-linter contract forbids that);
``backchannel.cli.relay_cmd`` re-exports it for ``backchannel relay ...``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from typer._completion_classes import completion_init

from backchannel.errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from backchannel.relay.settings import RelaySettings

relay_app = typer.Typer(help="Run a Backchannel relay.", no_args_is_help=True)

# Shell completion (docs/operations.md): Typer registers its bash, zsh, fish and
# PowerShell scripts only for apps that add --install-completion, which neither
# command line does; registering them here makes `_BACKCHANNEL_COMPLETE=source_bash
# backchannel` (and the other shells) work for both. It only fills a table.
completion_init()


@relay_app.callback()
def _relay() -> None:
    """Run a Backchannel relay."""


@relay_app.command()
def serve(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="SQLite database file (relay.db), or a sqlite:///<path> or postgresql://... URL",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file", dir_okay=False)
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the embedded database lives")
    ] = None,
    open_registration: Annotated[
        bool | None,
        typer.Option(
            "--open-registration/--closed-registration",
            help="Let anyone register a tenant (demos only)",
        ),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="plain, or json (one object per line)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Relay processes on the port (needs PostgreSQL for more than 1)"),
    ] = None,
) -> None:
    """Serve the relay until interrupted; in-flight deposits finish before it exits."""
    from backchannel.relay.settings import resolve_settings

    try:
        settings = resolve_settings(
            {
                "db_url": db,
                "host": host,
                "port": port,
                "data_dir": data_dir,
                "open_registration": open_registration,
                "log_format": log_format,
                "workers": workers,
            },
            config_file=config,
        )
        _prepare_place(settings)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    _warn_if_memory(settings)
    try:
        _run(settings)
    # An unknown URL scheme, found when the store is made; another relay on the
    # file; a database that cannot be opened, or whose log the key did not sign.
    except (ConfigError, StoreUnavailable) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _run(settings: RelaySettings) -> None:
    from backchannel.relay.server import serve as run

    run(settings)


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


_ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML settings file (else $BACKCHANNEL_RELAY_CONFIG)",
        dir_okay=False,
    ),
]
_DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLite database file, or a sqlite:/// or postgresql:// URL"),
]
_DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the embedded database lives")
]


@relay_app.command()
def init(
    path: Annotated[Path, typer.Argument(help="The settings file to write", dir_okay=False)],
    db: _DbOption = None,
    data_dir: _DataDirOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    token: Annotated[
        bool,
        typer.Option(
            "--operator-token/--no-operator-token",
            help="Write a fresh random operator token into the file",
        ),
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file")] = False,
    log_interval_ms: Annotated[
        int | None,
        typer.Option(
            "--log-interval-ms",
            help="Least milliseconds between two commits (default 100, for production;"
            " 0 commits each deposit at once)",
        ),
    ] = None,
) -> None:
    """Write a commented TOML settings file (mode 0600) with every setting and its default.

    The file paces commits for production (--log-interval-ms): one commit,
    and one log leaf, for all the deposits of an interval.
    """
    from backchannel.relay import config as cfg
    from backchannel.relay.settings import PRODUCTION_LOG_INTERVAL_MS, resolve_settings

    chosen: dict[str, object] = {
        k: v
        for k, v in {"db_url": db, "data_dir": data_dir, "host": host, "port": port}.items()
        if v is not None
    }
    chosen["log_interval_ms"] = (
        PRODUCTION_LOG_INTERVAL_MS if log_interval_ms is None else log_interval_ms
    )
    if "data_dir" in chosen:
        chosen["data_dir"] = str(Path(str(chosen["data_dir"])).expanduser().absolute())
    if "db_url" in chosen:
        try:
            chosen["db_url"] = _store_url(str(chosen["db_url"]))
        except ConfigError as e:
            _fail(str(e))
    if token:
        chosen["operator_token"] = cfg.new_operator_token()
    try:
        resolve_settings(chosen, env={})  # the values are checked before anything is written
        cfg.write_new(path, cfg.template(chosen), force=force)
    except ConfigError as e:
        _fail(str(e))
    typer.echo(f"wrote {path}" + (" (with a new operator token)" if token else ""))
    typer.echo(f"check it with: backchannel relay check-config --config {shlex.quote(str(path))}")


def _store_url(value: str) -> str:
    from backchannel.relay.settings import store_url_from

    return store_url_from(value)


@relay_app.command("check-config")
def check_config(
    config: _ConfigOption = None,
    db: _DbOption = None,
    data_dir: _DataDirOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print problems only")] = False,
) -> None:
    """Check the settings as `serve` would resolve them; print each value and its source.

    Exit status 0 when the relay would start with them, 1 otherwise.
    """
    from backchannel.relay.config import check

    report = check({"db_url": db, "data_dir": data_dir}, config_file=config)
    for line in report.lines():
        if quiet and not line.startswith(("error:", "warning:")):
            continue
        typer.echo(line, err=line.startswith(("error:", "warning:")))
    if not report.ok:
        raise typer.Exit(1)
    if not quiet:
        typer.echo("ok: the relay would start with these settings")


def _settings_for(config: Path | None, db: str | None, data_dir: Path | None) -> RelaySettings:
    from backchannel.relay.settings import resolve_settings

    try:
        return resolve_settings({"db_url": db, "data_dir": data_dir}, config_file=config)
    except ConfigError as e:
        _fail(str(e))


@relay_app.command()
def backup(
    out: Annotated[Path, typer.Argument(help="A new directory to hold the backup")],
    config: _ConfigOption = None,
    db: _DbOption = None,
    data_dir: _DataDirOption = None,
) -> None:
    """Back up the relay's database and signing key while it runs.

    SQLite: the online backup API (the relay keeps serving). PostgreSQL: pg_dump.
    """
    from backchannel.relay import backup as bk

    settings = _settings_for(config, db, data_dir)
    try:
        manifest = bk.backup(settings, out)
    except ConfigError as e:
        _fail(str(e))
    typer.echo(f"backed up the {manifest['store']} relay into {out}")


@relay_app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="A directory written by relay backup")],
    config: _ConfigOption = None,
    db: _DbOption = None,
    data_dir: _DataDirOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing database (stop the relay first)")
    ] = False,
) -> None:
    """Put a backup in place of the relay's database and key. Stop the relay first.

    Clients see a relay restored to an older state as a rewind and raise an
    alarm; see docs/operations.md.
    """
    from backchannel.relay import backup as bk

    settings = _settings_for(config, db, data_dir)
    try:
        manifest = bk.restore(settings, source, force=force)
    except ConfigError as e:
        _fail(str(e))
    typer.echo(
        f"restored the relay as of {manifest['created']}; clients will report a rewind "
        "until their missions deposit again"
    )


@relay_app.command()
def key(
    config: _ConfigOption = None,
    db: _DbOption = None,
    data_dir: _DataDirOption = None,
) -> None:
    """Print the fingerprint of the relay's log key (read it out to missions that name
    this relay: a mission card or a mission's fallback relay states it).

    Opens the database as `serve` would, and creates the key if the relay never ran.
    """
    import asyncio

    from backchannel.protocol.misbehaviour import relay_key_fingerprint, relay_key_from_bytes
    from backchannel.relay.config import is_memory
    from backchannel.store.factory import relay_store_from_url

    settings = _settings_for(config, db, data_dir)
    key_path = None if settings.db_url else settings.data_dir.expanduser() / "relay-key"
    try:
        _prepare_place(settings)
    except ConfigError as e:
        _fail(str(e))
    key_file, db_file = _sqlite_files(settings, key_path)
    had_key, had_db = key_file is None or key_file.exists(), db_file is None or db_file.exists()

    async def read() -> bytes:
        store = relay_store_from_url(
            settings.store_url, cell_size=settings.cell_size, key_path=key_path
        )
        await store.open()
        try:
            return store.log_public_key()
        finally:
            await store.close()

    try:
        raw = asyncio.run(read())
    except (ConfigError, StoreUnavailable) as e:
        _fail(str(e))
    # A mistyped --db or --data-dir makes a new relay: the fingerprint below is
    # then not the one to read out to the missions.
    check = "if you meant an existing relay, check --db and --data-dir"
    if not had_key:
        also = "" if had_db else f" (and a new, empty database at {db_file})"
        typer.echo(
            f"warning: this relay had never run: a new relay key was just created in "
            f"{key_file}{also}; {check}",
            err=True,
        )
    elif not had_db:
        typer.echo(
            f"warning: there was no relay database at {db_file}: a new, empty one was just "
            f"created; {check}",
            err=True,
        )
    if is_memory(settings.store_url):
        typer.echo(
            "warning: the memory:// store keeps no key: this one was made for this command "
            "alone and no relay serves it",
            err=True,
        )
    typer.echo(relay_key_fingerprint(relay_key_from_bytes(raw)).hex())


def _prepare_place(settings: RelaySettings) -> None:
    """Create the data directory, or check the directory of ``--db``, as ``serve`` needs."""
    if settings.db_url:
        _check_database_file(settings.db_url)
        return
    data_dir = settings.data_dir.expanduser()
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"the data directory {data_dir} is not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the data directory {data_dir}: {e.strerror}") from None


def _sqlite_files(
    settings: RelaySettings, key_path: Path | None
) -> tuple[Path | None, Path | None]:
    """The key file and the database file of an SQLite relay; None, None for other stores."""
    from backchannel.store.factory import sqlite_path

    path = sqlite_path(settings.store_url)
    if path is None:
        return None, None
    db_file = Path(os.path.abspath(path))
    # The SQLite store keeps its key beside the database unless told otherwise.
    key_file = key_path.absolute() if key_path is not None else db_file.parent / "relay-key"
    return key_file, db_file


def _warn_if_memory(settings: RelaySettings) -> None:
    from backchannel.relay.config import MEMORY_WARNING, is_memory

    if is_memory(settings.store_url):
        typer.echo(f"warning: {MEMORY_WARNING}", err=True)


def _check_database_file(db_url: str) -> None:
    """Refuse, in one line, an SQLite database given where no file can be made.

    The data directory is created when missing; the directory of a database
    named by ``--db`` is not (it may be a typo), so it must exist.
    """
    from backchannel.store.factory import sqlite_path

    path = sqlite_path(db_url)
    if path is None:
        return
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise ConfigError(
            f"the relay database {path} is a directory; give a file in it, "
            f"e.g. --db {shlex.quote(os.path.join(path, 'relay.db'))}"
        )
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ConfigError(
            f"the directory of the relay database, {directory}, does not exist; "
            f"create it (mkdir -p {shlex.quote(directory)}) "
            "or give --db a file in an existing directory"
        )
