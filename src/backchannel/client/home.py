"""An officer's home: the encrypted keystore and the encrypted vault.

``keystore.bcks`` holds the officer's signing seeds, epoch keys and the vault
key, encrypted under the passphrase (Argon2id). ``vault.db`` holds everything
else (mission, peers, channels, inbox, outbox), every value encrypted under the
vault key. Nothing in the home is plaintext.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from backchannel.client.keystore import DEFAULT_PARAMS, KdfParams, Keystore, Passphrase
from backchannel.client.vault import Vault
from backchannel.errors import ConfigError, CorruptKeystore
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
        payload = _payload(officer, [epoch], vault_key)
        vault = Vault.create(path / VAULT, vault_key)
        Keystore.create(path / KEYSTORE, passphrase, payload, params=params)
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
            keys = [EpochKey.decode_secret(bytes.fromhex(k)) for k in data["epoch_keys"]]
            vault_key = bytes.fromhex(data["vault_key"])
        except (ValueError, KeyError, TypeError):
            raise CorruptKeystore(
                "the keystore opened but its contents are not an officer's; restore it from backup"
            ) from None
        vault = Vault.open(path / VAULT, vault_key)
        return cls(path, officer, keys, vault_key, vault)

    def close(self) -> None:
        self.vault.close()


def _payload(officer: Officer, keys: list[EpochKey], vault_key: bytes) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "officer": officer.encode_secret().hex(),
            "epoch_keys": [k.encode_secret().hex() for k in keys],
            "vault_key": vault_key.hex(),
        }
    ).encode()
