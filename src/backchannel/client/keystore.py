"""The officer's keystore: one file holding the officer's secrets, sealed under a passphrase.

The keystore stores one opaque ``bytes`` payload; the caller serializes its own
keys into it. The file is sealed with ChaCha20-Poly1305 under a key derived from
the passphrase by Argon2id, with the whole header as associated data, so the KDF
parameters, salt and nonce cannot be changed without detection. The byte layout
is in ``docs/keystore.md``::

    magic "BCKS" | version 1 | kdf id | m KiB | t | p | salt | nonce | ciphertext | SHA-256

The trailing SHA-256 is an unkeyed checksum of everything before it. It is not
a security mechanism (anyone can recompute it); it lets :func:`decode` tell a
damaged file (:class:`CorruptKeystore`) from a wrong passphrase
(:class:`WrongPassphrase`) honestly. Authenticity comes from the AEAD alone.

Every write is atomic: a temporary file (mode 0600) in the same directory is
written and fsynced, renamed over the keystore, and the directory is fsynced,
so a crash leaves either the old keystore or the new one, never half of one.

Passphrases travel as :class:`Passphrase`, whose ``repr`` and ``str`` hide the
value; no message raised here contains a passphrase or any payload byte.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import tempfile
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from argon2.exceptions import HashingError
from argon2.low_level import ARGON2_VERSION, Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from backchannel.errors import ConfigError, CorruptKeystore, KeystoreError, WrongPassphrase

__all__ = [
    "DEFAULT_PARAMS",
    "ENV_PASSPHRASE",
    "KdfParams",
    "Keystore",
    "Passphrase",
    "decode",
    "encode",
    "read_params",
    "resolve_passphrase",
]

MAGIC: Final = b"BCKS"
VERSION: Final = 1
#: KDF identifiers stored in the header. 1 is Argon2id, version 1.3 (0x13).
KDF_ARGON2ID: Final = 1
#: Environment variable read by :func:`resolve_passphrase`.
ENV_PASSPHRASE: Final = "BACKCHANNEL_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)

SALT_LEN: Final = 16
NONCE_LEN: Final = 12
KEY_LEN: Final = 32
TAG_LEN: Final = 16
CHECKSUM_LEN: Final = 32
# magic(4) version(1) kdf(1) m(4) t(4) p(4) salt(16) nonce(12)
_HEADER: Final = struct.Struct(f">4sBBIII{SALT_LEN}s{NONCE_LEN}s")
HEADER_LEN: Final = _HEADER.size
MIN_FILE_LEN: Final = HEADER_LEN + TAG_LEN + CHECKSUM_LEN
#: Largest payload accepted; keys are small, and a bound stops a foreign file
#: from being read whole into memory.
MAX_PAYLOAD: Final = 16 * 1024 * 1024
MAX_FILE_LEN: Final = MIN_FILE_LEN + MAX_PAYLOAD

# Bounds applied to parameters read from a file, so a damaged or hostile header
# cannot make us allocate without limit. The memory cap is RFC 9106's first
# recommended option (2 GiB); the lower bounds are Argon2's own minimums.
_MAX_MEMORY_KIB: Final = 2 * 1024 * 1024
_MAX_TIME_COST: Final = 64
_MAX_PARALLELISM: Final = 64


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost parameters, stored in every keystore header."""

    #: Memory in KiB (Argon2 ``m``).
    memory_kib: int
    #: Number of passes (Argon2 ``t``).
    time_cost: int
    #: Lanes (Argon2 ``p``).
    parallelism: int

    def __post_init__(self) -> None:
        if not 1 <= self.parallelism <= _MAX_PARALLELISM:
            raise ConfigError(f"Argon2 parallelism must be 1 to {_MAX_PARALLELISM}")
        if not 1 <= self.time_cost <= _MAX_TIME_COST:
            raise ConfigError(f"Argon2 time cost must be 1 to {_MAX_TIME_COST}")
        if not 8 * self.parallelism <= self.memory_kib <= _MAX_MEMORY_KIB:
            raise ConfigError(f"Argon2 memory must be 8 x parallelism to {_MAX_MEMORY_KIB} KiB")


#: RFC 9106, section 4, second recommended option: m = 64 MiB, t = 3, p = 4.
DEFAULT_PARAMS: Final = KdfParams(memory_kib=64 * 1024, time_cost=3, parallelism=4)


class Passphrase:
    """A passphrase that does not show itself in ``repr``, ``str`` or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ConfigError("an empty passphrase is not allowed; choose a passphrase")
        self._value = value

    def reveal(self) -> bytes:
        """The passphrase as bytes: Unicode NFC, then UTF-8.

        NFC makes the same passphrase typed on different systems (composed or
        decomposed accents) give the same bytes.
        """
        return unicodedata.normalize("NFC", self._value).encode("utf-8")

    def __repr__(self) -> str:
        return "Passphrase(<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Passphrase cannot be pickled")


def _as_passphrase(value: Passphrase | str) -> Passphrase:
    return value if isinstance(value, Passphrase) else Passphrase(value)


# ---------------------------------------------------------------- sealing (no I/O)


def _derive_key(passphrase: Passphrase, salt: bytes, params: KdfParams) -> bytes:
    try:
        return hash_secret_raw(
            secret=passphrase.reveal(),
            salt=salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=KEY_LEN,
            type=Type.ID,
            version=ARGON2_VERSION,
        )
    except HashingError:
        # Argon2 fails only for want of memory once parameters are in bounds.
        raise KeystoreError(
            "not enough memory to derive the keystore key; close other programs and retry"
        ) from None


def _checksum(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def _encode_from_parts(
    passphrase: Passphrase, payload: bytes, params: KdfParams, salt: bytes, nonce: bytes
) -> bytes:
    """:func:`encode` with salt and nonce given, so test vectors can pin them."""
    if len(payload) > MAX_PAYLOAD:
        raise ConfigError(f"the keystore payload is larger than {MAX_PAYLOAD} bytes")
    header = _HEADER.pack(
        MAGIC,
        VERSION,
        KDF_ARGON2ID,
        params.memory_kib,
        params.time_cost,
        params.parallelism,
        salt,
        nonce,
    )
    key = _derive_key(passphrase, salt, params)
    body = header + ChaCha20Poly1305(key).encrypt(nonce, payload, header)
    return body + _checksum(body)


def encode(
    passphrase: Passphrase | str, payload: bytes, params: KdfParams = DEFAULT_PARAMS
) -> bytes:
    """Seal ``payload`` into the bytes of a keystore file, with a fresh salt and nonce."""
    return _encode_from_parts(
        _as_passphrase(passphrase), payload, params, os.urandom(SALT_LEN), os.urandom(NONCE_LEN)
    )


def _corrupt(what: str) -> CorruptKeystore:
    return CorruptKeystore(f"the keystore file {what}; restore it from a backup")


def read_params(blob: bytes) -> KdfParams:
    """Check the structure of a keystore file and return its KDF parameters.

    Raises :class:`CorruptKeystore` when the bytes are not a whole, undamaged
    keystore of a known version. Needs no passphrase.
    """
    if len(blob) < 5 or blob[:4] != MAGIC:
        raise _corrupt("is not a Backchannel keystore (wrong file?)")
    if blob[4] != VERSION:
        raise _corrupt(
            f"has format version {blob[4]}, which this program does not know "
            "(damaged, or written by a newer Backchannel: upgrade)"
        )
    if not MIN_FILE_LEN <= len(blob) <= MAX_FILE_LEN:
        raise _corrupt("is truncated or has the wrong length")
    body, stored = blob[:-CHECKSUM_LEN], blob[-CHECKSUM_LEN:]
    if not constant_time.bytes_eq(_checksum(body), stored):
        raise _corrupt("is damaged (its checksum does not match)")
    _, _, kdf, m, t, p, _, _ = _HEADER.unpack_from(blob)
    if kdf != KDF_ARGON2ID:
        raise _corrupt(f"names an unknown key derivation function ({kdf})")
    try:
        return KdfParams(memory_kib=m, time_cost=t, parallelism=p)
    except ConfigError:
        raise _corrupt("has key derivation parameters out of range") from None


def decode(blob: bytes, passphrase: Passphrase | str) -> bytes:
    """Open the bytes of a keystore file and return the payload.

    Raises :class:`CorruptKeystore` if the file is not a well-formed keystore,
    :class:`WrongPassphrase` if it is well formed but does not open.
    """
    params = read_params(blob)
    header, sealed = blob[:HEADER_LEN], blob[HEADER_LEN:-CHECKSUM_LEN]
    _, _, _, _, _, _, salt, nonce = _HEADER.unpack(header)
    key = _derive_key(_as_passphrase(passphrase), salt, params)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, sealed, header)
    except InvalidTag:
        # The checksum matched, so the file is as it was written (or was
        # rewritten on purpose by someone who recomputed the checksum).
        raise WrongPassphrase(
            "the passphrase does not open this keystore; try again "
            "(if you are sure it is right, the file was tampered with: restore it from a backup)"
        ) from None


# ---------------------------------------------------------------- files


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(MAX_FILE_LEN + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"no keystore at {path}: check --home, or restore the keystore from a backup"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a keystore; check --home") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read the keystore {path}: {_strerror(exc)}") from None


def _strerror(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno is not None else type(exc).__name__


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash leaves the old or the new file."""
    directory = path.parent
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o600)  # mkstemp already uses 0600; say so explicitly
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(directory)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            reason = "the disk is full; free space and retry"
        else:
            reason = f"{_strerror(exc)}; check the home directory and retry"
        raise KeystoreError(
            f"could not write the keystore {path} ({reason}); the previous keystore is unchanged"
        ) from None
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


class Keystore:
    """Operations on a keystore file. Nothing is kept in memory between calls."""

    @staticmethod
    def create(
        path: Path,
        passphrase: Passphrase | str,
        payload: bytes,
        *,
        params: KdfParams = DEFAULT_PARAMS,
    ) -> None:
        """Write a new keystore. Refuses to overwrite an existing file."""
        if path.exists() or path.is_symlink():
            raise ConfigError(
                f"a keystore already exists at {path}; open it, or move it away first"
            )
        _write_atomic(path, encode(passphrase, payload, params))

    @staticmethod
    def open(path: Path, passphrase: Passphrase | str) -> bytes:
        """Return the payload of the keystore at ``path``."""
        return decode(_read(path), passphrase)

    @staticmethod
    def rewrite(
        path: Path,
        passphrase: Passphrase | str,
        payload: bytes,
        *,
        params: KdfParams | None = None,
    ) -> None:
        """Replace the payload. The passphrase must open the current file first.

        The file's KDF parameters are kept unless ``params`` raises them; salt
        and nonce are always fresh.
        """
        blob = _read(path)
        decode(blob, passphrase)
        _write_atomic(path, encode(passphrase, payload, params or read_params(blob)))

    @staticmethod
    def change_passphrase(
        path: Path,
        old: Passphrase | str,
        new: Passphrase | str,
        *,
        params: KdfParams | None = None,
    ) -> None:
        """Seal the same payload under ``new``; ``old`` must open the file."""
        blob = _read(path)
        payload = decode(blob, old)
        _write_atomic(path, encode(new, payload, params or read_params(blob)))


def resolve_passphrase(
    passphrase_file: Path | None,
    env: Mapping[str, str],
    prompt: Callable[[str], str] | None,
) -> Passphrase:
    """Find the passphrase: the file, then ``BACKCHANNEL_PASSPHRASE``, then the prompt.

    One trailing newline (``\\n`` or ``\\r\\n``) is removed from the file's
    content, nothing else. An empty passphrase from any source is refused.
    """
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"the passphrase file {passphrase_file} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read the passphrase file {passphrase_file}: {_strerror(exc)}"
            ) from None
        for newline in ("\r\n", "\n"):
            if text.endswith(newline):
                text = text[: -len(newline)]
                break
        if not text:
            raise ConfigError(
                f"the passphrase file {passphrase_file} is empty; write the passphrase in it"
            )
        return Passphrase(text)
    if ENV_PASSPHRASE in env:
        if not env[ENV_PASSPHRASE]:
            raise ConfigError(f"{ENV_PASSPHRASE} is set but empty; set it or unset it")
        return Passphrase(env[ENV_PASSPHRASE])
    if prompt is None:
        raise ConfigError(
            f"no passphrase: give --passphrase-file, set {ENV_PASSPHRASE}, or run in a terminal"
        )
    typed = prompt("Keystore passphrase: ")
    if not typed:
        raise ConfigError("an empty passphrase is not allowed; try again")
    return Passphrase(typed)
