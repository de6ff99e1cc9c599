"""A mission's witness rule, and a cosigned checkpoint checked against it as a device
checks it: the relay's own, cosigned by the witnesses named, one log with the head held."""

from __future__ import annotations

import os

import pytest

from backchannel.crypto import labels
from backchannel.crypto.notesig import Ed25519NoteKey, MLDSA44NoteKey
from backchannel.crypto.signing import SigningKey
from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol import policy as mp
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.evidence import checkpoint_fork_evidence, verify_misbehaviour
from backchannel.protocol.merkle import (
    EMPTY_ROOT,
    MemoryLog,
    ProofError,
    TreeHead,
    consistency_proof,
    tree_root,
)
from backchannel.protocol.misbehaviour import relay_key_bytes, sign_head_compact
from backchannel.protocol.note import (
    TYPE_COSIGNATURE_ED25519,
    TYPE_COSIGNATURE_MLDSA44,
    Checkpoint,
    Note,
    NoteSignature,
    Verifier,
    cosign,
    sign_checkpoint,
)
from backchannel.protocol.witnessing import (
    DEFAULT_LAG_SECONDS,
    CheckpointAnswer,
    WitnessError,
    WitnessRule,
    check_checkpoint,
)

ORIGIN = "relay.test/log"
NOW = 1_790_000_000


class Witness:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ed = Ed25519NoteKey(os.urandom(32))
        self.ml = MLDSA44NoteKey(os.urandom(32))
        self.ed_key = Verifier(name, TYPE_COSIGNATURE_ED25519, self.ed.public)
        self.ml_key = Verifier(name, TYPE_COSIGNATURE_MLDSA44, self.ml.public)

    def cosign(self, cp: Checkpoint, when: int = NOW, pq: bool = True) -> list[NoteSignature]:
        sigs = [cosign(cp, self.name, self.ed, when)]
        return [*sigs, cosign(cp, self.name, self.ml, when)] if pq else sigs


class Relay:
    """A log with a log key, and the checkpoint key bound to it."""

    def __init__(self) -> None:
        self.key = SigningKey(os.urandom(32), os.urandom(32))
        self.cp_key = Ed25519NoteKey(os.urandom(32))
        self.binding = self.key.sign_ed25519(
            labels.SIG_CHECKPOINT_KEY, self.cp_key.public + ORIGIN.encode()
        )
        self.log = MemoryLog()
        for i in range(12):
            self.log.append(b"leaf %d" % i)

    @property
    def relay_key(self) -> bytes:
        return relay_key_bytes(self.key.verify_key)

    def head(self, size: int) -> TreeHead:
        return TreeHead(size, self._root(size), NOW)

    def _root(self, size: int) -> bytes:
        return tree_root(self.log, size)

    def answer(
        self, size: int, known: int, cosigs: list[NoteSignature], root: bytes | None = None
    ) -> CheckpointAnswer:
        cp = Checkpoint(ORIGIN, size, root or self._root(size))
        note = sign_checkpoint(cp, ORIGIN, self.cp_key).with_signatures(cosigs)
        proof = consistency_proof(self.log, *sorted((size, known))) if size != known else []
        return CheckpointAnswer(self.cp_key.public, self.binding, note.encode(), tuple(proof))

    def checkpoint(self, size: int) -> Checkpoint:
        return Checkpoint(ORIGIN, size, self._root(size))


@pytest.fixture
def relay() -> Relay:
    return Relay()


@pytest.fixture
def w1() -> Witness:
    return Witness("w1.example/witness")


@pytest.fixture
def w2() -> Witness:
    return Witness("w2.example/witness")


def test_a_checkpoint_the_named_witnesses_cosigned_is_enough_in_both_directions(
    relay: Relay, w1: Witness, w2: Witness
) -> None:
    rule = WitnessRule((w1.ed_key, w1.ml_key, w2.ed_key), 2)
    for size, known in ((10, 7), (7, 10), (10, 10)):
        cp = relay.checkpoint(size)
        cosigs = w1.cosign(cp, NOW - 30) + w2.cosign(cp, NOW - 5, pq=False)
        seen = check_checkpoint(
            relay.answer(size, known, cosigs), relay.relay_key, relay.head(known), rule, NOW
        )
        assert seen.enough and seen.names == (w1.name, w2.name)
        # By when both had cosigned: the older of the two.
        assert (seen.size, seen.cosigned_at) == (size, NOW - 30)
    # One witness of the two asked for is not enough; it is said, not raised.
    cp = relay.checkpoint(10)
    seen = check_checkpoint(
        relay.answer(10, 7, w2.cosign(cp, pq=False)), relay.relay_key, relay.head(7), rule, NOW
    )
    assert not seen.enough and seen.names == (w2.name,) and seen.cosigned_at == 0


def test_a_witness_counts_only_with_every_key_the_rule_lists(relay: Relay, w1: Witness) -> None:
    """Listing a witness's ML-DSA-44 key makes its post-quantum cosignature required."""
    cp = relay.checkpoint(10)
    answer = relay.answer(10, 7, w1.cosign(cp, pq=False))
    both = WitnessRule((w1.ed_key, w1.ml_key), 1)
    assert not check_checkpoint(answer, relay.relay_key, relay.head(7), both, NOW).enough
    classic = WitnessRule((w1.ed_key,), 1)
    assert check_checkpoint(answer, relay.relay_key, relay.head(7), classic, NOW).enough


def test_cosignatures_of_unnamed_keys_and_from_the_future_do_not_count(
    relay: Relay, w1: Witness, w2: Witness
) -> None:
    rule = WitnessRule((w1.ed_key,), 1)
    cp = relay.checkpoint(10)
    # w2 is no witness of this mission's: his cosignature is ignored.
    seen = check_checkpoint(
        relay.answer(10, 7, w2.cosign(cp)), relay.relay_key, relay.head(7), rule, NOW
    )
    assert not seen.enough and seen.names == ()
    # A cosignature dated an hour ahead of the device's clock does not count.
    seen = check_checkpoint(
        relay.answer(10, 7, w1.cosign(cp, NOW + 3600, pq=False)),
        relay.relay_key, relay.head(7), rule, NOW,
    )  # fmt: skip
    assert not seen.enough


def test_a_forged_cosignature_is_refused(relay: Relay, w1: Witness) -> None:
    """A relay that makes up a named witness's cosignature (its name and key ID, another
    key's signature) is caught: it does not verify."""
    cp = relay.checkpoint(10)
    impostor = Witness(w1.name)
    [forged] = impostor.cosign(cp, pq=False)
    forged = NoteSignature(forged.name, w1.ed_key.key_id, forged.data)
    rule = WitnessRule((w1.ed_key,), 1)
    with pytest.raises(WitnessError, match="does not verify"):
        check_checkpoint(relay.answer(10, 7, [forged]), relay.relay_key, relay.head(7), rule, NOW)


def test_a_checkpoint_not_bound_to_the_pinned_log_key_is_refused(relay: Relay, w1: Witness) -> None:
    rule = WitnessRule((w1.ed_key,), 1)
    cp = relay.checkpoint(10)
    good = relay.answer(10, 7, w1.cosign(cp, pq=False))
    other = Relay()  # another relay's log key
    with pytest.raises(WitnessError, match="not signed by the relay's log key"):
        check_checkpoint(good, other.relay_key, relay.head(7), rule, NOW)
    # A checkpoint key the log key never bound, with a binding made for the real one.
    stranger = Ed25519NoteKey(os.urandom(32))
    note = sign_checkpoint(cp, ORIGIN, stranger).with_signatures(w1.cosign(cp, pq=False))
    swapped = CheckpointAnswer(stranger.public, relay.binding, note.encode(), good.proof)
    with pytest.raises(WitnessError):
        check_checkpoint(swapped, relay.relay_key, relay.head(7), rule, NOW)
    # The real key, a note with its signature stripped and another's in its place.
    unsigned = Note(cp.text(), tuple(sign_checkpoint(cp, ORIGIN, stranger).signatures))
    bare = CheckpointAnswer(relay.cp_key.public, relay.binding, unsigned.encode(), good.proof)
    with pytest.raises(WitnessError):
        check_checkpoint(bare, relay.relay_key, relay.head(7), rule, NOW)


def test_a_checkpoint_of_another_log_is_a_proof_error(relay: Relay, w1: Witness) -> None:
    rule = WitnessRule((w1.ed_key,), 1)
    other_root = os.urandom(32)
    cp = Checkpoint(ORIGIN, 10, other_root)
    cosigs = w1.cosign(cp, pq=False)
    # Same size, another root.
    with pytest.raises(ProofError, match="another root"):
        check_checkpoint(
            relay.answer(10, 10, cosigs, other_root), relay.relay_key, relay.head(10), rule, NOW
        )
    # Another size: the relay's proof cannot join the two.
    for known in (7, 12):
        with pytest.raises(ProofError):
            check_checkpoint(
                relay.answer(10, known, cosigs, other_root),
                relay.relay_key, relay.head(known), rule, NOW,
            )  # fmt: skip
    # An honest checkpoint with a proof that is not the one asked for.
    honest = relay.answer(10, 7, w1.cosign(relay.checkpoint(10), pq=False))
    broken = CheckpointAnswer(honest.checkpoint_key, honest.binding, honest.note, honest.proof[1:])
    with pytest.raises(ProofError):
        check_checkpoint(broken, relay.relay_key, relay.head(7), rule, NOW)


def test_a_checkpoint_fork_is_a_proof_anyone_verifies(relay: Relay) -> None:
    head = sign_head_compact(relay.key, relay.head(10))
    other = Checkpoint(ORIGIN, 10, os.urandom(32))
    note = sign_checkpoint(other, ORIGIN, relay.cp_key).encode()
    blob = checkpoint_fork_evidence(
        relay.key.verify_key, head, relay.cp_key.public, relay.binding, note
    )
    assert verify_misbehaviour(blob).startswith("checkpoint fork: relay ")
    # The same root is no fork; another size is none either.
    same = sign_checkpoint(relay.checkpoint(10), ORIGIN, relay.cp_key).encode()
    smaller = sign_checkpoint(Checkpoint(ORIGIN, 9, os.urandom(32)), ORIGIN, relay.cp_key)
    for text in (same, smaller.encode()):
        with pytest.raises(ProofError):
            verify_misbehaviour(
                checkpoint_fork_evidence(
                    relay.key.verify_key, head, relay.cp_key.public, relay.binding, text
                )
            )
    # A checkpoint key the relay key did not bind proves nothing about the relay.
    stranger = Ed25519NoteKey(os.urandom(32))
    forged = sign_checkpoint(other, ORIGIN, stranger).encode()
    with pytest.raises(SignatureError, match="did not bind"):
        verify_misbehaviour(
            checkpoint_fork_evidence(
                relay.key.verify_key, head, stranger.public, relay.binding, forged
            )
        )


def test_the_witness_rule_travels_in_the_policy_and_is_checked(w1: Witness, w2: Witness) -> None:
    rule = WitnessRule((w1.ed_key, w1.ml_key, w2.ed_key), 2, 1800)
    policy = mp.MissionPolicy(version=1, prev_hash=mp.DEFAULT.hash, witnesses=rule)
    raw = policy.encode()
    assert raw[0] == 3
    assert mp.MissionPolicy.read(Reader(raw)) == policy
    assert "2 of the witnesses w1.example/witness, w2.example/witness within 30 minutes" in (
        policy.describe()
    )
    assert WitnessRule.of_vkeys([w1.ed_key.vkey(), w2.ed_key.vkey()], 1).names == (
        w1.name, w2.name,
    )  # fmt: skip
    # Layout 3 without witnesses is not the policy's one encoding.
    plain = mp.MissionPolicy(version=1, prev_hash=mp.DEFAULT.hash, epoch_seconds=7200)
    tampered = b"\x03" + plain.encode()[1:] + bytes([0]) + (3600).to_bytes(4, "big") + b"\x00"
    with pytest.raises(DecodeError, match="layout 2"):
        mp.MissionPolicy.read(Reader(tampered))
    for bad in (
        lambda: WitnessRule((w1.ed_key,), 2),  # more witnesses than named
        lambda: WitnessRule((w1.ed_key, w1.ml_key), 2),  # one witness, two keys
        lambda: WitnessRule((), 1),
        lambda: WitnessRule((w1.ed_key,), 0),
        lambda: WitnessRule((w1.ed_key,), 1, 60),  # a lag shorter than ten minutes
        lambda: WitnessRule((w1.ed_key, w1.ed_key), 1),
        lambda: WitnessRule((Verifier("log", 0x01, w1.ed.public),), 1),  # not a cosigner key
    ):
        with pytest.raises(DecodeError):
            bad()


def test_the_checkpoint_answer_codec_is_exact(relay: Relay, w1: Witness) -> None:
    answer = relay.answer(10, 7, w1.cosign(relay.checkpoint(10)))
    raw = answer.encode()
    assert CheckpointAnswer.decode(raw) == answer
    assert raw[:32] == relay.cp_key.public and raw[32:96] == relay.binding
    assert len(raw) == 96 + 4 + len(answer.note) + 1 + 32 * len(answer.proof)
    for bad in (raw + b"\x00", raw[:-1], raw[:96] + (1 << 20).to_bytes(4, "big") + raw[100:]):
        with pytest.raises(DecodeError):
            CheckpointAnswer.decode(bad)
    too_long = raw[: -1 - 32 * len(answer.proof)] + bytes([65]) + bytes(32 * 65)
    with pytest.raises(DecodeError, match="at most 64"):
        CheckpointAnswer.decode(too_long)
    with pytest.raises(DecodeError):
        CheckpointAnswer(
            answer.checkpoint_key, answer.binding, answer.note, (bytes(32),) * 65
        ).encode()
    with pytest.raises(DecodeError):
        CheckpointAnswer(answer.checkpoint_key, answer.binding, bytes(160 * 1024 + 1)).encode()


def test_what_a_checkpoint_shows_and_the_edges_of_its_checks(relay: Relay, w1: Witness) -> None:
    rule = WitnessRule((w1.ed_key,), 1)
    cp = relay.checkpoint(10)
    # A cosignature dated exactly at the tolerance still counts.
    edge = relay.answer(10, 7, w1.cosign(cp, NOW + 600, pq=False))
    seen = check_checkpoint(edge, relay.relay_key, relay.head(7), rule, NOW)
    assert seen.enough and (seen.size, seen.root) == (10, cp.root)
    # Nothing held yet, or an empty log on either side: nothing to compare.
    other = relay.answer(10, 10, w1.cosign(Checkpoint(ORIGIN, 10, bytes(32)), pq=False), bytes(32))
    assert check_checkpoint(other, relay.relay_key, None, rule, NOW).root == bytes(32)
    empty = TreeHead(0, EMPTY_ROOT, NOW)
    assert check_checkpoint(other, relay.relay_key, empty, rule, NOW).enough
    one = relay.answer(1, 10, w1.cosign(relay.checkpoint(1), pq=False))
    assert check_checkpoint(one, relay.relay_key, relay.head(10), rule, NOW).size == 1
    # A note whose first line is not an origin, or not text, names no key.
    for note in (b"\nrest\n", b"\xff\xfe\n10\n", b"no newline"):
        bad = CheckpointAnswer(relay.cp_key.public, relay.binding, note)
        with pytest.raises(WitnessError):
            check_checkpoint(bad, relay.relay_key, relay.head(7), rule, NOW)


def test_the_rule_says_what_is_wrong_and_how_long_it_waits(w1: Witness) -> None:
    many = tuple(Witness(f"w{i}.example/w").ed_key for i in range(9))
    WitnessRule(many[:8], 8)
    with pytest.raises(DecodeError, match="at most 8 witness keys"):
        WitnessRule(many, 1)
    with pytest.raises(DecodeError, match="1 to the 1 witnesses named"):
        WitnessRule((w1.ed_key, w1.ml_key), 2)
    with pytest.raises(DecodeError, match="no witness is named"):
        WitnessRule((), 1)
    with pytest.raises(DecodeError, match="cosigner key"):
        WitnessRule((Verifier("log", 0x01, w1.ed.public),), 1)
    with pytest.raises(DecodeError, match="named twice"):
        WitnessRule((w1.ed_key, w1.ed_key), 1)
    for lag in (599, 7 * 86_400 + 1):
        with pytest.raises(DecodeError, match="ten minutes to a week"):
            WitnessRule((w1.ed_key,), 1, lag)
    WitnessRule((w1.ed_key,), 1, 600)
    WitnessRule((w1.ed_key,), 1, 7 * 86_400)
    texts = {lag: WitnessRule((w1.ed_key,), 1, lag).describe() for lag in (3600, 7200, 1800, 630)}
    assert [t.rsplit(" within ", 1)[1] for t in texts.values()] == [
        "an hour", "2 hours", "30 minutes", "630 seconds",
    ]  # fmt: skip
    assert WitnessRule().describe() == "no witnesses" and not WitnessRule().asked
    # Keys of an unknown type in the encoding are refused.
    w = Writer()
    WitnessRule((w1.ed_key,), 1).write(w)
    raw = bytearray(w.bytes())
    raw[6 + 4 + len(w1.name)] = 0x05
    with pytest.raises(DecodeError, match="cosigner key"):
        WitnessRule.read(Reader(bytes(raw)))
    with pytest.raises(DecodeError, match="at most 8"):
        WitnessRule.read(Reader(bytes([1]) + (3600).to_bytes(4, "big") + bytes([9])))


def test_the_bounds_hold_exactly(relay: Relay, w1: Witness) -> None:
    """Eight witness keys and a 64-hash proof are allowed, and read back."""
    eight = WitnessRule(tuple(Witness(f"w{i}.example/w").ed_key for i in range(8)), 8)
    w = Writer()
    eight.write(w)
    assert WitnessRule.read(Reader(w.bytes())) == eight
    answer = relay.answer(10, 7, [])
    full = CheckpointAnswer(answer.checkpoint_key, answer.binding, answer.note, (bytes(32),) * 64)
    assert CheckpointAnswer.decode(full.encode()) == full
    rule = WitnessRule.of_vkeys([w1.ed_key.vkey()], 1)
    assert rule.lag_seconds == DEFAULT_LAG_SECONDS
