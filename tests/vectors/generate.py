"""Generate the protocol's known-answer vectors: ``protocol_v1.json``.

Run ``make vectors`` (or ``python tests/vectors/generate.py``). Every input is
fixed here; outputs come from the implementation at the time of generation and
are then frozen in the JSON, so any later change to a byte layout, label or
derivation fails ``test_protocol_vectors.py``. Parts drawn inside OpenSSL
(ML-DSA's hedged signing, HPKE encapsulation, PyCryptodome's Shamir
coefficients) cannot be pinned; for those the vectors hold an output recorded
once and the test checks the *opening* direction.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from backchannel.crypto import sharing
from backchannel.crypto.primitives import sha256
from backchannel.protocol import cells
from backchannel.protocol import channel as ch
from backchannel.protocol import roster as rs
from backchannel.protocol import transcript as tr
from backchannel.protocol.identity import EpochKey, Officer
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.message import Header
from backchannel.protocol.misbehaviour import Absence, DepositNote, Gossip, sign_head_compact
from backchannel.protocol.payload import MessageKind, note
from backchannel.protocol.sealing import SendEpoch, ShareChain, seal, sign
from backchannel.store import _log

OUT = Path(__file__).with_name("protocol_v1.json")


def seed(label: str, n: int) -> bytes:
    return hashlib.shake_256(b"backchannel vectors/" + label.encode()).digest(n)


class Counter:
    """Deterministic randomness for the pinned parts of sealing."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.i = 0

    def __call__(self, n: int) -> bytes:
        self.i += 1
        return seed(f"{self.label}/{self.i}", n)


def officers() -> list[Officer]:
    return [
        Officer.from_parts(f"Officer {i}", seed(f"ed{i}", 32), seed(f"ml{i}", 32)) for i in range(2)
    ]


def compute_officer() -> dict[str, Any]:
    o = officers()[0]
    return {
        "name": o.name,
        "ed25519_seed": seed("ed0", 32).hex(),
        "mldsa65_seed": seed("ml0", 32).hex(),
        "ed25519_public": o.public.verify_key.ed25519.hex(),
        "mldsa65_public_sha256": hashlib.sha256(o.public.verify_key.mldsa65).hexdigest(),
        "officer_id": o.officer_id.hex(),
        "ed25519_signature_of_abc_under_message_label": o.signing_key.sign_ed25519(
            b"backchannel/v1/sig/message", b"abc"
        ).hex(),
    }


def genesis() -> rs.Roster:
    return rs.new_genesis("New York", [o.public for o in officers()], 2, seed("nonce", 16))


def compute_roster() -> dict[str, Any]:
    g = genesis()
    return {
        "mission_name": "New York",
        "nonce": seed("nonce", 16).hex(),
        "threshold": 2,
        "encoding_sha256": hashlib.sha256(g.encode()).hexdigest(),
        "roster_hash": g.hash.hex(),
        "mission_id": rs.mission_id(g).hex(),
    }


def terms() -> ch.ChannelTerms:
    a, b = sorted([seed("mission x", 32), seed("mission y", 32)])
    return ch.ChannelTerms(a, b, seed("roster a", 32), seed("roster b", 32), 4096, 60)


def compute_channel() -> dict[str, Any]:
    t = terms()
    secret = ch.channel_secret(t, seed("contribution a", 32), seed("contribution b", 32))
    chain = ch.SlotChain.start(secret, 100)
    rounds = {}
    for r in (100, 101, 105):
        k = chain.advance(r).keys()
        rounds[str(r)] = {
            "slot_0": k.slots[0].hex(),
            "slot_1": k.slots[1].hex(),
            "cell_key_0": k.cell_keys[0].hex(),
            "cell_key_1": k.cell_keys[1].hex(),
        }
    return {
        "mission_a": t.mission_a.hex(),
        "mission_b": t.mission_b.hex(),
        "roster_hash_a": t.roster_hash_a.hex(),
        "roster_hash_b": t.roster_hash_b.hex(),
        "cell_size": 4096,
        "round_seconds": 60,
        "pairing_transcript": t.transcript().hex(),
        "channel_id": t.channel_id.hex(),
        "safety_number": ch.safety_number(t.mission_a, t.mission_b),
        "contribution_a": seed("contribution a", 32).hex(),
        "contribution_b": seed("contribution b", 32).hex(),
        "channel_secret": secret.hex(),
        "start_round": 100,
        "rounds": rounds,
    }


def compute_cell() -> dict[str, Any]:
    t = terms()
    secret = ch.channel_secret(t, seed("contribution a", 32), seed("contribution b", 32))
    keys = ch.SlotChain.start(secret, 100).keys()
    frag = cells.Fragment(seed("message id", 16), 0, 1, b"fragment data")
    nonce = seed("nonce", 12)
    cover = cells.seal_cell(cells.CellContent(), keys, t.channel_id, 0, 4096, nonce)
    real = cells.seal_cell(cells.CellContent(None, frag), keys, t.channel_id, 1, 4096, nonce)
    return {
        "round": 100,
        "nonce": nonce.hex(),
        "fragment_message_id": frag.message_id.hex(),
        "fragment_data": frag.data.hex(),
        "cover_direction_0_sha256": hashlib.sha256(cover).hexdigest(),
        "fragment_direction_1_sha256": hashlib.sha256(real).hexdigest(),
        "fragment_direction_1_first_64": real[:64].hex(),
    }


def compute_share_chain() -> dict[str, Any]:
    c = ShareChain.root(seed("epoch secret", 32), seed("epoch id", 16), seed("officer", 16))
    keys = []
    for i in range(3):
        k, c = c.key_at(i)
        keys.append(k.hex())
    return {
        "epoch_secret": seed("epoch secret", 32).hex(),
        "epoch_id": seed("epoch id", 16).hex(),
        "officer_id": seed("officer", 16).hex(),
        "share_keys": keys,
    }


def compute_message() -> dict[str, Any]:
    t = terms()
    recipients = genesis()
    offs = officers()
    chains = tuple(
        ShareChain.root(seed(f"epoch secret {i}", 32), seed("epoch id", 16), o.officer_id)
        for i, o in enumerate(offs)
    )
    epoch = SendEpoch(seed("epoch id", 16), b"", 0, chains, 0, announced=True)
    header = Header(
        MessageKind.NOTE,
        t.channel_id,
        0,
        1,
        tr.start_hash(t.channel_id, 0),
        0,
        tr.start_hash(t.channel_id, 1),
        0,
        0,
        epoch.epoch_id,
        0,
        1_700_000_000,
    )
    msg, key, _ = seal(header, note("Talks in Geneva?"), epoch, recipients, Counter("message"))
    for o in offs:
        msg = sign(msg, o, recipients)
    return {
        "note_text": "Talks in Geneva?",
        "created_at": 1_700_000_000,
        "content_key": key.hex(),
        "header": header.encode().hex(),
        "encoded_sha256": hashlib.sha256(msg.encode()).hexdigest(),
        "content_ciphertext": msg.content.hex(),
        "share_ciphertexts": [s.hex() for s in msg.shares],
        "digest": msg.digest.hex(),
        "message_id": msg.message_id.hex(),
        "signatures": [sig.hex() for _, sig in msg.signatures],
        "transcript_after": tr.step(header.prev_hash, msg.digest).hex(),
    }


def compute_shamir_gf256() -> dict[str, Any]:
    """A 2-of-3 and a 3-of-5 split (SLIP-0039's layout), every random byte from a counter."""
    out: dict[str, Any] = {}
    for k, n in ((2, 3), (3, 5)):
        secret = seed(f"shamir secret {k} of {n}", 32)
        shares = sharing.split(secret, k, n, Counter(f"shamir {k} of {n}"))
        out[f"{k}_of_{n}"] = {
            "k": k,
            "n": n,
            "secret": secret.hex(),
            "shares": [s.encode().hex() for s in shares],
        }
    return out


def compute_kem() -> dict[str, Any]:
    ek = EpochKey.from_parts(1, seed("mlkem seed", 64), seed("x25519", 32))
    info = b"backchannel vectors"
    box = ek.private_key.public_key.seal(b"epoch secret for officer 0......", info)
    return {
        "mlkem_seed": seed("mlkem seed", 64).hex(),
        "x25519_private": seed("x25519", 32).hex(),
        "public_key_sha256": hashlib.sha256(ek.private_key.public_key.raw).hexdigest(),
        "info": info.hex(),
        "sealed": box.hex(),
        "plaintext": b"epoch secret for officer 0......".hex(),
    }


def compute_relay_log() -> dict[str, Any]:
    """Gossip in a cell, a statement of absence, a compact head (Ed25519 is deterministic)."""
    key = _log.key_from_seeds(seed("relay ed25519", 32), seed("relay mldsa65", 32))
    head = TreeHead(7, seed("root", 32), 1_800_000_040)
    compact = sign_head_compact(key, head)
    gossip = Gossip(compact, DepositNote(101, seed("cell id", 32), 6, 2))
    absence = Absence.make(
        key, head, 1_800_000_060, "m-vectors", [seed("slot b", 32), seed("slot a", 32)]
    )
    t = terms()
    secret = ch.channel_secret(t, seed("contribution a", 32), seed("contribution b", 32))
    keys = ch.SlotChain.start(secret, 100).keys()
    content = cells.CellContent(None, None, gossip)
    sealed = cells.seal_cell(content, keys, t.channel_id, 0, 4096, seed("nonce", 12))
    return {
        "relay_key_fingerprint": hashlib.sha256(
            key.verify_key.ed25519 + key.verify_key.mldsa65
        ).hexdigest(),
        "compact_head": compact.hex(),
        "gossip": gossip.encode().hex(),
        "absence": absence.encode().hex(),
        "gossip_cell_direction_0_sha256": hashlib.sha256(sealed).hexdigest(),
    }


DETERMINISTIC = {
    "officer": compute_officer,
    "roster": compute_roster,
    "channel": compute_channel,
    "cell": compute_cell,
    "share_chain": compute_share_chain,
    "message": compute_message,
    "relay_log": compute_relay_log,
    "shamir_gf256": compute_shamir_gf256,
}
RECORDED_ONCE = {"kem_open": compute_kem}
#: Sections no code writes any more, kept from the file as they are:
#: shamir_2_of_3 holds shares of the GF(2^128) scheme that earlier versions split.
LEGACY = ("shamir_2_of_3",)


def main() -> None:
    vectors: dict[str, Any] = {
        "provenance": (
            "Generated by tests/vectors/generate.py from fixed inputs (SHAKE-256 of named "
            "labels). Deterministic sections are recomputed by the tests; kem_open holds outputs "
            "drawn once, and shamir_2_of_3 shares of the GF(2^128) scheme that earlier versions "
            "split; both are checked in the opening direction."
        ),
        "protocol_version": 1,
    }
    for name, fn in {**DETERMINISTIC, **RECORDED_ONCE}.items():
        vectors[name] = fn()
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    vectors.update({name: old[name] for name in LEGACY if name in old})
    vectors["self_check"] = sha256(json.dumps(vectors, sort_keys=True).encode()).hex()
    OUT.write_text(json.dumps(vectors, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
