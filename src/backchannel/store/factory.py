"""Choose a relay store backend from a URL.

``memory://``
    :class:`~backchannel.store.memory.MemoryRelayStore` (tests; nothing persists).
``sqlite:///abs/path.db``, ``sqlite://relative/path.db``
    :class:`~backchannel.store.sqlite.SQLiteRelayStore`; a relative path is taken
    from the current directory.
``postgresql://...`` (or ``postgres://...``)
    :class:`~backchannel.store.postgres.PostgresRelayStore`; the URL is passed to
    libpq unchanged, so ``?options=-csearch_path%3Dschema`` selects a schema.

The store is returned unopened; call ``await store.open()``. Every backend
refuses cells whose length is not ``cell_size`` (pass the relay's setting when
it differs from the protocol default).
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

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
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise ConfigError("sqlite:// URLs take no query or fragment; give only the file path")
        # sqlite:///abs/path -> "/abs/path"; sqlite://relative/path -> "relative/path"
        path = unquote(rest)
        if not path or path.endswith("/"):
            raise ConfigError("give the SQLite database file, e.g. sqlite:///var/lib/relay.db")
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
