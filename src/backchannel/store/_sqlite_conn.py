"""The SQLite store's connections: pragmas, the schema, and refusing a foreign file.

Pragmas, and why each is safe
-----------------------------
``journal_mode=WAL``
    Commits append to the write-ahead log; readers keep reading the last
    committed state while the writer works, so fetches never wait for deposits.
    After a crash SQLite replays only complete, checksummed commits from the
    log, so a half-written transaction simply vanishes. WAL needs shared memory
    between connections: keep the database on a local filesystem, not NFS/SMB.
``synchronous=FULL``
    In WAL mode SQLite then ``fsync``\\ s the log at every commit. With the
    default ``NORMAL`` a power loss could undo the last commits, which would
    lose deposits we already acknowledged. Group commit pays for the ``fsync``.
``fullfsync=ON``
    On macOS a plain ``fsync`` does not flush the drive's cache; this makes
    SQLite use ``F_FULLFSYNC``. Ignored elsewhere.
``busy_timeout``
    Another process (a backup, a second relay, an admin tool) may hold the lock
    briefly; we wait up to this long, then report :class:`StoreUnavailable`
    rather than hang. Nothing is acknowledged in that case. Opening the file
    is retried for as long: while another process is switching a new file to
    WAL, or recovering its log, SQLite answers ``SQLITE_BUSY`` at once without
    waiting (seen when several relays first open the same new file).
``foreign_keys=ON``
    A cell can never belong to a tenant that does not exist.
``journal_size_limit``
    After a burst, the log file is truncated back to this size at checkpoints
    instead of keeping its peak size on disk. Only affects the file size.
``auto_vacuum=INCREMENTAL`` (new files only)
    Freed pages stay in the file for reuse, as without it, until expiry gives
    them back to the filesystem a step at a time (``PRAGMA incremental_vacuum``,
    :meth:`~backchannel.store.sqlite.SQLiteRelayStore.expire`); deposits and
    acknowledgements never shrink the file. It can only be chosen before the
    file holds a table (even switching to WAL writes the header, so it comes
    first); an older file keeps ``NONE`` until a one-time ``VACUUM``
    (docs/storage.md, "Space").
``max_page_count`` (only with ``max_db_bytes``)
    A hard ceiling on the database size. Reaching it behaves exactly like a full
    disk: the transaction is rolled back and nothing in it is acknowledged.
``query_only=ON`` (read connections)
    The read pool cannot write even by mistake.
"""

from __future__ import annotations

import sqlite3
import time

from backchannel.errors import StoreUnavailable
from backchannel.store import _migrations
from backchannel.store._sqlite_errors import translate

#: ``PRAGMA application_id`` of our database files ("BCHR").
APPLICATION_ID = 0x42434852
#: ``PRAGMA auto_vacuum`` of a file that gives free pages back on request.
AUTO_VACUUM_INCREMENTAL = 2
#: The writer connection's page cache, KiB (see where it is set).
WRITER_CACHE_KIB = 16 * 1024


def connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return conn


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def connect_writer(path: str, busy_timeout_ms: int, max_db_bytes: int | None) -> sqlite3.Connection:
    """Open the writer, retrying a lock held while another opener sets the file up."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    pause = 0.005
    while True:
        try:
            return _connect_writer_once(path, busy_timeout_ms, max_db_bytes)
        except sqlite3.Error as exc:
            if not is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _connect_writer_once(
    path: str, busy_timeout_ms: int, max_db_bytes: int | None
) -> sqlite3.Connection:
    conn = connect(path, busy_timeout_ms)
    try:
        # Only reads until the file is known to be ours: a damaged file or
        # another application's database is refused before we write to it
        # (even switching the journal mode rewrites the header).
        check_ours(conn)
        if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
            # A new file (or one that holds nothing yet): the only moment this
            # can be chosen, and it must precede the first write. Else a no-op.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise StoreUnavailable(
                "the relay database cannot use write-ahead logging here; "
                "move it to a local filesystem"
            )
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA fullfsync = ON")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_size_limit = 67108864")
        # The writer's page cache. Slots are random, so each insert lands at
        # a random place in the (tenant, slot) index, but every deposit also
        # writes a 4 KiB cell's pages that nobody reads back through this
        # connection, so a larger cache fills with cells, not the index.
        # Measured (docs/benchmarks.md, "The writer's page cache"): 16 MiB
        # deposits as fast as 64 MiB or faster at 10^4 and 10^6 stored cells,
        # and the relay holds 53 MiB less, the same at every size.
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        apply_migrations(conn)
        if max_db_bytes is not None:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            pages = max(1, max_db_bytes // page_size)
            conn.execute(f"PRAGMA max_page_count = {pages}")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_reader(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    try:
        conn = connect(path, busy_timeout_ms)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise translate(exc) from None
    return conn


def check_ours(conn: sqlite3.Connection) -> None:
    """Refuse a database that another application created (reads only)."""
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    if app_id not in (0, APPLICATION_ID) or (tables and "schema_version" not in tables):
        raise StoreUnavailable(
            "that file is an SQLite database of another application; it was left "
            "untouched: point the relay at a new or a Backchannel database file"
        )


def apply_migrations(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date, one transaction per migration."""
    migrations = _migrations.load("sqlite")
    conn.execute("BEGIN IMMEDIATE")
    try:
        check_ours(conn)  # again, now under the write lock
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "schema_version" not in tables:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(
                "CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = int(
                conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            )
            if current > len(migrations):
                raise StoreUnavailable(
                    "the relay database was written by a newer Backchannel; upgrade the relay"
                )
            if current < migration.version:
                for statement in _migrations.split_sqlite(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at)"
                    " VALUES (?, ?, CAST(strftime('%s', 'now') AS INTEGER))",
                    (migration.version, migration.name),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
