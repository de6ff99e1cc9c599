"""The client's vault: an encrypted local SQLite database for durable state.

The vault holds the outbox, inbox, channel state and journal. SQLite sees only
ciphertext and keyed hashes:

* every value is sealed with ChaCha20-Poly1305, with the table name and the
  record key as associated data, so a value moved to another row, table or
  queue position fails to open;
* every record key is stored as HMAC-SHA256 (under a subkey, over table and
  key) for lookup, and sealed as well so :meth:`Vault.items` can return it;
* queue entries (the outbox) are sealed with the queue name and their id.

The 32-byte vault key comes from the caller (who keeps it in the keystore
payload). Two subkeys are derived from it with HKDF-SHA256, salted with a
random vault id stored in the file, one for the AEAD and one for the HMAC, so
no key serves two algorithms. A sealed check value tells a wrong key from a
damaged record when the vault opens.

Durability: WAL journal, ``synchronous=FULL``; a write returns only once it is
on disk. Deleted records are overwritten (``secure_delete``) and the WAL is
truncated on close, so erased secrets do not linger in free pages.

Errors from ``sqlite3`` are translated here (see ``_translate``):

* the disk is full, the file is locked, unreadable or on a failing disk:
  :class:`StoreUnavailable`; nothing from the failed step was saved;
* the file is not a vault, is damaged, or a record fails authentication:
  :class:`CorruptKeystore` (the vault is part of the officer's sealed local
  state, and the remedy is the keystore's: restore from a backup);
* the key does not open the vault: :class:`KeystoreError` itself. The
  passphrase was right (the keystore opened), so it is not
  :class:`WrongPassphrase`; neither file need be damaged, so it is not
  :class:`CorruptKeystore`: the keystore and the vault come from different
  homes or backups.

The vault is synchronous and may be used from several threads (one at a time,
under a lock); the async client calls it right on its event loop (a round's
transactions are a few small statements, cheaper there than the hand-over to
a thread). A :meth:`Vault.transaction` must begin and end in the same thread.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backchannel.client.vault_cache import ReadCache
from backchannel.client.vault_sql import APPLICATION_ID
from backchannel.client.vault_sql import connect as _connect
from backchannel.client.vault_sql import damaged as _damaged
from backchannel.client.vault_sql import sql as _sql
from backchannel.client.vault_sql import strerror as _strerror
from backchannel.crypto import labels
from backchannel.errors import (
    ConfigError,
    CorruptKeystore,
    KeystoreError,
    StoreUnavailable,
)

__all__ = ["KEY_LEN", "Vault"]

T = TypeVar("T")
R = TypeVar("R")

KEY_LEN: Final = 32
#: Schema version, kept in SQLite's ``user_version``.
SCHEMA_VERSION: Final = 1
#: First byte of every sealed box.
BOX_VERSION: Final = 1
NONCE_LEN: Final = 12
VAULT_ID_LEN: Final = 16

# Domain-separation labels: each key and each kind of associated data has its own.
_LABEL_AEAD_KEY: Final = labels.VAULT_AEAD_KEY
_LABEL_MAC_KEY: Final = labels.VAULT_MAC_KEY
_LABEL_CHECK: Final = labels.VAULT_CHECK
_LABEL_VALUE: Final = labels.VAULT_VALUE
_LABEL_KEY: Final = labels.VAULT_KEY
_LABEL_QUEUE: Final = labels.VAULT_QUEUE

_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")

_SCHEMA: Final = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE records ("
    " tbl TEXT NOT NULL, key_mac BLOB NOT NULL, key_box BLOB NOT NULL,"
    " value_box BLOB NOT NULL, PRIMARY KEY (tbl, key_mac)) WITHOUT ROWID",
    "CREATE TABLE queue ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, q TEXT NOT NULL, box BLOB NOT NULL)",
    "CREATE INDEX queue_q_id ON queue (q, id)",
)


def _aad(label: bytes, *parts: bytes) -> bytes:
    """Length-prefixed, so no two different part lists give the same bytes."""
    return label + b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _queue_aad(q: bytes, entry_id: int) -> bytes:
    return _aad(_LABEL_QUEUE, q, struct.pack(">q", entry_id))


@functools.lru_cache(maxsize=256)
def _check_name(kind: str, name: str) -> bytes:
    # Remembered: table and queue names are the code's own, checked on every call.
    if not _NAME.fullmatch(name):
        raise ConfigError(f"invalid vault {kind} name; use 1-32 of a-z, 0-9, _")
    return name.encode("ascii")


class Vault:
    """An open vault. Make one with :meth:`create` or :meth:`open`; close it when done."""

    def __init__(
        self, conn: sqlite3.Connection, path: Path, aead: ChaCha20Poly1305, mac_key: bytes
    ) -> None:
        self._conn = conn
        self._path = path
        self._aead = aead
        self._mac_key = mac_key
        self._lock = threading.RLock()
        self._depth = 0  # transaction nesting; 0 = autocommit
        #: What this vault last read or wrote, opened (:mod:`.vault_cache`).
        self._cache = ReadCache()

    def __repr__(self) -> str:
        return f"Vault({str(self._path)!r})"

    # ------------------------------------------------------------ opening

    @classmethod
    def create(cls, path: Path, key: bytes) -> Vault:
        """Make a new, empty vault at ``path`` (which must not exist)."""
        _check_key(key)
        try:
            # Created here with mode 0600; SQLite gives -wal and -shm the same mode.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise ConfigError(
                f"a vault already exists at {path}; open it, or move it away first"
            ) from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the vault {path}: {_strerror(exc)}") from None
        vault_id = os.urandom(VAULT_ID_LEN)
        try:
            conn = _connect(path)
            try:
                with _sql():
                    conn.execute("BEGIN IMMEDIATE")
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    aead, mac_key = _subkeys(key, vault_id)
                    check = _seal(aead, b"", _aad(_LABEL_CHECK, vault_id))
                    conn.executemany(
                        "INSERT INTO meta (name, value) VALUES (?, ?)",
                        [("vault_id", vault_id), ("check", check)],
                    )
                    conn.execute("COMMIT")
            except BaseException:
                conn.close()
                raise
        except BaseException:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{path}{suffix}")
            raise
        return cls(conn, path, aead, mac_key)

    @classmethod
    def open(cls, path: Path, key: bytes) -> Vault:
        """Open the existing vault at ``path`` with ``key``."""
        _check_key(key)
        if not path.is_file():
            raise ConfigError(f"no vault at {path}: check --home, or restore it from a backup")
        conn = _connect(path, existing=True)
        try:
            with _sql():
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version != SCHEMA_VERSION:
                    raise _damaged(
                        f"has schema version {version}, which this program does not know "
                        "(damaged, or written by a newer Backchannel: upgrade)"
                    )
                meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            vault_id, check = meta.get("vault_id"), meta.get("check")
            if not isinstance(vault_id, bytes) or not isinstance(check, bytes):
                raise _damaged("is missing its header records")
            aead, mac_key = _subkeys(key, vault_id)
            try:
                _open_box(aead, check, _aad(_LABEL_CHECK, vault_id))
            except CorruptKeystore:
                raise KeystoreError(
                    "this vault does not open with the key in this keystore: they come from "
                    "different homes or backups; restore both from the same backup"
                ) from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, aead, mac_key)

    def close(self) -> None:
        """Checkpoint and truncate the WAL, then close. Safe to call twice."""
        with self._lock:
            if self._depth:
                raise ConfigError("the vault cannot be closed inside a transaction")
            self._cache.forget()
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[None]:
        """Commit every write inside the block together, or none of them.

        Nested blocks are savepoints: an exception leaving an inner block undoes
        only its writes. ``durable=False`` (an outer block only) commits without
        waiting for the disk: the writes survive the process dying at once, and
        a loss of power only until the next durable commit, whose sync carries
        them too (the WAL is written in order). Only for writes the device
        makes again, the same, if they are lost (what a deposit's answer
        records: the same cells go again, and the relay answers the same).
        """
        with self._lock:
            outer = self._depth == 0
            relaxed = outer and not durable
            if relaxed:
                with _sql():
                    self._conn.execute("PRAGMA synchronous = NORMAL")
            try:
                with _sql():
                    self._conn.execute("BEGIN IMMEDIATE" if outer else "SAVEPOINT inner")
                    if outer:
                        # What another connection committed before our BEGIN; none
                        # can commit until our COMMIT, so reads inside need not ask.
                        self._check_cache()
                self._depth += 1
                try:
                    yield
                except BaseException:
                    self._depth -= 1
                    self._undo(outer)
                    raise
                self._depth -= 1
                try:
                    with _sql():
                        self._conn.execute("COMMIT" if outer else "RELEASE inner")
                except BaseException:
                    self._undo(outer)
                    raise
            finally:
                if relaxed:  # every later commit waits for the disk again
                    with _sql():
                        self._conn.execute("PRAGMA synchronous = FULL")

    def _undo(self, outer: bool) -> None:
        self._cache.forget()
        # SQLite may already have rolled the transaction back (disk full, I/O error).
        if not self._conn.in_transaction:
            return
        with contextlib.suppress(sqlite3.Error):
            if outer:
                self._conn.execute("ROLLBACK")
            else:
                self._conn.execute("ROLLBACK TO inner")
                self._conn.execute("RELEASE inner")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self.transaction(), _sql():
            yield self._conn

    @contextlib.contextmanager
    def _write_one(self) -> Iterator[sqlite3.Connection]:
        """For one statement: inside a transaction it needs no savepoint of its
        own, since SQLite undoes a statement that fails (a round makes thousands)."""
        with self._lock:
            if self._depth == 0:
                with self._write() as conn:
                    yield conn
            else:
                with _sql():
                    yield self._conn

    # ------------------------------------------------------------ read cache

    def _check_cache(self) -> None:
        """Drop the cache if another connection has committed since it was filled.

        Called under the lock, before each read outside a transaction and once
        when a transaction begins (inside one, no other connection commits).
        """
        self._cache.check(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _check_cache_outside(self) -> None:
        if self._depth == 0:
            self._check_cache()

    def decoded(
        self, table: str, key: bytes, raw: bytes, kind: T, decode: Callable[[T, bytes], R]
    ) -> R:
        """``decode(kind, raw)`` for ``raw``, the value just read under ``key``;
        kept until that record changes, so ``decode`` must be pure and what it
        returns immutable. A record written or deleted drops it, as does
        everything that drops the read cache."""
        with self._lock:
            return self._cache.decoded(table, key, raw, kind, decode)

    def generation(self, *tables: str) -> tuple[int, ...]:
        """A value equal to an earlier one only if none of ``tables`` changed
        in between, by this connection or another: what a view computed from
        those tables is kept against (a desk that polls reads nothing again
        until something it shows moved)."""
        for table in tables:
            _check_name("table", table)
        with self._lock:
            with _sql():
                self._check_cache_outside()
            return self._cache.generation(tables)

    # ------------------------------------------------------------ records

    def _key_mac(self, tbl: bytes, key: bytes) -> bytes:
        mac = hmac.HMAC(self._mac_key, hashes.SHA256())
        mac.update(_aad(b"", tbl, key))
        return mac.finalize()

    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` in ``table``, replacing any earlier value."""
        tbl = _check_name("table", table)
        key_mac = self._key_mac(tbl, key)
        key_box = _seal(self._aead, key, _aad(_LABEL_KEY, tbl, key_mac))
        value_box = _seal(self._aead, value, _aad(_LABEL_VALUE, tbl, key))
        with self._write_one() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO records (tbl, key_mac, key_box, value_box)"
                " VALUES (?, ?, ?, ?)",
                (table, key_mac, key_box, value_box),
            )
            self._cache.wrote(table)
            self._cache.remember(table, key, value)

    def get(self, table: str, key: bytes) -> bytes | None:
        """The value under ``key`` in ``table``, or None."""
        tbl = _check_name("table", table)
        with self._lock:
            with _sql():
                self._check_cache_outside()
                if (table, key) in self._cache.records:
                    return self._cache.records[(table, key)]
                row = self._conn.execute(
                    "SELECT value_box FROM records WHERE tbl = ? AND key_mac = ?",
                    (table, self._key_mac(tbl, key)),
                ).fetchone()
            value = (
                None if row is None else _open_box(self._aead, row[0], _aad(_LABEL_VALUE, tbl, key))
            )
            self._cache.remember(table, key, value)
            return value

    def delete(self, table: str, key: bytes) -> bool:
        """Remove ``key`` from ``table``; return whether it was there."""
        tbl = _check_name("table", table)
        with self._write_one() as conn:
            cursor = conn.execute(
                "DELETE FROM records WHERE tbl = ? AND key_mac = ?",
                (table, self._key_mac(tbl, key)),
            )
            self._cache.wrote(table)
            self._cache.remember(table, key, None)
        return cursor.rowcount > 0

    def keys(self, table: str) -> list[bytes]:
        """Every key of ``table``, sorted (the values stay sealed unless
        :meth:`items` already holds the table)."""
        with self._lock:
            with _sql():
                self._check_cache_outside()
            rows = self._cache.tables.get(table)
            if rows is not None:
                return [key for key, _ in rows]
        return [key for key, _ in self._rows(table, values=False)]

    def items(self, table: str) -> list[tuple[bytes, bytes]]:
        """Every (key, value) of ``table``, sorted by key."""
        with self._lock:
            with _sql():
                self._check_cache_outside()
            if table in self._cache.tables:
                return list(self._cache.tables[table])
            rows = self._rows(table, values=True)
            self._cache.keep_table(table, rows)
            return rows

    def _rows(self, table: str, values: bool) -> list[tuple[bytes, bytes]]:
        tbl = _check_name("table", table)
        with self._lock, _sql():
            rows = self._conn.execute(
                "SELECT key_mac, key_box, value_box FROM records WHERE tbl = ?", (table,)
            ).fetchall()
        result = []
        for key_mac, key_box, value_box in rows:
            key = _open_box(self._aead, key_box, _aad(_LABEL_KEY, tbl, key_mac))
            if not constant_time.bytes_eq(self._key_mac(tbl, key), key_mac):
                raise _damaged("has a record that was altered")
            value = (
                _open_box(self._aead, value_box, _aad(_LABEL_VALUE, tbl, key)) if values else b""
            )
            result.append((key, value))
        result.sort()
        return result

    # ------------------------------------------------------------ queues (the outbox)

    def append(self, queue: str, value: bytes) -> int:
        """Add ``value`` at the end of ``queue``; return its id once it is on disk.

        Ids grow and are never reused, even after :meth:`mark_done`.
        """
        q = _check_name("queue", queue)
        with self._write() as conn:
            # The id is part of the associated data, so the row is made first.
            entry_id = conn.execute(
                "INSERT INTO queue (q, box) VALUES (?, x'')", (queue,)
            ).lastrowid
            assert entry_id is not None  # always set after an INSERT
            box = _seal(self._aead, value, _queue_aad(q, entry_id))
            conn.execute("UPDATE queue SET box = ? WHERE id = ?", (box, entry_id))
            self._cache.appended(queue, entry_id, value)
        return entry_id

    def pending(self, queue: str) -> list[tuple[int, bytes]]:
        """Entries of ``queue`` not yet marked done, oldest first."""
        q = _check_name("queue", queue)
        with self._lock:
            with _sql():
                self._check_cache_outside()
                if queue in self._cache.queues:
                    return list(self._cache.queues[queue])
                rows = self._conn.execute(
                    "SELECT id, box FROM queue WHERE q = ? ORDER BY id", (queue,)
                ).fetchall()
            entries = [
                (entry_id, _open_box(self._aead, box, _queue_aad(q, entry_id)))
                for entry_id, box in rows
            ]
            self._cache.keep_queue(queue, entries)
            return entries

    def pending_decoded(
        self, queue: str, kind: T, decode: Callable[[T, bytes], R]
    ) -> list[tuple[int, R]]:
        """:meth:`pending`, each entry passed through ``decode`` once (as :meth:`decoded`)."""
        entries = self.pending(queue)
        with self._lock:
            return [
                (entry_id, self._cache.decoded_entry(queue, entry_id, raw, kind, decode))
                for entry_id, raw in entries
            ]

    def mark_done(self, queue: str, entry_id: int) -> bool:
        """Remove an entry; return whether it was there (marking twice is harmless)."""
        _check_name("queue", queue)
        with self._write_one() as conn:
            cursor = conn.execute("DELETE FROM queue WHERE q = ? AND id = ?", (queue, entry_id))
            self._cache.done(queue, entry_id)
        return cursor.rowcount > 0


# ---------------------------------------------------------------- helpers


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_LEN:
        raise ConfigError(f"the vault key must be {KEY_LEN} bytes")


def _subkeys(key: bytes, vault_id: bytes) -> tuple[ChaCha20Poly1305, bytes]:
    def derive(label: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=vault_id, info=label).derive(key)

    return ChaCha20Poly1305(derive(_LABEL_AEAD_KEY)), derive(_LABEL_MAC_KEY)


def _seal(aead: ChaCha20Poly1305, plaintext: bytes, aad: bytes) -> bytes:
    # Random 96-bit nonces: fine far beyond a client's lifetime of writes
    # (collision chance about n^2 / 2^97 for n writes).
    nonce = os.urandom(NONCE_LEN)
    head = bytes([BOX_VERSION]) + nonce
    return head + aead.encrypt(nonce, plaintext, head + aad)


def _open_box(aead: ChaCha20Poly1305, box: object, aad: bytes) -> bytes:
    if not isinstance(box, bytes) or len(box) < 1 + NONCE_LEN + 16 or box[0] != BOX_VERSION:
        raise _damaged("has a damaged record")
    head, nonce = box[: 1 + NONCE_LEN], box[1 : 1 + NONCE_LEN]
    try:
        return aead.decrypt(nonce, box[1 + NONCE_LEN :], head + aad)
    except InvalidTag:
        raise _damaged("has a record that was altered or moved") from None
