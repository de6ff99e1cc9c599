"""A witness's durable state: its keys, the logs it follows, the latest head of each.

One directory holds ``witness.key`` (mode 0600: a version byte, the Ed25519
seed, the ML-DSA-44 seed) and ``witness.db`` (SQLite): the logs it trusts
(origin and verifier key), the latest checkpoint it cosigned for each, and the
signed checkpoints it refused for inconsistency, kept as evidence against the
log.

The check of a request's old size and the write of the new head happen in one
``BEGIN IMMEDIATE`` transaction (c2sp.org/tlog-witness asks for that, so two
concurrent requests can never roll a head back), and the head is committed
(``synchronous=FULL``) before any cosignature leaves.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from backchannel.crypto.notesig import SEED_LEN, Ed25519NoteKey, MLDSA44NoteKey
from backchannel.errors import ConfigError
from backchannel.protocol.merkle import EMPTY_ROOT
from backchannel.protocol.note import TYPE_ED25519, Verifier

KEY_FILE = "witness.key"
DB_FILE = "witness.db"
_KEY_VERSION = 1
_KEY_LEN = 1 + 2 * SEED_LEN

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    vkey TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    root BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    request BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class WitnessKeys:
    ed25519: Ed25519NoteKey
    mldsa44: MLDSA44NoteKey


@dataclass(frozen=True, slots=True)
class LogHead:
    origin: str
    verifier: Verifier
    size: int
    root: bytes


def create_keys(directory: Path) -> WitnessKeys:
    """Write a new key file (refusing to replace one) and return the keys."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KEY_FILE
    seeds = secrets.token_bytes(SEED_LEN), secrets.token_bytes(SEED_LEN)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists: this directory already holds a witness") from None
    try:
        os.write(fd, bytes([_KEY_VERSION]) + seeds[0] + seeds[1])
        os.fsync(fd)
    finally:
        os.close(fd)
    return WitnessKeys(Ed25519NoteKey(seeds[0]), MLDSA44NoteKey(seeds[1]))


def load_keys(directory: Path) -> WitnessKeys:
    path = directory / KEY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no witness in {directory}: run `backchannel witness init`") from None
    if len(raw) != _KEY_LEN or raw[0] != _KEY_VERSION:
        raise ConfigError(f"{path} is damaged; restore it from a backup")
    return WitnessKeys(Ed25519NoteKey(raw[1 : 1 + SEED_LEN]), MLDSA44NoteKey(raw[1 + SEED_LEN :]))


class WitnessState:
    """The SQLite file of one witness. Used from one thread at a time."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / DB_FILE
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def name(self) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'name'").fetchone()
        return None if row is None else str(row[0])

    def set_name(self, name: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('name', ?)", (name,))

    def add_log(self, vkey: str) -> Verifier:
        """Follow the log whose checkpoints ``vkey`` signs (its origin is the key's name)."""
        verifier = Verifier.from_vkey(vkey)
        if verifier.sig_type != TYPE_ED25519:
            raise ConfigError("a log's checkpoint key is an Ed25519 note key (type 0x01)")
        with self._tx() as db:
            row = db.execute("SELECT vkey FROM logs WHERE origin = ?", (verifier.name,)).fetchone()
            if row is not None and row[0] != vkey:
                raise ConfigError(f"already following {verifier.name} under another key")
            db.execute(
                "INSERT OR IGNORE INTO logs (origin, vkey, size, root) VALUES (?, ?, 0, ?)",
                (verifier.name, vkey, EMPTY_ROOT),
            )
        return verifier

    def logs(self) -> list[LogHead]:
        rows = self._db.execute("SELECT origin, vkey, size, root FROM logs ORDER BY origin")
        return [LogHead(o, Verifier.from_vkey(v), int(s), bytes(r)) for o, v, s, r in rows]

    def log(self, origin: str) -> LogHead | None:
        row = self._db.execute(
            "SELECT origin, vkey, size, root FROM logs WHERE origin = ?", (origin,)
        ).fetchone()
        if row is None:
            return None
        return LogHead(row[0], Verifier.from_vkey(row[1]), int(row[2]), bytes(row[3]))

    def advance(self, origin: str, decide: Callable[[LogHead], tuple[int, bytes]]) -> None:
        """Store the head ``decide`` returns for the log, in one write transaction.

        ``decide`` sees the stored head and returns the new ``(size, root)``, or
        raises to leave it as it was: the read and the write see one snapshot.
        """
        with self._tx() as db:
            row = db.execute(
                "SELECT origin, vkey, size, root FROM logs WHERE origin = ?", (origin,)
            ).fetchone()
            if row is None:
                raise LookupError(origin)
            head = LogHead(row[0], Verifier.from_vkey(row[1]), int(row[2]), bytes(row[3]))
            size, root = decide(head)
            db.execute("UPDATE logs SET size = ?, root = ? WHERE origin = ?", (size, root, origin))

    def record_evidence(self, origin: str, now: int, reason: str, request: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO evidence (origin, received_at, reason, request) VALUES (?, ?, ?, ?)",
                (origin, now, reason, request),
            )

    def evidence(self) -> list[tuple[str, int, str, bytes]]:
        rows = self._db.execute(
            "SELECT origin, received_at, reason, request FROM evidence ORDER BY id"
        )
        return [(str(o), int(t), str(r), bytes(b)) for o, t, r, b in rows]
