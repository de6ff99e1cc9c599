"""An officer's home: the encrypted keystore and the encrypted vault.

``keystore.bcks`` holds the officer's signing seeds and the vault key,
encrypted under the passphrase (Argon2id). ``vault.db`` holds everything else
(epoch keys, mission, peers, channels, inbox, outbox), every value encrypted
under the vault key. Epoch keys live in the vault so that rotating and erasing
them needs no passphrase; the vault deletes securely (``secure_delete``).
Nothing in the home is plaintext.

One process at a time runs a home's rounds (:meth:`Home.rounds`): two engines
reading the same windows would each take in what the other already took.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from backchannel.client.keystore import DEFAULT_PARAMS, KdfParams, Keystore, Passphrase
from backchannel.client.vault import Vault
from backchannel.errors import ConfigError, CorruptKeystore, StoreUnavailable
from backchannel.protocol.identity import EpochKey, EpochKeyCert, Officer

KEYSTORE = "keystore.bcks"
VAULT = "vault.db"


@dataclass
class Home:
    path: Path
    officer: Officer
    epoch_keys: list[EpochKey]
    vault_key: bytes = field(repr=False)
    vault: Vault
    #: How deep this process holds the rounds (:meth:`rounds`): the desk holds them
    #: from its start, and its engine's rounds run inside.
    _rounds_held: int = field(default=0, init=False, repr=False, compare=False)

    @property
    def cert(self) -> EpochKeyCert:
        return self.epoch_keys[-1].certify(self.officer)

    @classmethod
    def create(
        cls,
        path: Path,
        name: str,
        passphrase: Passphrase | str,
        params: KdfParams = DEFAULT_PARAMS,
    ) -> Home:
        path = Path(path)
        if (path / KEYSTORE).exists():
            raise ConfigError(f"{path} already holds an officer; choose another --home")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        officer = Officer.generate(name, secrets.token_bytes)
        epoch = EpochKey.generate(1, secrets.token_bytes)
        vault_key = secrets.token_bytes(32)
        payload = _payload(officer, vault_key)
        vault = Vault.create(path / VAULT, vault_key)
        try:
            vault.put(EPOCH_TABLE, _epoch_key_id(epoch.epoch), epoch.encode_secret())
            Keystore.create(path / KEYSTORE, passphrase, payload, params=params)
        except BaseException:
            vault.close()
            if not (path / KEYSTORE).exists():
                # No keystore holds its key: the vault goes too, so the same command
                # can be run again (once space is freed, say).
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{path / VAULT}{suffix}")
            raise
        return cls(path, officer, [epoch], vault_key, vault)

    @classmethod
    def unlock(cls, path: Path, passphrase: Passphrase | str) -> Home:
        path = Path(path)
        if not (path / KEYSTORE).exists():
            raise ConfigError(f"no officer in {path}; create one with `backchannel officer create`")
        raw = Keystore.open(path / KEYSTORE, passphrase)
        try:
            data = json.loads(raw)
            officer = Officer.decode_secret(bytes.fromhex(data["officer"]))
            vault_key = bytes.fromhex(data["vault_key"])
        except (ValueError, KeyError, TypeError):
            raise CorruptKeystore(
                "the keystore opened but its contents are not an officer's; restore it from backup"
            ) from None
        vault = Vault.open(path / VAULT, vault_key)
        keys = sorted(
            (EpochKey.decode_secret(v) for _, v in vault.items(EPOCH_TABLE)),
            key=lambda k: k.epoch,
        )
        if not keys:
            raise CorruptKeystore("the vault holds no epoch key; restore the home from backup")
        return cls(path, officer, keys, vault_key, vault)

    def rotate_epoch_key(self) -> EpochKey:
        """Draw the next epoch key; the older ones stay until :meth:`erase_epoch_keys`."""
        key = EpochKey.generate(self.epoch_keys[-1].epoch + 1, secrets.token_bytes)
        self.vault.put(EPOCH_TABLE, _epoch_key_id(key.epoch), key.encode_secret())
        self.epoch_keys.append(key)
        return key

    def erase_epoch_keys(self, keep: int) -> int:
        """Erase all but the newest ``keep`` epoch keys; return how many were erased.

        Messages sealed to an erased key can no longer be opened on this
        device, by anyone: that is the forward secrecy a stolen device leaves.
        """
        if keep < 1:
            raise ConfigError("keep at least the current epoch key")
        old = self.epoch_keys[:-keep]
        with self.vault.transaction():
            for k in old:
                self.vault.delete(EPOCH_TABLE, _epoch_key_id(k.epoch))
        self.epoch_keys = self.epoch_keys[-keep:]  # once the vault no longer holds them
        return len(old)

    @contextlib.contextmanager
    def rounds(self) -> Iterator[None]:
        """Hold this home's rounds for this process while the block runs.

        A lock on the home directory (``flock``), which the system releases when
        the process ends, however it ends. A second engine (a ``sync`` while
        ``backchannel run`` or the desk keeps the schedule) is refused at once.
        Held already by this process (the desk holds them while it runs, and
        its engine asks again), it is held once more, not refused.
        """
        if self._rounds_held or sys.platform == "win32":  # (win32: no flock there)
            self._rounds_held += 1
            try:
                yield
            finally:
                self._rounds_held -= 1
            return
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot use the home directory {self.path} ({os.strerror(exc.errno or 0)}); "
                "check its permissions"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreUnavailable(
                    "another Backchannel process is running this home's rounds "
                    "(`backchannel run`, `sync` or the desk): let it carry them, "
                    "or stop it and retry"
                ) from None
            self._rounds_held = 1
            try:
                yield
            finally:
                self._rounds_held = 0
        finally:
            os.close(fd)  # and the lock with it

    def close(self) -> None:
        self.vault.close()


EPOCH_TABLE = "epoch_keys"


def _epoch_key_id(epoch: int) -> bytes:
    return epoch.to_bytes(4, "big")


def _payload(officer: Officer, vault_key: bytes) -> bytes:
    return json.dumps(
        {"v": 1, "officer": officer.encode_secret().hex(), "vault_key": vault_key.hex()}
    ).encode()
