"""``evidence verify`` says which relay a proof is about, and refuses one about another.

Anyone can make a relay key and have it sign two contradicting heads: such a
"proof" holds, about that key. So each proof that holds is printed with the
full fingerprint of its key, and ``--relay-key`` (what ``relay key`` prints, or
a mission card states) makes a proof about any other key not hold.
"""

from __future__ import annotations

import os
from pathlib import Path

from backchannel.crypto.signing import SigningKey
from backchannel.protocol.evidence import FORK, encode_evidence, evidence_text
from backchannel.protocol.merkle import TreeHead
from backchannel.protocol.misbehaviour import relay_key_fingerprint, sign_head_compact
from tests.e2e.conftest import backchannel, base_env


def _fabricated(path: Path) -> str:
    """A fork 'proof' signed by a key made for it; that key's fingerprint."""
    key = SigningKey(os.urandom(32), os.urandom(32))
    a = sign_head_compact(key, TreeHead(20, os.urandom(32), 1_796_625_180))
    b = sign_head_compact(key, TreeHead(20, os.urandom(32), 1_796_625_240))
    path.write_text(evidence_text(encode_evidence(FORK, key.verify_key, a, b)) + "\n")
    return relay_key_fingerprint(key.verify_key).hex()


def test_a_proof_about_another_relay_key_does_not_hold_for_the_named_one(tmp_path: Path) -> None:
    proof = tmp_path / "fork.txt"
    made_up = _fabricated(proof)
    env = base_env(BACKCHANNEL_HOME=str(tmp_path / "nobody"))  # no home is needed
    # Unnamed, it holds about its own key, and says which, in full.
    r = backchannel("--json", "evidence", "verify", proof, env=env)
    [result] = r.json["results"]
    assert r.code == 0 and result["holds"] and result["relay_key"] == made_up
    text = backchannel("evidence", "verify", proof, env=env)
    assert made_up in text.out and "--relay-key" in text.out + text.err
    # Named, the relay's own key: a proof about another key does not hold.
    ours = relay_key_fingerprint(SigningKey(os.urandom(32), os.urandom(32)).verify_key).hex()
    r = backchannel("--json", "evidence", "verify", "--relay-key", ours, proof, env=env)
    [result] = r.json["results"]
    assert r.code == 1 and not result["holds"] and "another relay key" in result["reason"]
    r = backchannel("--json", "evidence", "verify", "--relay-key", made_up, proof, env=env)
    assert r.code == 0 and r.json["results"][0]["holds"]
    bad = backchannel("evidence", "verify", "--relay-key", "1234", proof, env=env)
    assert bad.code == 2 and "64 hex digits" in bad.err
