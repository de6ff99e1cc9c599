"""Write valid encodings of every shape into tests/fuzz/seeds/<target>/ (the fuzzers' seeds).

Run ``python -m tests.fuzz.seeds`` again after a format change. The fuzz run
(``make fuzz``) starts from these and keeps what it finds, minimized, in
tests/fuzz/corpus/<target>/; the short tests replay both.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from backchannel.client import cards
from backchannel.crypto.primitives import HASH_LEN
from backchannel.crypto.signing import HYBRID_SIG_LEN
from backchannel.protocol import audit_anchor as aa
from backchannel.protocol import batch as bt
from backchannel.protocol import cells, evidence, joint, merkle, misbehaviour
from backchannel.protocol import channel as ch
from backchannel.protocol import key_announce as ka
from backchannel.protocol import rekey as rk
from backchannel.protocol import witnessing as wt
from backchannel.protocol.codec import Writer
from backchannel.protocol.identity import OFFICER_ID_LEN
from backchannel.protocol.payload import meeting_request, note
from tests.fuzz.targets import _pair

SEEDS = Path(__file__).parent / "seeds"


def _h(i: int) -> bytes:
    return hashlib.sha256(bytes([i])).digest()


def _batch_seeds() -> dict[str, list[bytes]]:
    from tests.protocol import test_batch_codec as bc
    from tests.protocol import test_batch_compact as cm
    from tests.protocol import test_batch_proofs as pr

    return {
        "deposit_batch": [
            bc.DEPOSIT.encode(),
            bt.DepositBatch(0, ()).encode(),
            replace(bc.DEPOSIT, compact=True).encode(),
        ],
        "deposit_answer": [
            bc.DEPOSIT_ANSWER.encode(),
            bt.DepositBatchAnswer((bt.CellResult(201, bc.h(1)),), bt.LogBundle()).encode(),
            bc.DEPOSIT_ANSWER.encode(compact=True),
            bt.DepositBatchAnswer(
                (bt.CellResult(201, bc.h(2), bc.PLACE),), cm._shared_bundle()
            ).encode(compact=True),
        ],
        "fetch_batch": [
            bc.FETCH.encode(),
            bt.FetchBatch(0, 1, ()).encode(),
            replace(bc.FETCH_INTAKE, compact=True).encode(),
        ],
        "fetch_answer": [
            b"\x01" + bc.FETCH_ANSWER.encode(),
            bytes([64]) + bc.FETCH_ANSWER.encode(64),
            b"\x01" + bt.FetchBatchAnswer(()).encode(),
        ],
        "deposit_answer_shared": [
            pr._deposit_answer().encode(shared=True),
            replace(pr._deposit_answer(), log=bt.LogBundle()).encode(shared=True),
        ],
        "fetch_answer_compact": [
            bytes([64, 5]) + cm.ANSWER.encode_compact(cm.ASKED, 64),
            bytes([64, 4]) + pr._fetch_answer().encode_compact(pr.ASKED, 64, shared=True),
            bytes([0x81, 5])
            + replace(cm.ANSWER, intake=((3, b"sealed"),)).encode_compact(cm.ASKED, 1),
            b"\x01\x00" + bt.FetchBatchAnswer(()).encode_compact(()),
        ],
        "log_bundle": [_bundle(bc.BUNDLE), _bundle(bt.LogBundle())],
        "query": [q.encode() for q in bc.QUERIES],
        "query_answer": [_answer(a) for a in bc.ANSWERS],
        "slot_read": [
            bc.SLOT_CELL.encode(),
            bt.SlotRead(absence=bc.ONE_ABSENT).encode(),
            bt.SlotRead(spent=True).encode(),
            bt.SlotRead(b"cell", None).encode(),
        ],
        "entry": [bt.encode_entry(bc.leaf(1), [bc.h(1)], [bc.h(2), bc.h(3)])],
        "consistency": [bt.encode_consistency([bc.h(1), bc.h(2)]), b""],
        "absence": [bc.ABSENCE, bc.ONE_ABSENT],
        "signed_head": [bc.SIGNED, misbehaviour.sign_head(bc.KEY, bc.HEAD)],
        "tree_head": [bc.HEAD.encode(), merkle.TreeHead(0, merkle.EMPTY_ROOT, 5).encode()],
        "log_leaf": [bc.leaf(3)],
        "gossip": [
            misbehaviour.Gossip(bc.SIGNED).encode(),
            misbehaviour.Gossip(bc.SIGNED, misbehaviour.DepositNote(4, bc.h(2), 7, 1)).encode(),
        ],
    }


def _bundle(b: bt.LogBundle) -> bytes:
    w = Writer()
    b.write(w)
    return w.bytes()


def _answer(a: bt.QueryAnswer) -> bytes:
    w = Writer()
    a.encode(w)
    return w.bytes()


def _log_seeds() -> dict[str, list[bytes]]:
    from tests.merkle import test_misbehaviour as tm

    honest, forked, relay = tm.HONEST, tm.FORKED, tm.RELAY
    fork = evidence.encode_evidence(
        evidence.FORK, relay.verify_key, tm.signed(honest, 8, 60), tm.signed(forked, 8, 60)
    )
    rewind = evidence.encode_evidence(
        evidence.REWIND, relay.verify_key, tm.signed(honest, 9, 60), tm.signed(honest, 6, 120)
    )
    divergence = evidence.encode_evidence(
        evidence.DIVERGENCE,
        relay.verify_key,
        tm.signed(honest, 7, 60),
        tm.signed(forked, 10, 120),
        index=6,
        leaf_a=merkle.leaf_hash(b"leaf 6"),
        proof_a=honest.inclusion_proof(6, 7),
        leaf_b=merkle.leaf_hash(b"other 6"),
        proof_b=forked.inclusion_proof(6, 10),
    )

    def proof_input(mode: int, a: int, b: int, h1: bytes, h2: bytes, path: list[bytes]) -> bytes:
        w = Writer().u8(mode).u64(a).u8(0).u64(b).u8(0).fixed(h1, 32).fixed(h2, 32)
        return w.bytes() + b"".join(path)

    inclusion = proof_input(
        1, 3, 10, merkle.leaf_hash(b"leaf 3"), honest.root(10), honest.inclusion_proof(3, 10)
    )
    consistency = proof_input(
        0, 4, 10, honest.root(4), honest.root(10), honest.consistency_proof(4, 10)
    )
    checkpoint_fork = _checkpoint_answers()[2]
    return {
        "evidence": [fork, rewind, divergence, checkpoint_fork],
        "proofs": [inclusion, consistency],
    }


def _mission_seeds() -> dict[str, list[bytes]]:
    pair = _pair()
    kit = pair.a.mission
    out = pair.cosign(pair.a, pair.compose(pair.a, 0, note("seed")), 1)
    assert out.message is not None
    msg = out.message
    officer = kit.officers[0]
    unsigned = cards.MissionCard(
        kit.mission_id,
        tuple(kit.chain),
        tuple(kit.certs()),
        "https://relay.example",
        "mission-a",
        officer.officer.officer_id,
    )
    card = unsigned.sign(officer.officer)
    # Version 3: it carries a takeover of a channel (protocol-v1.md §7.8).
    card_v3 = replace(unsigned, takeovers=((pair.terms.channel_id, b"a re-key"),)).sign(
        officer.officer
    )
    offer, _ = ch.make_offer(kit.mission_id, pair.terms, 0, kit.certs(), pair.rng)
    offer = ch.sign_offer(offer, officer.officer)
    deniable_terms = replace(pair.terms, policy=ch.Policy.DENIABLE)
    deniable_offer, _ = ch.make_offer(kit.mission_id, deniable_terms, 0, kit.certs(), pair.rng)
    deniable_offer = ch.sign_offer(deniable_offer, officer.officer)

    def unarmor(text: str, prefix: str) -> bytes:
        return cards.decode_text(prefix, text, "a seed")

    share = bytes([1, 1]) + bytes(32)
    obj = joint.JointObject(
        joint.JointKind(1), bytes(16), officer.officer.officer_id, bytes(OFFICER_ID_LEN), b"body"
    )
    chunk = Writer().u8(1).fixed(bytes(range(16)), 16).u16(0).u16(1).u16(5).fixed(b"hello", 5)
    receipt = cells.Receipt(3, _h(1), officer.officer.officer_id, bytes(64))
    frag = cells.Fragment(bytes(16), 0, 2, b"fragment data")
    from tests.protocol import test_batch_codec as bc

    gossip = misbehaviour.Gossip(bc.SIGNED)
    full = cells.CellContent(receipt, frag, gossip)
    reassemble = Writer().u8(2)
    for i in range(2):
        reassemble.fixed(b"ab", 2).u8(i).u8(2).u8(3).fixed(b"xyz", 3)
    return {
        "cell_content": [
            cells.CellContent().encode(4096)[:64],
            full.encode(1024),
            cells.CellContent(receipt).encode(512),
        ],
        "reassemble": [reassemble.bytes()],
        "officer_card": [
            unarmor(
                cards.OfficerCard(officer.officer.public, officer.cert).encode(),
                cards.OFFICER_PREFIX,
            )
        ],
        "mission_card": [
            unarmor(card.encode(), cards.MISSION_PREFIX),
            unarmor(card_v3.encode(), cards.MISSION_PREFIX),
        ],
        "offer_card": [offer.encode()],
        "channel_offer": [offer.encode(), deniable_offer.encode()],
        "roster": [kit.chain[0].encode()],
        "officer": [officer.officer.public.encode()],
        "epoch_cert": [officer.cert.encode()],
        "channel_rekey": [
            rk.ChannelRekey(
                kit.mission_id,
                kit.chain[0],
                100,
                ((officer.officer.officer_id, b"sealed seed"),),
                ((officer.officer.officer_id, bytes(HYBRID_SIG_LEN)),),
            ).encode(),
            rk.ChannelRekey(kit.mission_id, kit.chain[0], 0, (), ()).encode(),
        ],
        "rekey_ack": [
            rk.make_ack(_h(1), pair.terms.channel_id, 100).encode(),
            rk.make_ack(_h(2), pair.terms.channel_id, 7, both=True).encode(),
        ],
        "channel_resume": [rk.make_resume(_h(1), pair.terms.channel_id, 120, 3, _h(2)).encode()],
        "key_announcement": [
            ka.KeyAnnouncement((officer.cert,)).encode(),
            ka.KeyAnnouncement(tuple(kit.certs())).encode(),
        ],
        "signed_anchor": [
            aa.SignedAnchor.make(kit.mission_id, 120, _h(3), officer.officer).encode()
        ],
        "anchor_opening": [
            aa.AnchorOpening(kit.mission_id, 120, ((bytes(16), 4), (bytes([1]) * 16, 1))).encode(),
            aa.AnchorOpening(kit.mission_id, 0, ()).encode(),
        ],
        "header": [msg.header.encode()],
        "message": [msg.encode(), msg.with_mac(bytes(range(32))).encode()],
        "announcement": [msg.announcement],
        "payload": [note("hello").encode(), meeting_request("m", "noon", "here").encode()],
        "share": [share],
        "joint_object": [obj.encode()],
        "joint_cell": [chunk.bytes()],
        "api_body": [
            b'{"slots": ["' + bytes(HASH_LEN).hex().encode() + b'"]}',
            b'{"credential": "' + b"A" * 43 + b'", "tenant": "mission-a"}',
        ],
    }


def _note_seeds() -> dict[str, list[bytes]]:
    from backchannel.crypto.notesig import Ed25519NoteKey, MLDSA44NoteKey
    from backchannel.protocol import note as nt

    log_key = Ed25519NoteKey(bytes(32))  # the key the witness target follows
    cp = nt.Checkpoint("relay.fuzz/log", 3, _h(3))
    signed = nt.sign_checkpoint(cp, cp.origin, log_key)
    cosigned = signed.with_signatures(
        [
            nt.cosign(cp, "witness.fuzz/w", Ed25519NoteKey(_h(4)), 1_800_000_000),
            nt.cosign(cp, "witness.fuzz/w", MLDSA44NoteKey(_h(5)), 1_800_000_000),
        ]
    )
    first = nt.AddCheckpoint(0, (), signed.encode()).encode()
    answers = _checkpoint_answers()
    grown = nt.AddCheckpoint(3, (_h(6), _h(7)), signed.encode()).encode()
    return {
        "note": [signed.encode(), cosigned.encode()],
        "checkpoint": [cp.text(), nt.Checkpoint("o", 0, _h(0), ("ext line",)).text()],
        "add_checkpoint": [first, grown],
        "witness_request": [first, nt.AddCheckpoint(0, (), cosigned.encode()).encode()],
        "checkpoint_answer": [a.encode() for a in answers[:2]],
        "mission_policy": [_policy_seed(), _fallback_policy_seed()],
    }


def _checkpoint_answers() -> tuple[wt.CheckpointAnswer, wt.CheckpointAnswer, bytes]:
    """Two checkpoint answers under the batch codec's relay key (one cosigned by the
    fuzz witness, one not), and a checkpoint fork against its head."""
    from backchannel.crypto import labels
    from backchannel.crypto.notesig import Ed25519NoteKey
    from backchannel.protocol import note as nt
    from tests.fuzz.targets import FUZZ_WITNESS_SEED
    from tests.protocol import test_batch_codec as bc

    origin = "relay.fuzz/log"
    cp_key = Ed25519NoteKey(_h(8))
    binding = bc.KEY.sign_ed25519(labels.SIG_CHECKPOINT_KEY, cp_key.public + origin.encode())
    cp = nt.Checkpoint(origin, bc.HEAD.size, bc.HEAD.root)
    signed = nt.sign_checkpoint(cp, origin, cp_key)
    witness = Ed25519NoteKey(FUZZ_WITNESS_SEED)
    cosigned = signed.with_signatures([nt.cosign(cp, "witness.fuzz/w", witness, 1_790_000_000)])
    fork = nt.sign_checkpoint(nt.Checkpoint(origin, bc.HEAD.size, _h(9)), origin, cp_key)
    blob = evidence.checkpoint_fork_evidence(
        bc.KEY.verify_key, bc.SIGNED, cp_key.public, binding, fork.encode()
    )
    return (
        wt.CheckpointAnswer(cp_key.public, binding, cosigned.encode()),
        wt.CheckpointAnswer(cp_key.public, binding, signed.encode()),
        blob,
    )


def _policy_seed() -> bytes:
    from backchannel.crypto.notesig import Ed25519NoteKey
    from backchannel.protocol import note as nt
    from backchannel.protocol import policy as mp

    key = nt.Verifier("witness.fuzz/w", nt.TYPE_COSIGNATURE_ED25519, Ed25519NoteKey(_h(4)).public)
    rule = wt.WitnessRule((key,), 1, 1800)
    return mp.MissionPolicy(1, prev_hash=mp.DEFAULT.hash, witnesses=rule).encode()


def _fallback_policy_seed() -> bytes:
    """Layout 4: a fallback relay with its key, periods and no witness."""
    from backchannel.protocol import policy as mp

    fallback = mp.FallbackRelay("https://relay-two.example:8443", _h(6))
    return mp.MissionPolicy(
        2, prev_hash=mp.DEFAULT.hash, epoch_seconds=7200, fallback=fallback
    ).encode()


def _intake_seeds() -> dict[str, list[bytes]]:
    from backchannel.protocol import intake as pi
    from tests.conftest import DetRng
    from tests.fuzz.targets import _intake_fuzz_card

    card = _intake_fuzz_card()
    req = pi.IntakeRequest(pi.Kind.MEDIA_TOUR, "Tour", "A crew of three", "desk@x", bytes(16))
    return {
        "intake_card": [card.encode(), b"\xff" + card.page_url().encode()],
        "intake_request": [req.encode().rstrip(b"\x00")],
        "intake_answer": [pi.seal_answer(card, bytes(16), "Agreed.", DetRng("answer"))],
    }


def main() -> None:
    seeds = {
        **_batch_seeds(), **_log_seeds(), **_mission_seeds(), **_note_seeds(), **_intake_seeds()
    }  # fmt: skip
    from tests.fuzz.targets import TARGETS

    missing = set(TARGETS) - set(seeds)
    assert not missing, f"no seed for {sorted(missing)}"
    for name, items in seeds.items():
        folder = SEEDS / name
        folder.mkdir(parents=True, exist_ok=True)
        for item in items:
            TARGETS[name].check(item)
            digest = hashlib.sha1(item).hexdigest()
            (folder / f"seed-{digest}").write_bytes(item)


if __name__ == "__main__":
    main()
