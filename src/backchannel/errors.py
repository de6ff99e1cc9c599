"""The one exception tree of Backchannel.

Every error raised by this package derives from :class:`BackchannelError`.
Errors raised by other libraries (pyca ``cryptography``, ``sqlite3``,
``psycopg``, ``httpx``) are translated where they enter, so callers catch only
these. Messages say what to do next and never contain plaintext, keys,
passphrases, slot addresses or cell bytes.

::

    BackchannelError
    ├── ConfigError                   bad settings or arguments given to us
    ├── ProtocolError
    │   ├── LocalProtocolError        this side misused the protocol (a bug or a refused action)
    │   │   ├── NotEnoughSignatures   fewer than k officers have signed
    │   │   └── NotEnoughShares       fewer than k officers' shares to open
    │   └── RemoteProtocolError       bytes from outside are wrong; never trust them
    │       ├── DecodeError           malformed or truncated encoding, wrong version
    │       ├── AuthenticationError   a cell, share or sealed box failed to decrypt (opaque)
    │       ├── SignatureError        a signature is invalid, missing, duplicated or unknown
    │       ├── RosterError           a roster chain does not verify from the pinned genesis
    │       └── TranscriptError       the channel's history is inconsistent
    │           ├── ReplayDetected    a message seen before came again
    │           ├── GapDetected       a message is missing (dropped or reordered)
    │           └── ForkDetected      the peer's history of us differs from ours
    ├── StoreError                    a storage backend failed
    │   ├── StoreUnavailable          the database cannot be reached or written (disk full...)
    │   ├── SlotConflict              a different cell already occupies that slot
    │   ├── TenantExists              the tenant id is taken
    │   ├── UnknownTenant             no such tenant
    │   └── QuotaExceeded             the tenant's quota is used up
    ├── RelayError                    talking to a relay failed (client side)
    │   ├── RelayUnavailable          the relay cannot be reached; retry later
    │   └── RelayRefused              the relay answered with a refusal
    └── KeystoreError                 an officer's keystore cannot be used
        ├── WrongPassphrase           the passphrase does not open the keystore
        └── CorruptKeystore           the keystore file is damaged or not ours
"""

from __future__ import annotations


class BackchannelError(Exception):
    """Root of every error raised by Backchannel."""


class ConfigError(BackchannelError):
    """Settings or arguments are invalid."""


class ProtocolError(BackchannelError):
    """The protocol could not proceed."""


class LocalProtocolError(ProtocolError):
    """This side asked for something the protocol does not allow."""


class NotEnoughSignatures(LocalProtocolError):
    """Fewer than the mission's threshold of officers have signed."""


class NotEnoughShares(LocalProtocolError):
    """Fewer than the mission's threshold of officers have contributed shares."""


class RemoteProtocolError(ProtocolError):
    """Data received from outside is invalid; it was refused and nothing changed."""


class DecodeError(RemoteProtocolError):
    """Malformed, truncated or unknown-version encoding."""


class AuthenticationError(RemoteProtocolError):
    """Decryption or authentication failed. Deliberately says nothing more."""


class SignatureError(RemoteProtocolError):
    """A signature is invalid, missing, duplicated, or by an unknown signer."""


class RosterError(RemoteProtocolError):
    """A roster or roster change does not verify against the pinned chain."""


class TranscriptError(RemoteProtocolError):
    """The channel history received is inconsistent with ours."""


class ReplayDetected(TranscriptError):
    """A message already accepted arrived again."""


class PeerRosterAhead(RemoteProtocolError):
    """A message is signed under a roster of the peer mission this device does not
    hold yet: it waits until the officer adds the peer's new mission card."""


class GapDetected(TranscriptError):
    """A message is missing: the relay dropped or reordered traffic."""


class ForkDetected(TranscriptError):
    """The peer's record of our messages differs from our own."""


class StoreError(BackchannelError):
    """A storage backend failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or written; nothing was acknowledged."""


class SlotConflict(StoreError):
    """A different cell already occupies that slot."""


class TenantExists(StoreError):
    """The tenant id is already registered."""


class UnknownTenant(StoreError):
    """No such tenant is registered."""


class QuotaExceeded(StoreError):
    """The tenant's storage quota is used up."""


class IntakeClosed(StoreError):
    """The tenant has not opened its public intake (or closed it)."""


class RelayError(BackchannelError):
    """Talking to the relay failed."""


class RelayUnavailable(RelayError):
    """The relay cannot be reached; the operation can be retried later."""


class RelayRefused(RelayError):
    """The relay refused the request."""


class KeystoreError(BackchannelError):
    """An officer's keystore cannot be used."""


class WrongPassphrase(KeystoreError):
    """The passphrase does not open this keystore."""


class CorruptKeystore(KeystoreError):
    """The keystore is damaged or not a Backchannel keystore."""
