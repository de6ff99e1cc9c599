"""The relay's signing key: drawn once, kept in a file (SQLite) or a row (PostgreSQL).

A new key would make every client distrust the relay (their pinned key no
longer signs its heads), so the file is written once, atomically, and a
damaged one is refused rather than replaced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from backchannel.crypto.signing import SEED_LEN, SigningKey
from backchannel.errors import DecodeError, SignatureError, StoreUnavailable
from backchannel.protocol.misbehaviour import SignedHead

KEY_FILE_VERSION = 1
KEY_FILE_LEN = 1 + 2 * SEED_LEN


def new_key_seeds() -> tuple[bytes, bytes]:
    return secrets.token_bytes(SEED_LEN), secrets.token_bytes(SEED_LEN)


def key_from_seeds(ed_seed: bytes, ml_seed: bytes) -> SigningKey:
    return SigningKey(bytes(ed_seed), bytes(ml_seed))


def load_or_create_key_file(path: str | os.PathLike[str]) -> SigningKey:
    """The key in ``path``, created (mode 0600) if absent.

    Creation writes a temporary file and hard-links it into place, so two
    processes starting together end up with the same key and nobody ever reads
    a half-written file.
    """
    target = Path(path)
    for _ in range(3):
        with contextlib.suppress(FileNotFoundError):
            return read_key_file(target)
        ed, ml = new_key_seeds()
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, bytes([KEY_FILE_VERSION]) + ed + ml)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, target)
            except FileExistsError:
                continue  # another process won: read its key
            _fsync_dir(target.parent)
            return key_from_seeds(ed, ml)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the relay's signing key file ({exc.strerror}); "
                "check that the data directory exists and is writable"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    raise StoreUnavailable("the relay's signing key file keeps changing; is another relay racing?")


def read_key_file(path: Path) -> SigningKey:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot read the relay's signing key file ({exc.strerror}); check its permissions"
        ) from None
    if len(raw) != KEY_FILE_LEN or raw[0] != KEY_FILE_VERSION:
        raise StoreUnavailable(
            "the relay's signing key file is damaged; restore it from a backup "
            "(a new key would make every client distrust this relay)"
        )
    return key_from_seeds(raw[1 : 1 + SEED_LEN], raw[1 + SEED_LEN :])


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_key_signs(key: SigningKey, signed: bytes | None, where: str | os.PathLike[str]) -> None:
    """Refuse a key that did not sign the log's stored head: another relay's key.

    Served, it would sign a log that clients pinned to another key, so each
    of them would take the relay for a liar. ``signed`` is None for a log
    that has signed nothing yet.
    """
    if signed is None:
        return
    try:
        SignedHead.decode(signed).verify(key.verify_key)
    except (DecodeError, SignatureError):
        raise StoreUnavailable(
            f"the signing key in {where} did not sign this database's log: it is another "
            "relay's key; put back this relay's own key (its backup holds it)"
        ) from None
