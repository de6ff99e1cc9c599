"""Which witnesses a mission asks for, and checking a cosigned checkpoint against them.

The relay publishes its heads as C2SP checkpoints and independent witnesses
cosign them (:mod:`.note`, ``docs/spec/relay-log-v1.md`` §8). A mission's
policy (:mod:`.policy`) names the witnesses it trusts in a
:class:`WitnessRule`: their cosigner keys, how many of them must have cosigned,
and how long a head this device accepted may stay without such cosignatures.
Every device then checks, on a fixed schedule, the relay's latest cosigned
checkpoint (:func:`check_checkpoint`):

* the checkpoint key is the relay's: the log key (pinned by the device) signed
  it, with the log's origin (the binding of §8);
* the checkpoint is signed by that key;
* the cosignatures of the rule's witnesses verify (a witness counts once every
  key the rule lists for it has cosigned, so listing a witness's ML-DSA-44 key
  makes its post-quantum cosignature required);
* the checkpoint and the head the device holds are one log: equal roots at one
  size, a consistency proof between two sizes.

A head the device holds is *witnessed* once a checkpoint at least as large,
consistent with it, carries the cosignatures the rule asks for. Pure: keys,
clocks and answers are parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from backchannel.crypto import labels
from backchannel.crypto.primitives import HASH_LEN, equal
from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.merkle import MAX_PROOF_LEN, ProofError, TreeHead, verify_consistency
from backchannel.protocol.misbehaviour import relay_key_from_bytes
from backchannel.protocol.note import (
    MAX_NOTE_LEN,
    TYPE_COSIGNATURE_ED25519,
    TYPE_COSIGNATURE_MLDSA44,
    TYPE_ED25519,
    Checkpoint,
    Verifier,
    check_name,
    open_checkpoint,
    verify_cosignature,
)

#: Cosigner keys a policy may name (a witness usually has two: Ed25519 and ML-DSA-44).
MAX_WITNESS_KEYS = 8
#: A head may stay unwitnessed an hour by default, from ten minutes to a week.
DEFAULT_LAG_SECONDS = 3_600
MIN_LAG_SECONDS = 600
MAX_LAG_SECONDS = 7 * 86_400
#: How far ahead of the device's clock a cosignature's time may be and still count.
CLOCK_TOLERANCE = 600
_COSIGNER_TYPES = (TYPE_COSIGNATURE_ED25519, TYPE_COSIGNATURE_MLDSA44)
_CHECKPOINT_KEY_LEN = 32
_BINDING_LEN = 64


class WitnessError(SignatureError):
    """A checkpoint that is not the relay's, or whose cosignatures do not verify."""


@dataclass(frozen=True, slots=True)
class WitnessRule:
    """The witnesses a mission asks for: their keys, how many, and how soon.

    ``needed`` is a number of witnesses (key names), not of keys; ``0`` with no
    keys is the default, no witness asked for.
    """

    keys: tuple[Verifier, ...] = ()
    needed: int = 0
    lag_seconds: int = DEFAULT_LAG_SECONDS

    def __post_init__(self) -> None:
        if len(self.keys) > MAX_WITNESS_KEYS:
            raise DecodeError(f"a policy names at most {MAX_WITNESS_KEYS} witness keys")
        if any(k.sig_type not in _COSIGNER_TYPES for k in self.keys):
            raise DecodeError("a witness key is a cosigner key (type 0x04 or 0x06)")
        if len(set(self.keys)) != len(self.keys):
            raise DecodeError("a witness key is named twice")
        if not (0 < self.needed <= len(self.names) if self.keys else self.needed == 0):
            raise DecodeError(
                f"witnesses needed: 1 to the {len(self.names)} witnesses named"
                if self.keys
                else "no witness is named, so none can be needed"
            )
        if not MIN_LAG_SECONDS <= self.lag_seconds <= MAX_LAG_SECONDS:
            raise DecodeError("a head may stay unwitnessed ten minutes to a week")

    @property
    def names(self) -> tuple[str, ...]:
        """The witnesses named, each once, in the order given."""
        return tuple(dict.fromkeys(k.name for k in self.keys))

    @property
    def asked(self) -> bool:
        return self.needed > 0

    @classmethod
    def of_vkeys(
        cls, vkeys: Sequence[str], needed: int, lag_seconds: int = DEFAULT_LAG_SECONDS
    ) -> WitnessRule:
        """From witness verifier-key strings (``name+id+base64``)."""
        return cls(tuple(Verifier.from_vkey(v.strip()) for v in vkeys), needed, lag_seconds)

    def describe(self) -> str:
        if not self.asked:
            return "no witnesses"
        names = ", ".join(self.names)
        return f"{self.needed} of the witnesses {names} within {_period(self.lag_seconds)}"

    def write(self, w: Writer) -> None:
        w.u8(self.needed).u32(self.lag_seconds).u8(len(self.keys))
        for k in self.keys:
            w.text(k.name).u8(k.sig_type).fixed(k.public, len(k.public))

    @classmethod
    def read(cls, r: Reader) -> WitnessRule:
        needed, lag, count = r.u8(), r.u32(), r.u8()
        if count > MAX_WITNESS_KEYS:
            raise DecodeError(f"a policy names at most {MAX_WITNESS_KEYS} witness keys")
        keys = []
        for _ in range(count):
            name = check_name(r.text(255))
            sig_type = r.u8()
            length = {TYPE_COSIGNATURE_ED25519: 32, TYPE_COSIGNATURE_MLDSA44: 1312}.get(sig_type)
            if length is None:
                raise DecodeError("a witness key is a cosigner key (type 0x04 or 0x06)")
            keys.append(Verifier(name, sig_type, r.fixed(length)))
        return cls(tuple(keys), needed, lag)


def _period(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "an hour" if hours == 1 else f"{hours} hours"
    return f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} seconds"


NO_WITNESSES = WitnessRule()


@dataclass(frozen=True, slots=True)
class CheckpointAnswer:
    """The relay's answer to a CHECKPOINT query (``batch_query``).

    Layout: ``checkpoint key [32] | binding [64] | note_len u32 | note | proof``
    (a proof as in every answer: ``count u8 | count x hash``), where the note is
    the latest cosigned checkpoint, the binding is the log key's signature over
    the checkpoint key and the origin, and the proof joins the checkpoint's
    size and the size the query named (empty when they are equal or one is 0).
    """

    checkpoint_key: bytes = field(repr=False)
    binding: bytes = field(repr=False)
    note: bytes
    proof: tuple[bytes, ...] = ()

    def encode(self) -> bytes:
        if len(self.note) > MAX_NOTE_LEN or len(self.proof) > MAX_PROOF_LEN:
            raise DecodeError("a checkpoint answer is too long")
        w = Writer().fixed(self.checkpoint_key, _CHECKPOINT_KEY_LEN)
        w.fixed(self.binding, _BINDING_LEN).var(self.note).u8(len(self.proof))
        for h in self.proof:
            w.fixed(h, HASH_LEN)
        return w.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> CheckpointAnswer:
        r = Reader(raw)
        key, binding, note = (
            r.fixed(_CHECKPOINT_KEY_LEN),
            r.fixed(_BINDING_LEN),
            r.var(MAX_NOTE_LEN),
        )
        count = r.u8()
        if count > MAX_PROOF_LEN:
            raise DecodeError("a consistency proof is at most 64 hashes")
        proof = tuple(r.fixed(HASH_LEN) for _ in range(count))
        r.end()
        return cls(key, binding, note, proof)


@dataclass(frozen=True, slots=True)
class Witnessed:
    """What a verified checkpoint showed: its size and root, who cosigned it, and when.

    ``cosigned_at`` is the time by which ``needed`` witnesses had cosigned (the
    ``needed``-th newest of their timestamps; 0 when the rule asks for none).
    """

    size: int
    root: bytes
    names: tuple[str, ...]
    cosigned_at: int
    enough: bool


def check_checkpoint(
    answer: CheckpointAnswer,
    relay_key: bytes,
    known: TreeHead | None,
    rule: WitnessRule,
    now: float,
) -> Witnessed:
    """Verify a checkpoint answer against the pinned relay key and the head held.

    Raises :class:`WitnessError` when the checkpoint is not the relay's (its key
    is not bound to the log key, or its signature fails) or a named witness's
    cosignature fails, and :class:`ProofError` when the checkpoint and ``known``
    are not one log. Cosignatures from keys the rule does not name are ignored.
    """
    origin = _origin(answer.note)
    log_key = relay_key_from_bytes(relay_key)
    try:
        log_key.verify_ed25519(
            answer.binding, labels.SIG_CHECKPOINT_KEY, answer.checkpoint_key + origin.encode()
        )
        cp, note = open_checkpoint(
            answer.note, Verifier(origin, TYPE_ED25519, answer.checkpoint_key)
        )
    except (SignatureError, DecodeError) as exc:
        raise WitnessError(f"the checkpoint is not signed by the relay's log key ({exc})") from None
    times: dict[str, int] = {}
    for name in rule.names:
        keys = [k for k in rule.keys if k.name == name]
        if not all(any(k.matches(s) for s in note.signatures) for k in keys):
            continue  # this witness has not cosigned (with every key the rule lists)
        try:
            stamps = [verify_cosignature(note, k) for k in keys]
        except SignatureError:
            raise WitnessError(f"the cosignature of witness {name} does not verify") from None
        if max(stamps) <= now + CLOCK_TOLERANCE:
            times[name] = min(stamps)
    _check_consistent(cp, known, answer.proof)
    enough = len(times) >= rule.needed
    newest_first = sorted(times.values(), reverse=True)
    cosigned_at = newest_first[rule.needed - 1] if rule.asked and enough else 0
    return Witnessed(cp.size, cp.root, tuple(times), cosigned_at, enough)


def _origin(raw: bytes) -> str:
    """The checkpoint's origin (its first line), to name the key it is signed with."""
    first, sep, _ = raw.partition(b"\n")
    try:
        origin = first.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessError("the checkpoint's origin is not UTF-8") from None
    if not sep or not origin:
        raise WitnessError("the checkpoint has no origin line")
    return origin


def _check_consistent(cp: Checkpoint, known: TreeHead | None, proof: Sequence[bytes]) -> None:
    if known is None or 0 in (known.size, cp.size):
        return
    if known.size == cp.size:
        if not equal(known.root, cp.root):
            raise ProofError(
                f"the relay's checkpoint of size {cp.size} has another root than its head"
            )
        return
    small, large = sorted(((known.size, known.root), (cp.size, cp.root)))
    verify_consistency(small[0], large[0], small[1], large[1], proof)
