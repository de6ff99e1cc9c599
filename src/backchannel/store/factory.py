"""Choose a relay store backend from a URL.

``memory://``
    :class:`~backchannel.store.memory.MemoryRelayStore` (tests; nothing persists).
``sqlite:///abs/path.db``, ``sqlite://relative/path.db``
    :class:`~backchannel.store.sqlite.SQLiteRelayStore`; a relative path is taken
    from the current directory. The path is percent-decoded: :func:`sqlite_url`
    makes the URL of any file path.
``postgresql://...`` (or ``postgres://...``)
    :class:`~backchannel.store.postgres.PostgresRelayStore`; the URL is passed to
    libpq unchanged, so ``?options=-csearch_path%3Dschema`` selects a schema.

The store is returned unopened; call ``await store.open()``. Every backend
refuses cells whose length is not ``cell_size`` (pass the relay's setting when
it differs from the protocol default).
"""

from __future__ import annotations

import os
from urllib.parse import quote, unquote, urlsplit

from backchannel.errors import ConfigError
from backchannel.protocol.constants import CELL_SIZE
from backchannel.store.relay_store import RelayStore


def relay_store_from_url(
    url: str,
    *,
    cell_size: int = CELL_SIZE,
    key_path: str | os.PathLike[str] | None = None,
    log_interval: float = 0.0,
) -> RelayStore:
    """A store for ``url``. Raises :class:`ConfigError` for an unknown or malformed URL.

    ``key_path`` is the SQLite store's signing key file (default: ``relay-key``
    beside the database); the memory store makes a key per process, and
    PostgreSQL keeps the key in the database. ``log_interval`` (seconds) paces
    the durable stores' commits (at most one log leaf per interval).
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError("a store URL looks like memory://, sqlite:///path.db or postgresql://...")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme == "memory":
        if rest.strip("/"):
            raise ConfigError("memory:// takes no path")
        from backchannel.store.memory import MemoryRelayStore

        return MemoryRelayStore(cell_size=cell_size)
    if scheme == "sqlite":
        path = _sqlite_file(url)
        from backchannel.store.sqlite import SQLiteRelayStore

        return SQLiteRelayStore(
            path, cell_size=cell_size, key_path=key_path, log_interval=log_interval
        )
    if scheme in ("postgresql", "postgres"):
        from backchannel.store.postgres import PostgresRelayStore

        return PostgresRelayStore(url, cell_size=cell_size, log_interval=log_interval)
    # Never echo the URL: it may carry a database password.
    raise ConfigError(
        "unknown store URL scheme; use memory://, sqlite:///path.db or postgresql://..."
    )


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The ``sqlite:///`` URL of a database file: the path made absolute and percent-encoded.

    Encoding keeps a ``%``, ``?`` or ``#`` in a file name part of the path.
    """
    absolute = os.path.abspath(os.path.expanduser(os.fspath(path)))
    return "sqlite://" + quote(absolute)  # sqlite:// + "/abs/path" gives sqlite:///abs/path


def sqlite_path(url: str) -> str | None:
    """The database file a ``sqlite://`` URL names; None for any other scheme.

    Raises :class:`ConfigError` when a ``sqlite://`` URL names no file or carries
    a query or fragment.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() != "sqlite":
        return None
    return _sqlite_file(url)


def _sqlite_file(url: str) -> str:
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigError("sqlite:// URLs take no query or fragment; give only the file path")
    # sqlite:///abs/path -> "/abs/path"; sqlite://relative/path -> "relative/path"
    path = unquote(url.split("://", 1)[1])
    if not path or path.endswith("/"):
        raise ConfigError("give the SQLite database file, e.g. sqlite:///var/lib/relay.db")
    return path
