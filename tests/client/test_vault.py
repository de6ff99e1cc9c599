"""The client's encrypted vault: secrecy on disk, integrity of rows, durability, errors."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.client.vault import Vault
from backchannel.errors import (
    ConfigError,
    CorruptKeystore,
    KeystoreError,
    StoreUnavailable,
    WrongPassphrase,
)

KEY = bytes(range(32))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "vault.db"


@pytest.fixture
def vault(path: Path) -> Iterator[Vault]:
    with Vault.create(path, KEY) as v:
        yield v


@contextlib.contextmanager
def _raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain SQLite connection, as someone editing the file by hand would use."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


def _files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


# ---------------------------------------------------------------- basics


def test_put_get_delete_items(vault: Vault) -> None:
    assert vault.get("inbox", b"k") is None
    vault.put("inbox", b"k", b"v1")
    vault.put("inbox", b"k", b"v2")
    vault.put("inbox", b"a", b"")
    vault.put("channel", b"k", b"other table")
    assert vault.get("inbox", b"k") == b"v2"
    assert vault.items("inbox") == [(b"a", b""), (b"k", b"v2")]
    assert vault.keys("inbox") == [b"a", b"k"] and vault.keys("none") == []
    assert vault.delete("inbox", b"k") is True
    assert vault.delete("inbox", b"k") is False
    assert vault.get("inbox", b"k") is None
    assert vault.get("channel", b"k") == b"other table"


def test_survives_reopen(path: Path) -> None:
    with Vault.create(path, KEY) as v:
        v.put("journal", b"\x00key", b"\xffvalue")
    with Vault.open(path, KEY) as v:
        assert v.items("journal") == [(b"\x00key", b"\xffvalue")]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "delete"]),
            st.sampled_from(["inbox", "channel"]),
            st.binary(max_size=8),
            st.binary(max_size=40),
        ),
        max_size=25,
    )
)
def test_behaves_like_a_dict(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str, bytes, bytes]]
) -> None:
    model: dict[str, dict[bytes, bytes]] = {"inbox": {}, "channel": {}}
    with Vault.create(tmp_path_factory.mktemp("v") / "vault.db", KEY) as v:
        for op, table, key, value in ops:
            if op == "put":
                v.put(table, key, value)
                model[table][key] = value
            else:
                assert v.delete(table, key) == (key in model[table])
                model[table].pop(key, None)
        for table, content in model.items():
            assert v.items(table) == sorted(content.items())
            assert v.keys(table) == sorted(content)
            for key, value in content.items():
                assert v.get(table, key) == value


@pytest.mark.parametrize("name", ["", "Inbox", "in box", "x" * 33, "1abc", "a;drop"])
def test_bad_table_names_refused(vault: Vault, name: str) -> None:
    with pytest.raises(ConfigError):
        vault.put(name, b"k", b"v")
    with pytest.raises(ConfigError):
        vault.append(name, b"v")


def test_bad_key_length_refused(path: Path) -> None:
    with pytest.raises(ConfigError):
        Vault.create(path, b"short")
    assert not path.exists()


def test_create_refuses_existing_and_open_refuses_missing(vault: Vault, path: Path) -> None:
    with pytest.raises(ConfigError):
        Vault.create(path, KEY)
    with pytest.raises(ConfigError, match="no vault"):
        Vault.open(path.parent / "absent.db", KEY)


def test_files_are_private(vault: Vault, path: Path) -> None:
    vault.put("inbox", b"k", b"v")
    files = _files(path)
    assert len(files) == 3  # database, WAL, shared memory while open
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_repr_shows_no_key(vault: Vault) -> None:
    assert KEY.hex() not in repr(vault)
    assert repr(KEY) not in repr(vault)


# ---------------------------------------------------------------- secrecy on disk


def test_no_plaintext_on_disk(path: Path) -> None:
    key_marker = os.urandom(16).hex().encode()
    value_marker = os.urandom(16).hex().encode()
    queue_marker = os.urandom(16).hex().encode()
    markers = [key_marker, value_marker, queue_marker]

    def scan() -> None:
        for file in _files(path):
            data = file.read_bytes()
            for marker in markers:
                assert marker not in data, file.name
                assert marker[:12] not in data, file.name

    v = Vault.create(path, KEY)
    v.put("inbox", key_marker, value_marker)
    with v.transaction():
        v.put("channel", b"state", value_marker * 3)
        v.append("outbox", queue_marker)
    scan()  # while the records are in the WAL
    v.close()
    scan()  # after the WAL was checkpointed into the database
    with Vault.open(path, KEY) as v:
        assert v.get("inbox", key_marker) == value_marker
        v.delete("inbox", key_marker)
    scan()
    assert KEY not in path.read_bytes()


# ---------------------------------------------------------------- integrity


def test_a_key_moved_to_another_row_is_refused_when_only_keys_are_read(path: Path) -> None:
    with Vault.create(path, KEY) as v:
        v.put("inbox", b"first", b"one")
        v.put("inbox", b"second", b"two")
    with _raw(path) as db:
        (_, box_a), (mac_b, _) = db.execute("SELECT key_mac, key_box FROM records").fetchall()
        db.execute("UPDATE records SET key_box = ? WHERE key_mac = ?", (box_a, mac_b))
    with Vault.open(path, KEY) as v, pytest.raises(CorruptKeystore):
        v.keys("inbox")


def test_value_copied_to_another_row_refused(path: Path) -> None:
    with Vault.create(path, KEY) as v:
        v.put("inbox", b"first", b"one")
        v.put("inbox", b"second", b"two")
    with _raw(path) as db:
        rows = db.execute("SELECT key_mac, value_box FROM records").fetchall()
        (_, box_a), (mac_b, _) = rows
        db.execute("UPDATE records SET value_box = ? WHERE key_mac = ?", (box_a, mac_b))
    with Vault.open(path, KEY) as v, pytest.raises(CorruptKeystore, match="altered or moved"):
        v.items("inbox")
    with Vault.open(path, KEY) as v:
        values = []
        for key in (b"first", b"second"):
            try:
                values.append(v.get("inbox", key))
            except CorruptKeystore:
                values.append(None)
        assert values.count(None) == 1  # the row whose value was replaced


def test_value_moved_to_another_table_refused(path: Path) -> None:
    with Vault.create(path, KEY) as v:
        v.put("inbox", b"k", b"secret")
    with _raw(path) as db:
        db.execute("UPDATE records SET tbl = 'journal'")
    with Vault.open(path, KEY) as v:
        assert v.get("journal", b"k") is None  # the keyed hash differs per table
        with pytest.raises(CorruptKeystore):
            v.items("journal")


def test_queue_entries_cannot_be_reordered_or_moved(path: Path) -> None:
    with Vault.create(path, KEY) as v:
        v.append("outbox", b"first")
        v.append("outbox", b"second")
    with _raw(path) as db:
        (id_a, box_a), (id_b, box_b) = db.execute("SELECT id, box FROM queue ORDER BY id")
        db.execute("UPDATE queue SET box = ? WHERE id = ?", (box_b, id_a))
        db.execute("UPDATE queue SET box = ? WHERE id = ?", (box_a, id_b))
    with Vault.open(path, KEY) as v, pytest.raises(CorruptKeystore):
        v.pending("outbox")
    with _raw(path) as db:
        db.execute("UPDATE queue SET box = ? WHERE id = ?", (box_a, id_a))
        db.execute("UPDATE queue SET box = ?, q = 'inbox' WHERE id = ?", (box_b, id_b))
    with Vault.open(path, KEY) as v:
        assert v.pending("outbox") == [(id_a, b"first")]
        with pytest.raises(CorruptKeystore):
            v.pending("inbox")


def test_wrong_key_refused(path: Path) -> None:
    with Vault.create(path, KEY) as v:
        v.put("inbox", b"k", b"v")
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="does not open with the key") as info:
        Vault.open(path, bytes(32))
    assert not isinstance(info.value, (WrongPassphrase, CorruptKeystore))
    assert path.read_bytes() == before
    with Vault.open(path, KEY) as v:
        assert v.get("inbox", b"k") == b"v"


# ---------------------------------------------------------------- the outbox


def test_outbox_keeps_order_across_reopen(path: Path) -> None:
    with Vault.create(path, KEY) as v:
        ids = [v.append("outbox", f"message {i}".encode()) for i in range(10)]
        assert ids == sorted(ids)
        assert v.mark_done("outbox", ids[0]) is True
        assert v.mark_done("outbox", ids[0]) is False
        v.mark_done("outbox", ids[4])
        v.append("other", b"elsewhere")
    with Vault.open(path, KEY) as v:
        expected = [(i, f"message {n}".encode()) for n, i in enumerate(ids) if n not in (0, 4)]
        assert v.pending("outbox") == expected
        assert v.mark_done("other", ids[1]) is False  # wrong queue: nothing removed
        later = v.append("outbox", b"later")
        assert later > ids[-1]
        assert v.pending("outbox")[-1] == (later, b"later")


def test_transaction_commits_all_or_nothing(vault: Vault) -> None:
    with pytest.raises(RuntimeError), vault.transaction():
        vault.put("channel", b"state", b"new")
        vault.append("outbox", b"cell")
        raise RuntimeError("crash before commit")
    assert vault.get("channel", b"state") is None
    assert vault.pending("outbox") == []
    with vault.transaction():
        vault.put("channel", b"state", b"new")
        vault.append("outbox", b"cell")
    assert vault.get("channel", b"state") == b"new"
    assert [v for _, v in vault.pending("outbox")] == [b"cell"]


def test_nested_transaction_undoes_only_itself(vault: Vault) -> None:
    with vault.transaction():
        vault.put("journal", b"outer", b"1")
        with pytest.raises(RuntimeError), vault.transaction():
            vault.put("journal", b"inner", b"2")
            raise RuntimeError
        vault.put("journal", b"after", b"3")
    assert vault.items("journal") == [(b"after", b"3"), (b"outer", b"1")]


# ---------------------------------------------------------------- failures


def test_disk_full_loses_nothing(path: Path) -> None:
    v = Vault.create(path, KEY)
    v.put("inbox", b"kept", b"earlier record")
    first = v.append("outbox", b"earlier cell")
    pages = v._conn.execute("PRAGMA page_count").fetchone()[0]
    v._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now full
    big = os.urandom(64 * 1024)
    with pytest.raises(StoreUnavailable, match="full"):
        v.put("inbox", b"new", big)
    with pytest.raises(StoreUnavailable, match="full"), v.transaction():
        v.put("channel", b"small", b"x")
        v.append("outbox", big)
    assert v.get("inbox", b"kept") == b"earlier record"
    assert v.get("inbox", b"new") is None
    assert v.get("channel", b"small") is None  # the whole transaction was undone
    assert v.pending("outbox") == [(first, b"earlier cell")]
    v._conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
    v.put("inbox", b"new", big)
    v.close()
    with Vault.open(path, KEY) as v:
        assert v.get("inbox", b"kept") == b"earlier record"
        assert v.get("inbox", b"new") == big
        assert v.pending("outbox") == [(first, b"earlier cell")]


def test_locked_vault_is_unavailable(vault: Vault, path: Path) -> None:
    vault._conn.execute("PRAGMA busy_timeout = 0")
    with _raw(path) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="in use"):
            vault.put("inbox", b"k", b"v")
        other.execute("ROLLBACK")
    vault.put("inbox", b"k", b"v")
    assert vault.get("inbox", b"k") == b"v"


def test_garbage_file_is_corrupt(path: Path) -> None:
    path.write_bytes(os.urandom(8192))
    with pytest.raises(CorruptKeystore, match="restore"):
        Vault.open(path, KEY)


def test_foreign_sqlite_database_refused(path: Path) -> None:
    with _raw(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(CorruptKeystore, match="not a Backchannel vault"):
        Vault.open(path, KEY)


def test_empty_file_refused(path: Path) -> None:
    path.write_bytes(b"")
    with pytest.raises(CorruptKeystore):
        Vault.open(path, KEY)


def test_damaged_pages_give_a_clear_error(path: Path) -> None:
    with Vault.create(path, KEY) as v:
        for i in range(200):
            v.put("inbox", i.to_bytes(4, "big"), os.urandom(300))
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page : len(data)] = os.urandom(len(data) - 2 * page)  # pages 3.. destroyed
    path.write_bytes(bytes(data))
    # The damage may show when the vault opens or when the records are read.
    with pytest.raises(CorruptKeystore), Vault.open(path, KEY) as v:
        v.items("inbox")


def test_newer_schema_refused(path: Path) -> None:
    Vault.create(path, KEY).close()
    with _raw(path) as db:
        db.execute("PRAGMA user_version = 2")
    with pytest.raises(CorruptKeystore, match="newer"):
        Vault.open(path, KEY)


# ---------------------------------------------------------------- the read cache


def test_a_write_by_another_connection_is_read_at_once(path: Path) -> None:
    """A CLI command writes while ``backchannel run`` holds the same vault open."""
    with Vault.create(path, KEY) as first:
        first.put("channel", b"state", b"old")
        first.put("journal", b"a", b"1")
        assert first.get("channel", b"state") == b"old"
        assert first.items("journal") == [(b"a", b"1")]
        assert first.get("channel", b"absent") is None
        with Vault.open(path, KEY) as second:
            second.put("channel", b"state", b"new")
            second.put("journal", b"b", b"2")
            second.put("channel", b"absent", b"here now")
            second.delete("journal", b"a")
        assert first.get("channel", b"state") == b"new"
        assert first.get("channel", b"absent") == b"here now"
        assert first.items("journal") == [(b"b", b"2")]


def test_an_undone_transaction_leaves_nothing_in_what_is_read(vault: Vault) -> None:
    vault.put("channel", b"state", b"committed")
    vault.put("journal", b"a", b"1")
    assert vault.items("journal") == [(b"a", b"1")]
    with pytest.raises(RuntimeError), vault.transaction():
        vault.put("channel", b"state", b"undone")
        vault.put("journal", b"b", b"2")
        vault.delete("journal", b"a")
        assert vault.get("channel", b"state") == b"undone"
        assert vault.items("journal") == [(b"b", b"2")]
        raise RuntimeError
    assert vault.get("channel", b"state") == b"committed"
    assert vault.items("journal") == [(b"a", b"1")]


def test_a_write_is_read_back_and_a_delete_is_gone(vault: Vault) -> None:
    vault.put("journal", b"a", b"1")
    assert vault.items("journal") == [(b"a", b"1")]
    listed = vault.items("journal")
    listed.append((b"z", b"added by the caller"))
    assert vault.items("journal") == [(b"a", b"1")]
    vault.put("journal", b"a", b"2")
    assert vault.get("journal", b"a") == b"2"
    assert vault.items("journal") == [(b"a", b"2")]
    assert vault.delete("journal", b"a")
    assert vault.get("journal", b"a") is None
    assert vault.items("journal") == []


def test_a_failed_write_on_a_full_disk_is_not_read_back(path: Path) -> None:
    v = Vault.create(path, KEY)
    v.put("inbox", b"kept", b"before")
    assert v.get("inbox", b"kept") == b"before"
    pages = v._conn.execute("PRAGMA page_count").fetchone()[0]
    v._conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreUnavailable, match="full"), v.transaction():
        v.put("inbox", b"kept", b"after")
        v.put("inbox", b"big", os.urandom(64 * 1024))
    assert v.get("inbox", b"kept") == b"before"
    assert v.get("inbox", b"big") is None
    v.close()


def test_a_decoded_record_is_kept_only_while_it_is_unchanged(path: Path) -> None:
    calls: list[bytes] = []

    def decode(kind: type, raw: bytes) -> tuple[str, bytes]:
        calls.append(raw)
        return (kind.__name__, raw)

    with Vault.create(path, KEY) as v:
        v.put("channel", b"k", b"one")
        raw = v.get("channel", b"k")
        assert raw is not None
        first = v.decoded("channel", b"k", raw, bytes, decode)
        assert v.decoded("channel", b"k", v.get("channel", b"k") or b"", bytes, decode) is first
        assert calls == [b"one"]
        assert v.decoded("channel", b"k", raw, str, decode) == ("str", b"one")  # another kind
        v.put("channel", b"k", b"two")
        assert v.decoded("channel", b"k", b"two", bytes, decode) == ("bytes", b"two")
        v.delete("channel", b"k")
        assert not v._cache.holds_decoded("channel", b"k")  # a deleted record's value is not kept
        v.put("channel", b"k", b"three")
        v.decoded("channel", b"k", b"three", bytes, decode)
        with Vault.open(path, KEY) as other:
            other.put("channel", b"k", b"four")
        fresh = v.get("channel", b"k")
        assert fresh == b"four" and not v._cache.holds_decoded(
            "channel", b"k"
        )  # another connection's write drops it
        assert v.decoded("channel", b"k", fresh, bytes, decode) == ("bytes", b"four")
        assert calls == [b"one", b"one", b"two", b"three", b"four"]


def test_a_generation_moves_with_every_change_to_its_tables_and_only_then(path: Path) -> None:
    with Vault.create(path, KEY) as v:
        v.put("intake", b"a", b"1")
        g = v.generation("intake", "votes")
        # Reads, and writes to other tables, leave it.
        v.get("intake", b"a")
        v.items("intake")
        v.put("channel", b"k", b"x")
        v.append("outbox", b"cell")
        assert v.generation("intake", "votes") == g
        # Each write to one of its tables moves it: put, replace, delete.
        seen = {g}
        for write in (
            lambda: v.put("intake", b"b", b"2"),
            lambda: v.put("intake", b"b", b"3"),
            lambda: v.delete("intake", b"a"),
            lambda: v.put("votes", b"v", b""),
        ):
            write()
            now = v.generation("intake", "votes")
            assert now not in seen
            seen.add(now)
        # A transaction undone moves it too: what was read inside may be gone.
        g = v.generation("intake", "votes")
        with contextlib.suppress(RuntimeError), v.transaction():
            v.put("channel", b"k", b"y")
            raise RuntimeError
        assert v.generation("intake", "votes") != g
        # So does another connection's commit, to any table (SQLite says only that
        # something changed), and nothing else.
        g = v.generation("intake", "votes")
        with Vault.open(path, KEY) as other:
            other.put("intake", b"c", b"4")
        assert v.generation("intake", "votes") != g
        g = v.generation("intake", "votes")
        assert v.generation("intake", "votes") == g
        with pytest.raises(ConfigError):
            v.generation("Not A Table")


@pytest.mark.parametrize("seed", range(4))
def test_what_is_read_through_the_cache_is_what_is_on_disk(path: Path, seed: int) -> None:
    """Random writes, undone transactions and another connection's writes: after
    each step this vault reads exactly what a fresh connection reads."""
    import random

    rng = random.Random(seed)
    keys = [bytes([k]) for k in range(6)]
    with (
        Vault.create(path, KEY) as v,
        Vault.open(path, KEY) as other,
        Vault.open(path, KEY) as fresh,
    ):
        for _ in range(300):
            op = rng.randrange(7)
            writer = other if rng.random() < 0.2 else v
            try:
                if op == 0:
                    writer.put("journal", rng.choice(keys), os.urandom(rng.randrange(1, 9)))
                elif op == 1:
                    writer.delete("journal", rng.choice(keys))
                elif op == 2:
                    writer.append("outbox", os.urandom(4))
                elif op == 3 and (entries := writer.pending("outbox")):
                    writer.mark_done("outbox", rng.choice(entries)[0])
                elif op == 4:
                    with writer.transaction():
                        writer.put("journal", rng.choice(keys), b"undone")
                        writer.append("outbox", b"undone")
                        writer.delete("journal", rng.choice(keys))
                        raise RuntimeError
            except RuntimeError:
                pass
            # Reads fill the cache between writes, in a random order.
            reads = [
                lambda: v.items("journal"),
                lambda: v.keys("journal"),
                lambda: v.pending("outbox"),
                lambda: v.get("journal", rng.choice(keys)),
            ]
            rng.shuffle(reads)
            for read in reads:
                read()
            fresh._cache.forget()  # what is on disk (its reads leave the data version alone)
            assert v.items("journal") == fresh.items("journal")
            fresh._cache.forget()
            assert v.keys("journal") == fresh.keys("journal")
            fresh._cache.forget()
            assert v.pending("outbox") == fresh.pending("outbox")
            for k in keys:
                fresh._cache.forget()
                assert v.get("journal", k) == fresh.get("journal", k)
        assert b"undone" not in {value for _, value in v.items("journal")}


def test_a_queue_entry_decoded_once_is_dropped_when_done(vault: Vault) -> None:
    calls: list[bytes] = []

    def decode(kind: type, raw: bytes) -> bytes:
        calls.append(raw)
        return raw.upper()

    first = vault.append("outbox", b"a")
    vault.append("outbox", b"b")
    assert [v for _, v in vault.pending_decoded("outbox", bytes, decode)] == [b"A", b"B"]
    assert [v for _, v in vault.pending_decoded("outbox", bytes, decode)] == [b"A", b"B"]
    assert calls == [b"a", b"b"]
    vault.mark_done("outbox", first)
    assert not vault._cache.holds_decoded_entry("outbox", first)
    assert [v for _, v in vault.pending_decoded("outbox", bytes, decode)] == [b"B"]


def test_a_transaction_reads_what_another_connection_committed_before_it(path: Path) -> None:
    """Reads inside a transaction skip the per-read check of the data version;
    the check made when the transaction begins still drops what another
    connection changed before it."""
    with Vault.create(path, KEY) as v:
        v.put("journal", b"k", b"mine")
        v.append("outbox", b"first")
        assert v.get("journal", b"k") == b"mine" and len(v.pending("outbox")) == 1  # cached
        with Vault.open(path, KEY) as other:
            other.put("journal", b"k", b"theirs")
            other.append("outbox", b"second")
        with v.transaction():
            assert v.get("journal", b"k") == b"theirs"
            assert [raw for _, raw in v.pending("outbox")] == [b"first", b"second"]
            v.put("journal", b"k", b"ours now")
            assert v.get("journal", b"k") == b"ours now"
        assert v.get("journal", b"k") == b"ours now"


def test_a_commit_that_need_not_wait_for_the_disk_sets_durability_back(path: Path) -> None:
    """``durable=False`` relaxes the sync of its own commit only: the writes are
    committed (another connection reads them), and the next commit waits for
    the disk again, whether the block committed or failed."""

    def synchronous(v: Vault) -> int:
        return int(v._conn.execute("PRAGMA synchronous").fetchone()[0])

    with Vault.create(path, KEY) as v:
        assert synchronous(v) == 2  # FULL
        with v.transaction(durable=False):
            assert synchronous(v) == 1  # NORMAL, for this commit
            v.put("journal", b"k", b"answer taken")
        assert synchronous(v) == 2
        with Vault.open(path, KEY) as other:
            assert other.get("journal", b"k") == b"answer taken"
        with pytest.raises(RuntimeError), v.transaction(durable=False):
            v.put("journal", b"k", b"undone")
            raise RuntimeError
        assert synchronous(v) == 2 and v.get("journal", b"k") == b"answer taken"
        # Inside a durable block, the outer block decides.
        with v.transaction(), v.transaction(durable=False):
            assert synchronous(v) == 2
            v.put("journal", b"k", b"durable")
        assert synchronous(v) == 2
