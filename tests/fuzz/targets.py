"""The fuzz targets: one per decoder that reads bytes (or text) from outside.

Each target takes arbitrary bytes and checks the decoders' contract:

* the decoder returns a value or raises its documented error (``allowed``:
  :class:`~backchannel.errors.DecodeError` for the strict binary codecs, the
  wider :class:`~backchannel.errors.RemoteProtocolError` family where the
  decoder also checks a roster, a signature or a proof, ``CardError`` for
  cards, ``HTTPRefusal`` for the relay's request bodies), never another
  exception;
* where an encoder exists and the format is canonical, what was accepted
  re-encodes to the very same bytes, and decodes back to an equal value.

A violation raises :class:`AssertionError` or lets the stray exception out;
both are crashes for atheris (``tests/fuzz/run.py``) and failures for pytest
(``tests/fuzz/test_fuzz_short.py``). Hangs are caught by the run's time limits.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from backchannel.crypto.primitives import NONCE_LEN, aead_seal
from backchannel.crypto.sharing import Share
from backchannel.errors import DecodeError, RemoteProtocolError
from backchannel.protocol import audit_anchor as aa
from backchannel.protocol import batch as bt
from backchannel.protocol import batch_log as bl
from backchannel.protocol import cells, evidence, joint, merkle, misbehaviour
from backchannel.protocol import key_announce as ka
from backchannel.protocol import note as note_fmt
from backchannel.protocol import rekey as rk
from backchannel.protocol import roster as rs
from backchannel.protocol.channel import ChannelOffer
from backchannel.protocol.codec import Reader, Writer
from backchannel.protocol.identity import EpochKeyCert, OfficerPublic
from backchannel.protocol.message import Header, SealedMessage
from backchannel.protocol.payload import Payload
from backchannel.protocol.sealing import Announcement, valid_signers


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    #: Inputs longer than this are cut (keeps each execution short).
    max_len: int = 8192

    def check(self, data: bytes) -> None:
        """Run one input; raise only on a broken contract."""
        with contextlib.suppress(*self.allowed):
            self.run(data[: self.max_len])


def _same(a: bytes, b: bytes, what: str) -> None:
    if a != b:
        raise AssertionError(f"{what}: re-encoding differs from the accepted input")


def _canonical(decode: Callable[[bytes], object], encode: Callable[[object], bytes], what: str):
    """A target: ``encode(decode(b)) == b`` and ``decode(encode(x)) == x`` for accepted ``b``."""

    def run(data: bytes) -> None:
        value = decode(data)
        again = encode(value)
        _same(again, data, what)
        if decode(again) != value:
            raise AssertionError(f"{what}: decode(encode(x)) != x")

    return run


# -- contexts built once, lazily (a paired pair of missions) ---------------------------


@functools.cache
def _pair():  # type: ignore[no-untyped-def]
    from tests.conftest import DetRng, make_pair

    return make_pair(DetRng("fuzz"))


# -- cells -----------------------------------------------------------------------------


def _cell_content(data: bytes) -> None:
    content = cells.CellContent.decode(data)
    cell_size = len(data) + cells.NONCE_LEN + cells.TAG_LEN
    _same(content.encode(cell_size), data, "cell content")
    if cells.CellContent.decode(content.encode(cell_size)) != content:
        raise AssertionError("cell content: decode(encode(x)) != x")


def _reassemble(data: bytes) -> None:
    """Fragments decoded from the input, joined in the order given."""
    r = Reader(data)
    frags = []
    for _ in range(min(r.u8(), 8)):
        mid, index, count, length = r.fixed(2), r.u8(), r.u8(), r.u8()
        frags.append(cells.Fragment(mid * 8, index, count, r.fixed(length)))
    out = cells.reassemble(frags)
    if len(out) != sum(len(f.data) for f in frags):
        raise AssertionError("reassembly lost or invented bytes")


# -- joint objects -----------------------------------------------------------------------

_JOINT_SECRET = bytes(range(32))
_JOINT_SLOT = bytes(range(32, 64))
_JOINT_CELL = 512


def _joint_cell(data: bytes) -> None:
    """The plaintext of a joint cell, sealed under the right key, then opened."""
    inner = (data + bytes(_JOINT_CELL))[: _JOINT_CELL - NONCE_LEN - 16]
    nonce = bytes(NONCE_LEN)
    key = joint._cell_key(_JOINT_SECRET, _JOINT_SLOT)
    cell = nonce + aead_seal(key, nonce, inner, _JOINT_SLOT)
    chunk = joint.open_cell(cell, _JOINT_SLOT, _JOINT_SECRET, _JOINT_CELL)
    if not chunk.index < chunk.count:
        raise AssertionError("joint chunk numbering accepted out of range")


# -- roster, identities, messages -------------------------------------------------------


def _roster(data: bytes) -> None:
    signed = rs.SignedRoster.decode(data)
    _same(signed.encode(), data, "signed roster")
    if rs.SignedRoster.decode(signed.encode()) != signed:
        raise AssertionError("signed roster: decode(encode(x)) != x")
    kit = _pair().a.mission
    rs.verify_chain(rs.mission_id(kit.chain[0].roster), (signed,))


def _message(data: bytes) -> None:
    msg = SealedMessage.decode(data)
    _same(msg.encode(), data, "sealed message")
    if SealedMessage.decode(msg.encode()) != msg:
        raise AssertionError("sealed message: decode(encode(x)) != x")
    Header.decode(msg.header.encode())
    Announcement.decode(msg.announcement)
    roster = _pair().a.mission.roster
    signers = valid_signers(msg, roster)
    if not signers <= {o.officer_id for o in roster.officers}:
        raise AssertionError("a signer outside the roster was accepted")


def _offer(data: bytes) -> None:
    offer = ChannelOffer.decode(data)
    _same(offer.encode(), data, "channel offer")


# -- cards -----------------------------------------------------------------------------


def _card_text(data: bytes, prefix: str) -> str:
    """Raw text when the input starts with 0xff, else the input armored under ``prefix``."""
    from backchannel.client import cards

    if data[:1] == b"\xff":
        return data[1:].decode("utf-8", "replace")
    return cards.encode_text(prefix, data)


def _officer_card(data: bytes) -> None:
    from backchannel.client import cards

    card = cards.OfficerCard.decode(_card_text(data, cards.OFFICER_PREFIX))
    if cards.OfficerCard.decode(card.encode()) != card:
        raise AssertionError("officer card: decode(encode(x)) != x")


def _mission_card(data: bytes) -> None:
    from backchannel.client import cards

    card = cards.MissionCard.decode(_card_text(data, cards.MISSION_PREFIX))
    if cards.MissionCard.decode(card.encode()) != card:
        raise AssertionError("mission card: decode(encode(x)) != x")


def _offer_card(data: bytes) -> None:
    from backchannel.client import cards

    cards.decode_offer(_card_text(data, cards.OFFER_PREFIX))


# -- the log: leaves, heads, proofs, evidence ---------------------------------------------


def _proofs(data: bytes) -> None:
    """``verify_inclusion`` and ``verify_consistency`` on sizes, hashes and paths from the input."""
    r = Reader(data)
    mode, a, b = r.u8(), r.u64() >> (r.u8() % 64), r.u64() >> (r.u8() % 64)
    h1, h2 = r.fixed(32), r.fixed(32)
    path = [r.fixed(32) for _ in range(min(r.remaining() // 32, 70))]
    if mode & 1:
        merkle.verify_inclusion(h1, a, b, path, h2)
    else:
        merkle.verify_consistency(a, b, h1, h2, path)


def _evidence(data: bytes) -> None:
    kind = None
    with contextlib.suppress(DecodeError):
        kind = evidence.evidence_kind(data)
    line = evidence.verify_misbehaviour(data)
    if kind is None or not line.startswith(kind):
        raise AssertionError("evidence verified but its kind does not match what it proves")


def _absence(data: bytes) -> None:
    absence = misbehaviour.Absence.decode(data)
    _same(absence.encode(), data, "statement of absence")


def _signed_head(data: bytes) -> None:
    signed = misbehaviour.SignedHead.decode(data)
    _same(signed.encode(), data, "signed head")


def _gossip(data: bytes) -> None:
    r = Reader(data)
    gossip = misbehaviour.Gossip.read(r)
    r.end()
    _same(gossip.encode(), data, "gossip")


# -- batch bodies ------------------------------------------------------------------------


def _query(data: bytes) -> None:
    r = Reader(data)
    query = bt.Query.read(r)
    r.end()
    _same(query.encode(), data, "log query")


def _query_answer(data: bytes) -> None:
    r = Reader(data)
    answer = bt.QueryAnswer.read(r)
    r.end()
    w = Writer()
    answer.encode(w)
    _same(w.bytes(), data, "log query answer")


def _log_bundle(data: bytes) -> None:
    r = Reader(data)
    bundle = bl.LogBundle.read(r)
    r.end()
    w = Writer()
    bundle.write(w)
    _same(w.bytes(), data, "log bundle")
    bundle.head()


def _fetch_answer(data: bytes) -> None:
    # The first byte: the padding (its low 7 bits) and whether the intake was asked.
    pad_to = (data[0] & 0x7F) if data else 1
    intake = bool(data[0] & 0x80) if data else False
    answer = bt.FetchBatchAnswer.decode(data[1:], pad_to, intake)
    _same(answer.encode(pad_to), data[1:], "fetch batch answer")
    answer.places()
    answer.absence()


#: The slots a compact answer's fuzzed fetch asked (the second byte says how many).
_COMPACT_ASKED = tuple(hashlib.sha256(b"slot" + bytes([i])).digest() for i in range(8))


def _fetch_answer_compact(data: bytes) -> None:
    # The first byte as for the full answer; the second: how many of eight slots were asked.
    pad_to = (data[0] & 0x7F) if data else 1
    intake = bool(data[0] & 0x80) if data else False
    asked = _COMPACT_ASKED[: (data[1] % 9) if len(data) > 1 else 0]
    answer = bt.FetchBatchAnswer.decode_compact(data[2:], asked, "mission-b", pad_to, intake)
    shared = data[2:3] == bytes([bt.SHARED_VERSION])  # each batch's proof once
    _same(answer.encode_compact(asked, pad_to, shared=shared), data[2:], "compact fetch answer")
    answer.places()
    answer.absence()


def _deposit_answer(data: bytes) -> None:
    answer = bt.DepositBatchAnswer.decode(data)
    compact = data[:1] == bytes([bt.COMPACT_ANSWER_VERSION])
    _same(answer.encode(compact=compact), data, "deposit batch answer")
    answer.places()


def _deposit_answer_shared(data: bytes) -> None:
    """The shared answer (version 3) to a deposit of four cells."""
    from tests.protocol.test_batch_proofs import DEPOSITED

    batch = bt.DepositBatch(0, DEPOSITED, compact=True, shared=True)
    answer = bt.DepositBatchAnswer.decode(data, batch)
    _same(answer.encode(shared=True), data, "shared deposit batch answer")
    answer.places()


# -- the relay's JSON request bodies -----------------------------------------------------


def _api_body(data: bytes) -> None:
    """A JSON body through the relay's body reader, then the ``slots`` and credential checks."""
    from backchannel.relay import requests

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": data, "more_body": False}

    async def body() -> dict[str, object]:
        got = await requests.receive_body(
            receive, "application/json", str(len(data)), 65536, "application/json"
        )
        if got != data:
            raise AssertionError("the body reader changed the body")
        import json

        try:
            value = json.loads(got)
        except (UnicodeDecodeError, ValueError):
            raise requests.HTTPRefusal(400, "the request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise requests.HTTPRefusal(400, "the request body must be a JSON object")
        return value

    coro = body()
    try:
        coro.send(None)
    except StopIteration as done:
        value = done.value
    else:  # pragma: no cover - the fake receive never suspends
        coro.close()
        raise AssertionError("the body reader suspended on a complete body")
    if "slots" in value:
        requests.slot_list(value, 64)
    for k in ("credential", "token"):
        v = value.get(k)
        if isinstance(v, str):
            cred = requests.decode_credential(v)
            if cred is not None and len(cred) != requests.CREDENTIAL_BYTES:
                raise AssertionError("a credential of the wrong length was accepted")
            requests.bearer_token(v)


def _relay_refusal() -> tuple[type[BaseException], ...]:
    from backchannel.relay.requests import HTTPRefusal

    return (HTTPRefusal,)


def _card_error() -> tuple[type[BaseException], ...]:
    from backchannel.client.cards import CardError

    return (CardError,)


_D = (DecodeError,)
_R = (RemoteProtocolError,)


# -- checkpoints and witnesses (C2SP formats) -------------------------------------------


def _note(data: bytes) -> None:
    n = note_fmt.Note.decode(data)
    # Signature lines may carry non-canonical base64; the decoded value is what counts.
    if note_fmt.Note.decode(n.encode()) != n:
        raise AssertionError("note: decode(encode(x)) != x")


def _add_checkpoint(data: bytes) -> None:
    req = note_fmt.AddCheckpoint.decode(data)
    if note_fmt.AddCheckpoint.decode(req.encode()) != req:
        raise AssertionError("add-checkpoint: decode(encode(x)) != x")


@functools.cache
def _witness():  # type: ignore[no-untyped-def]
    import tempfile
    from pathlib import Path

    from backchannel.crypto.notesig import Ed25519NoteKey
    from backchannel.witness.service import Witness
    from backchannel.witness.state import WitnessState, create_keys

    # On tmpfs where there is one: the witness commits (and syncs) its state.
    shm = Path("/dev/shm")
    directory = Path(tempfile.mkdtemp(prefix="fuzz-witness-", dir=shm if shm.is_dir() else None))
    witness = Witness("witness.fuzz/w", create_keys(directory), WitnessState(directory), lambda: 0)
    log_key = Ed25519NoteKey(bytes(32))
    witness.state.add_log(note_fmt.Verifier("relay.fuzz/log", 1, log_key.public).vkey())
    return witness


def _witness_request(data: bytes) -> None:
    # Whatever arrives, the witness answers with cosignatures or an HTTP refusal;
    # then it forgets the head, so every input meets a witness at size 0.
    witness = _witness()
    witness.add_checkpoint(data)
    # Cosigned: forget the head, so every input meets a witness at size 0.
    witness.state.advance("relay.fuzz/log", lambda head: (0, merkle.EMPTY_ROOT))


# -- the public intake ---------------------------------------------------------------


#: The relay and the witness the checkpoint-answer target checks against (seeds.py).
FUZZ_WITNESS_SEED = bytes([4]) * 32


@functools.cache
def _witness_rule():  # type: ignore[no-untyped-def]
    from backchannel.crypto.notesig import Ed25519NoteKey
    from backchannel.protocol.witnessing import WitnessRule

    public = Ed25519NoteKey(FUZZ_WITNESS_SEED).public
    key = note_fmt.Verifier("witness.fuzz/w", note_fmt.TYPE_COSIGNATURE_ED25519, public)
    return WitnessRule((key,), 1)


def _checkpoint_answer(data: bytes) -> None:
    """Decode, re-encode, and check against the batch codec's relay key and head."""
    from backchannel.protocol import witnessing as wt
    from tests.protocol import test_batch_codec as bc

    answer = wt.CheckpointAnswer.decode(data)
    _same(answer.encode(), data, "checkpoint answer")
    relay_key = misbehaviour.relay_key_bytes(bc.KEY.verify_key)
    seen = wt.check_checkpoint(answer, relay_key, bc.HEAD, _witness_rule(), 1_800_000_000)
    if seen.enough != bool(seen.names):
        raise AssertionError("one named witness is enough exactly when it counted")


def _anchor_opening(data: bytes) -> None:
    """Decode, re-encode, and take the digest (every entry present, then one missing)."""
    opening = aa.AnchorOpening.decode(data)
    _same(opening.encode(), data, "anchor opening")
    digest = opening.digest(lambda officer_id, seq: officer_id * 2)
    if len(digest) != 32:
        raise AssertionError("an anchor's digest is 32 bytes")
    if opening.heads:
        with contextlib.suppress(aa.AnchorProblem):
            opening.digest(lambda officer_id, seq: None)
            raise AssertionError("an opening with an entry missing gave a digest")


def _mission_policy(data: bytes) -> None:
    from backchannel.protocol.policy import MissionPolicy

    r = Reader(data)
    policy = MissionPolicy.read(r)
    r.end()
    _same(policy.encode(), data, "mission policy")


def _intake_card(data: bytes) -> None:
    """A card as binary (canonical) and as text (armor, an address with '#')."""
    from backchannel.protocol import intake as pi

    if data[:1] == b"\xff":
        text = data[1:].decode("utf-8", "replace")
        card = pi.IntakeCard.from_text(text)
        if pi.IntakeCard.from_text(card.to_text()) != card:
            raise AssertionError("intake card: from_text(to_text(x)) != x")
        return
    card = pi.IntakeCard.decode(data)
    _same(card.encode(), data, "intake card")
    if pi.IntakeCard.decode(card.encode()) != card:
        raise AssertionError("intake card: decode(encode(x)) != x")


def _intake_request(data: bytes) -> None:
    """A request's plaintext, padded to its size: canonical when accepted."""
    from backchannel.protocol import intake as pi

    padded = data[: pi.REQUEST_PLAINTEXT_SIZE]
    padded += bytes(pi.REQUEST_PLAINTEXT_SIZE - len(padded))
    req = pi.IntakeRequest.decode(padded)
    _same(req.encode(), padded, "intake request")


def _intake_answer(data: bytes) -> None:
    """Any cell at a reply id: opened only under the code's key, else refused."""
    from backchannel.protocol import intake as pi

    card = _intake_fuzz_card()
    pi.open_answer(card, bytes(16), data)


@functools.cache
def _intake_fuzz_card():  # type: ignore[no-untyped-def]
    from backchannel.protocol import intake as pi

    key = pi.intake_private_key(bytes(32), bytes(32))
    return pi.IntakeCard("Fuzz", bytes(32), "https://relay.fuzz", "fuzz", key.public_key, 8)


def _witness_refusal() -> tuple[type[BaseException], ...]:
    from backchannel.witness.service import Refusal

    return (Refusal,)


def _targets() -> dict[str, Target]:
    c = _canonical
    ts = [
        # cells
        Target("cell_content", _cell_content, _D),
        Target("reassemble", _reassemble, _D),
        # cards
        Target("officer_card", _officer_card, _card_error(), max_len=16384),
        Target("mission_card", _mission_card, _card_error(), max_len=32768),
        Target("offer_card", _offer_card, _card_error(), max_len=16384),
        Target("intake_card", _intake_card, _D, max_len=8192),
        Target("intake_request", _intake_request, _D, max_len=4096),
        Target("intake_answer", _intake_answer, _R, max_len=8192),
        # roster entries, identities
        Target("roster", _roster, _R, max_len=16384),
        Target("mission_policy", _mission_policy, _D, max_len=16384),
        Target("officer", c(OfficerPublic.decode, OfficerPublic.encode, "officer"), _D),
        Target("epoch_cert", c(EpochKeyCert.decode, EpochKeyCert.encode, "epoch cert"), _D),
        # sealed messages
        Target("header", c(Header.decode, Header.encode, "header"), _D),
        Target("message", _message, _R),
        Target("announcement", c(Announcement.decode, Announcement.encode, "announcement"), _D),
        Target("payload", c(Payload.decode, Payload.encode, "payload"), _D),
        Target("share", c(Share.decode, Share.encode, "share"), _D),
        Target("channel_offer", _offer, _D, max_len=16384),
        # a channel's control objects
        Target("channel_rekey", c(rk.ChannelRekey.decode, rk.ChannelRekey.encode, "re-key"), _D),
        Target("rekey_ack", c(rk.RekeyAck.decode, rk.RekeyAck.encode, "re-key answer"), _D),
        Target(
            "channel_resume",
            c(rk.ChannelResume.decode, rk.ChannelResume.encode, "answer to a takeover"),
            _D,
        ),
        Target(
            "key_announcement",
            c(ka.KeyAnnouncement.decode, ka.KeyAnnouncement.encode, "key announcement"),
            _D,
            max_len=65536,
        ),
        Target(
            "signed_anchor",
            c(aa.SignedAnchor.decode, aa.SignedAnchor.encode, "signed anchor"),
            _D,
        ),
        Target("anchor_opening", _anchor_opening, _D),
        # joint objects
        Target("joint_object", c(joint.JointObject.decode, joint.JointObject.encode, "joint"), _D),
        Target("joint_cell", _joint_cell, _D),
        # log proofs and evidence
        Target("tree_head", c(merkle.TreeHead.decode, merkle.TreeHead.encode, "tree head"), _D),
        Target("log_leaf", c(misbehaviour.LogLeaf.decode, misbehaviour.LogLeaf.encode, "leaf"), _D),
        Target("signed_head", _signed_head, _D),
        Target("absence", _absence, _D),
        Target("gossip", _gossip, _D),
        Target("proofs", _proofs, _R),
        Target("evidence", _evidence, _R, max_len=16384),
        Target("checkpoint_answer", _checkpoint_answer, _R, max_len=16384),
        # batch bodies
        Target("deposit_batch", c(bt.DepositBatch.decode, bt.DepositBatch.encode, "deposit"), _D),
        Target("deposit_answer", _deposit_answer, _D, max_len=16384),
        Target("fetch_batch", c(bt.FetchBatch.decode, bt.FetchBatch.encode, "fetch"), _D),
        Target("fetch_answer", _fetch_answer, _D, max_len=16384),
        Target("fetch_answer_compact", _fetch_answer_compact, _D, max_len=16384),
        Target("deposit_answer_shared", _deposit_answer_shared, _D, max_len=16384),
        Target("log_bundle", _log_bundle, _D),
        Target("query", _query, _D),
        Target("query_answer", _query_answer, _D),
        Target("slot_read", c(bt.decode_slot_read, lambda s: s.encode(), "slot read"), _D),
        Target("entry", c(bt.decode_entry, lambda e: bt.encode_entry(*e), "entry"), _D),
        Target(
            "consistency",
            c(bt.decode_consistency, bt.encode_consistency, "consistency proof"),
            _D,
        ),
        # the relay's request bodies
        Target("api_body", _api_body, _relay_refusal()),
        # checkpoints, cosignatures and the witness's request
        Target("note", _note, _D, max_len=16384),
        Target(
            "checkpoint",
            c(note_fmt.Checkpoint.parse, lambda cp: cp.text(), "checkpoint"),
            _D,
        ),
        Target("add_checkpoint", _add_checkpoint, _D, max_len=16384),
        Target("witness_request", _witness_request, _witness_refusal(), max_len=16384),
    ]
    return {t.name: t for t in ts}


TARGETS = _targets()
