"""Domain-separation labels: every KDF, MAC, hash and signature context.

One module so that no two uses of a key or a hash can share a label by
accident. Labels are ASCII and never reused across purposes; changing one is a
protocol version change (``docs/spec/``).
"""

from __future__ import annotations

_PREFIX = b"backchannel/v1/"


def _label(name: str) -> bytes:
    return _PREFIX + name.encode("ascii")


# Identities and rosters
OFFICER_ID = _label("officer-id")
SIG_ROSTER = _label("sig/roster")
SIG_EPOCH_KEY = _label("sig/epoch-key")
SIG_CHANNEL_OFFER = _label("sig/channel-offer")
SIG_MESSAGE = _label("sig/message")
SIG_RECEIPT = _label("sig/receipt")
SIG_AUDIT = _label("sig/audit")
AUDIT_ENTRY = _label("audit/entry")
AUDIT_ANCHOR = _label("audit/anchor")
SIG_AUDIT_ANCHOR = _label("sig/anchor")
ROSTER_HASH = _label("roster-hash")
MISSION_ID = _label("mission-id")
# A mission's policy (protocol/policy.py)
SIG_POLICY = _label("sig/policy")
POLICY_HASH = _label("policy-hash")

# Channel establishment
PAIRING_TRANSCRIPT = _label("pairing-transcript")
SAFETY_NUMBER = _label("safety-number")
CHANNEL_ID = _label("channel-id")
CHANNEL_SECRET = _label("channel-secret")
HPKE_CHANNEL_CONTRIBUTION = _label("hpke/channel-contribution")

PAKE_ID = _label("pake/spake2")
PAKE_SLOT = _label("pake/slot")
PAKE_KEY = _label("pake/key")

# Rounds and cells
SLOT_CHAIN = _label("slot-chain")
SLOT_CHAIN_NEXT = b"\x01"
SLOT_ADDRESS = b"\x02"
CELL_KEY = b"\x03"
CELL_AAD = _label("cell-aad")

# Epochs and sealing
HPKE_EPOCH_SECRET = _label("hpke/epoch-secret")
EPOCH_ID = _label("epoch-id")
SHARE_CHAIN = _label("share-chain")
SHARE_CHAIN_KEY = b"\x01"
SHARE_CHAIN_NEXT = b"\x02"
SHARE_AAD = _label("share-aad")
CONTENT_AAD = _label("content-aad")
MESSAGE_DIGEST = _label("message-digest")
MESSAGE_ID = _label("message-id")

# Transcript
TRANSCRIPT_START = _label("transcript/start")
TRANSCRIPT_STEP = _label("transcript/step")

# The relay's transparency log
SIG_TREE_HEAD = _label("sig/tree-head")
SIG_ABSENCE = _label("sig/absence")
#: The log's checkpoint key (c2sp.org/tlog-checkpoint) is derived from the
#: Ed25519 seed of its signing key under this label, and bound to the log key
#: by a signature under the next.
CHECKPOINT_KEY = _label("checkpoint-key")
SIG_CHECKPOINT_KEY = _label("sig/checkpoint-key")

# Inside a mission: joint sessions between officers
HPKE_JOINT = _label("hpke/joint")
SIG_JOINT = _label("sig/joint")
JOINT_SLOT = _label("joint/slot")
JOINT_CELL = _label("joint/cell")
#: Pairwise streams of joint objects (protocol/joint_stream.py).
HPKE_JOINT_STREAM = _label("hpke/stream")
JOINT_STREAM_AAD = _label("stream/aad")
JOINT_STREAM_KEY = _label("stream/key")
JOINT_STREAM_CHAIN = _label("stream/chain")
MISSION_SECRET = _label("hpke/mission-secret")
NEW_MISSION_SECRET = _label("hpke/new-mission-secret")
MISSION_SECRET_COMMIT = _label("mission/secret-commitment")
TENANT_CREDENTIAL = _label("tenant/credential")
SIG_TENANT_CREDENTIAL = _label("sig/tenant-credential")

# Re-keying a channel after a roster change removes an officer (protocol/rekey.py)
CHANNEL_REKEY_SEED = _label("rekey/seed")
CHANNEL_REKEY_COMMIT = _label("rekey/commitment")
CHANNEL_REKEY_CHAIN = _label("rekey/chain")
CHANNEL_REKEY_ACK = _label("rekey/ack")
CHANNEL_REKEY_BOTH = _label("rekey/both")
CHANNEL_RESUME = _label("rekey/resume")
SIG_CHANNEL_REKEY = _label("sig/channel-rekey")
HPKE_CHANNEL_REKEY = _label("hpke/channel-rekey")

# The public intake (protocol/intake.py; the intake page uses the same strings)
INTAKE_KEY = _label("intake/key")
INTAKE_REQUEST = _label("intake/request")
INTAKE_REPLY_ID = _label("intake/reply-id")
INTAKE_ANSWER_SLOT = _label("intake/reply-slot")
INTAKE_REPLY_KEY = _label("intake/reply-key")
INTAKE_ANSWER = _label("intake/answer")
INTAKE_POW = _label("intake/pow")
INTAKE_CARD = _label("intake/card")

# Deniable authentication on a channel (protocol/deniable.py)
DENIABLE_ROOT = _label("deniable/root")
DENIABLE_MESSAGE_KEY = _label("deniable/key/message")
DENIABLE_MESSAGE = _label("deniable/tag/message")
DENIABLE_RECEIPT_KEY = _label("deniable/key/receipt")
DENIABLE_RECEIPT = _label("deniable/tag/receipt")

# The officer's local vault (client/vault.py)
VAULT_AEAD_KEY = _label("vault/aead-key")
VAULT_MAC_KEY = _label("vault/record-key-mac")
VAULT_CHECK = _label("vault/check")
VAULT_VALUE = _label("vault/value")
VAULT_KEY = _label("vault/key")
VAULT_QUEUE = _label("vault/queue")

ALL: tuple[bytes, ...] = (
    OFFICER_ID,
    SIG_ROSTER,
    SIG_EPOCH_KEY,
    SIG_CHANNEL_OFFER,
    SIG_MESSAGE,
    SIG_RECEIPT,
    SIG_AUDIT,
    AUDIT_ENTRY,
    AUDIT_ANCHOR,
    SIG_AUDIT_ANCHOR,
    ROSTER_HASH,
    MISSION_ID,
    SIG_POLICY,
    POLICY_HASH,
    PAIRING_TRANSCRIPT,
    SAFETY_NUMBER,
    CHANNEL_ID,
    CHANNEL_SECRET,
    HPKE_CHANNEL_CONTRIBUTION,
    PAKE_ID,
    PAKE_SLOT,
    PAKE_KEY,
    SLOT_CHAIN,
    CELL_AAD,
    HPKE_EPOCH_SECRET,
    EPOCH_ID,
    SHARE_CHAIN,
    SHARE_AAD,
    CONTENT_AAD,
    MESSAGE_DIGEST,
    MESSAGE_ID,
    TRANSCRIPT_START,
    TRANSCRIPT_STEP,
    SIG_TREE_HEAD,
    SIG_ABSENCE,
    CHECKPOINT_KEY,
    SIG_CHECKPOINT_KEY,
    HPKE_JOINT,
    SIG_JOINT,
    JOINT_SLOT,
    JOINT_CELL,
    HPKE_JOINT_STREAM,
    JOINT_STREAM_AAD,
    JOINT_STREAM_KEY,
    JOINT_STREAM_CHAIN,
    MISSION_SECRET,
    NEW_MISSION_SECRET,
    MISSION_SECRET_COMMIT,
    TENANT_CREDENTIAL,
    SIG_TENANT_CREDENTIAL,
    CHANNEL_REKEY_SEED,
    CHANNEL_REKEY_COMMIT,
    CHANNEL_REKEY_CHAIN,
    CHANNEL_REKEY_ACK,
    CHANNEL_REKEY_BOTH,
    CHANNEL_RESUME,
    SIG_CHANNEL_REKEY,
    HPKE_CHANNEL_REKEY,
    VAULT_AEAD_KEY,
    VAULT_MAC_KEY,
    VAULT_CHECK,
    VAULT_VALUE,
    VAULT_KEY,
    VAULT_QUEUE,
    INTAKE_KEY,
    INTAKE_REQUEST,
    INTAKE_REPLY_ID,
    INTAKE_ANSWER_SLOT,
    INTAKE_REPLY_KEY,
    INTAKE_ANSWER,
    INTAKE_POW,
    INTAKE_CARD,
    DENIABLE_ROOT,
    DENIABLE_MESSAGE_KEY,
    DENIABLE_MESSAGE,
    DENIABLE_RECEIPT_KEY,
    DENIABLE_RECEIPT,
)
