"""protocol/rekey.py against its specification (docs/spec/protocol-v1.md §7.5),
recomputed with pyca directly, and at the edges its attack tests do not reach."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backchannel.errors import AuthenticationError, DecodeError, RemoteProtocolError
from backchannel.protocol import rekey as rk
from backchannel.protocol import rekeying as rkg
from backchannel.protocol import roster as rs
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.identity import EpochKey, Officer
from tests.conftest import DetRng

P = b"backchannel/v1/"
CID = bytes(range(16))
MISSION = bytes(range(32, 64))


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def test_the_seed_commitment_chain_and_acknowledgement_are_the_specifications() -> None:
    secret, seed = secrets.token_bytes(32), secrets.token_bytes(32)
    info = P + b"rekey/seed" + MISSION + (7).to_bytes(4, "big") + CID
    assert rk.seed_for(secret, MISSION, 7, CID) == _hkdf(secret, None, info)
    assert rk.commitment(seed) == hashlib.sha256(P + b"rekey/commitment" + seed).digest()
    chain = rk.chain_for(seed, CID, 1234)
    assert chain.round == 1234
    assert chain.chain_key == _hkdf(_hkdf(seed, CID, P + b"rekey/chain"), None, P + b"slot-chain")
    key = _hkdf(seed, CID, P + b"rekey/ack")
    want = hmac.new(key, P + b"rekey/ack" + CID + (99).to_bytes(8, "big"), "sha256").digest()
    assert rk.make_ack(seed, CID, 99) == rk.RekeyAck(99, want)
    with pytest.raises(DecodeError, match="wrong length"):
        rk.seed_for(secret[:31], MISSION, 7, CID)


def test_an_acknowledgement_binds_its_base_round_and_its_channel() -> None:
    seed = secrets.token_bytes(32)
    ack = rk.make_ack(seed, CID, 500)
    rk.verify_ack(ack, seed, CID)
    with pytest.raises(AuthenticationError):
        rk.verify_ack(rk.RekeyAck(501, ack.mac), seed, CID)
    with pytest.raises(AuthenticationError):
        rk.verify_ack(ack, seed, bytes(16))
    with pytest.raises(AuthenticationError):
        rk.verify_ack(ack, secrets.token_bytes(32), CID)
    assert rk.RekeyAck.decode(ack.encode()) == ack
    with pytest.raises(DecodeError, match="acknowledgement"):
        rk.RekeyAck.decode(b"\x01" + ack.encode()[1:])


def test_a_device_that_does_not_send_takes_the_base_from_the_acknowledgement() -> None:
    """Its move waits for the base when the answer comes before it (the peer's
    rounds ran behind), and its chain starts there."""
    seed = secrets.token_bytes(32)
    out = rkg.take_ack(rkg.Rekeying(seed), rk.make_ack(seed, CID, 900), CID, 880, 0)
    k = out.rekeying
    assert k is not None and k.base == 900 and k.in_switch == 900
    assert k.chain == rk.chain_for(seed, CID, 900)
    later = rkg.take_ack(rkg.Rekeying(seed), rk.make_ack(seed, CID, 900), CID, 950, 0).rekeying
    assert later is not None and later.in_switch == 951


def _kit(rng: DetRng) -> tuple[Officer, list[EpochKey]]:
    return Officer.generate("Smith", rng), [EpochKey.generate(e, rng) for e in (1, 2)]


def test_the_seed_opens_with_an_older_epoch_key_and_only_at_its_length(rng: DetRng) -> None:
    ny = [Officer.generate(n, rng) for n in ("Pak", "Kim")]
    roster = rs.new_genesis("New York", [o.public for o in ny], 2, rng(rs.NONCE_LEN))
    signed = rs.SignedRoster(roster, tuple(rs.sign_roster(roster, o) for o in ny))
    smith, keys = _kit(rng)
    old_cert = keys[0].certify(smith)
    seed = secrets.token_bytes(32)
    sigs = tuple(rk.sign_statement(o, CID, MISSION, 0, seed) for o in ny)
    rekey = rk.make_rekey(CID, MISSION, signed, 10, seed, (old_cert,), sigs)
    newest_first = tuple(k.private_key for k in reversed(keys))
    assert rk.open_rekey(rekey, CID, roster, smith.officer_id, newest_first) == seed
    box = old_cert.public_key.seal(seed[:31], rk._box_info(CID, smith.officer_id))
    short = rk.ChannelRekey(MISSION, signed, 10, ((smith.officer_id, box),), sigs)
    with pytest.raises(AuthenticationError, match="does not open"):
        rk.open_rekey(short, CID, roster, smith.officer_id, newest_first)
    with pytest.raises(AuthenticationError, match="no seed for this officer"):
        rk.open_rekey(rekey, CID, roster, bytes(16), newest_first)


def test_a_rekey_decodes_with_one_box_per_officer_at_most(rng: DetRng) -> None:
    ny = [Officer.generate(n, rng) for n in ("Pak", "Kim")]
    roster = rs.new_genesis("New York", [o.public for o in ny], 2, rng(rs.NONCE_LEN))
    signed = rs.SignedRoster(roster, ())
    boxes = tuple((bytes([i]) * 16, b"box") for i in range(MAX_OFFICERS))
    full = rk.ChannelRekey(MISSION, signed, 3, boxes, ())
    assert rk.ChannelRekey.decode(full.encode()) == full
    over = rk.ChannelRekey(MISSION, signed, 3, (*boxes, (b"\xff" * 16, b"box")), ())
    with pytest.raises(DecodeError, match="too many sealed seeds"):
        rk.ChannelRekey.decode(over.encode())
    with pytest.raises(DecodeError, match="not a channel re-key"):
        rk.ChannelRekey.decode(b"\x02" + full.encode()[1:])


def test_the_statement_signed_is_the_specifications(rng: DetRng) -> None:
    """statement = channel_id || mission_id || u32 v || commitment, signed (hybrid)
    under "…/sig/channel-rekey"."""
    pak = Officer.generate("Pak", rng)
    seed = secrets.token_bytes(32)
    oid, sig = rk.sign_statement(pak, CID, MISSION, 3, seed)
    assert oid == pak.officer_id
    data = CID + MISSION + (3).to_bytes(4, "big") + rk.commitment(seed)
    pak.public.verify_key.verify_hybrid(sig, P + b"sig/channel-rekey", data)


def test_a_signed_roster_takes_two_signatures_per_officer_at_most(rng: DetRng) -> None:
    ny = [Officer.generate(n, rng) for n in ("Pak", "Kim")]
    roster = rs.new_genesis("New York", [o.public for o in ny], 2, rng(rs.NONCE_LEN))
    sig = rs.sign_roster(roster, ny[0])
    most = rs.SignedRoster(roster, (sig,) * (2 * MAX_OFFICERS))
    assert rs.SignedRoster.decode(most.encode()) == most
    with pytest.raises(DecodeError, match="too many roster signatures"):
        rs.SignedRoster.decode(rs.SignedRoster(roster, (sig,) * (2 * MAX_OFFICERS + 1)).encode())


def test_crossed_rekeys_combine_as_the_specification_says() -> None:
    seed_0, seed_1 = secrets.token_bytes(32), secrets.token_bytes(32)
    part_0 = hashlib.sha256(P + b"rekey/both" + CID + seed_0).digest()
    part_1 = hashlib.sha256(P + b"rekey/both" + CID + seed_1).digest()
    assert rk.seed_part(seed_0, CID) == part_0
    both = _hkdf(part_0 + part_1, CID, P + b"rekey/both")
    # Each side puts the part of the seed of the direction it sends in first or second.
    assert rk.combined_seed(part_0, part_1, 0, CID) == both
    assert rk.combined_seed(part_1, part_0, 1, CID) == both
    assert rk.combined_seed(part_1, part_0, 0, CID) != both
    ack = rk.make_ack(both, CID, 77, both=True)
    raw = ack.encode()
    assert raw[0] == rk.TAG_BOTH == 3 and rk.tag_of(raw) == 3
    assert rk.RekeyAck.decode(raw) == ack and ack.mac == rk.make_ack(both, CID, 77).mac
    assert rk.RekeyAck.decode(rk.make_ack(both, CID, 77).encode()).both is False


def _rekey(seed: bytes, base: int) -> rk.ChannelRekey:
    rng = DetRng(b"edges")
    roster = rs.new_genesis(
        "Washington", [Officer.generate("Smith", rng).public], 1, rng(rs.NONCE_LEN)
    )
    return rk.ChannelRekey(MISSION, rs.SignedRoster(roster, ()), base, (), ())


def test_the_crossing_state_machine_at_its_edges() -> None:
    own, theirs = secrets.token_bytes(32), secrets.token_bytes(32)
    ep = (CID, 0, True)
    mine = rkg.Rekeying(own, 100, rk.chain_for(own, CID, 100))
    crossed = rkg.take_rekey(mine, _rekey(theirs, 101), theirs, ep, 105).rekeying
    assert crossed is not None and crossed.both and crossed.awaiting
    assert crossed.base == 101 and crossed.via_in_from == 106 and crossed.via_out_from == 0
    # Our re-key's last piece, then the answer's: the via chain first, then the combined one.
    after = rkg.sent(crossed, 107)
    assert (after.via_out_from, after.out_switch) == (108, 0)
    after = rkg.sent(after, 109)
    assert (after.via_out_from, after.out_switch) == (108, 110)
    assert after.chain_at(107, True) is None and after.chain_at(108, True) == after.via_out
    assert after.chain_at(110, True) == after.chain and after.chain_at(106, False) == after.via_in
    # A third re-key while crossing, and a plain answer, are refused.
    with pytest.raises(RemoteProtocolError):
        rkg.take_rekey(crossed, _rekey(theirs, 102), theirs, ep, 110)
    plain = rk.make_ack(crossed.seed, CID, crossed.base)
    with pytest.raises(AuthenticationError, match="does not fit"):
        rkg.take_ack(crossed, plain, CID, 111, 0)
    # A device that does not send and never saw the peer's re-key cannot take a
    # crossing's answer; with the part of the peer's seed it can.
    both = rk.combined_seed(rk.seed_part(own, CID), rk.seed_part(theirs, CID), 0, CID)
    answer = rk.make_ack(both, CID, 101, both=True)
    with pytest.raises(AuthenticationError, match="one seen"):
        rkg.take_ack(rkg.Rekeying(own), answer, CID, 112, 0)
    waiting = rkg.Rekeying(own, peer_part=rk.seed_part(theirs, CID))
    moved = rkg.take_ack(waiting, answer, CID, 112, 0).rekeying
    assert moved is not None and moved.chain == rk.chain_for(both, CID, 101)
    assert moved.in_switch == 113 and not moved.peer_part
    with pytest.raises(AuthenticationError):
        rkg.take_ack(waiting, answer, CID, 112, 1)  # the parts in the other order


def test_settling_erases_each_chain_once_no_round_needs_it() -> None:
    old = rk.chain_for(b"\x01" * 32, CID, 100)
    own = rk.chain_for(b"\x02" * 32, CID, 105)
    theirs = rk.chain_for(b"\x03" * 32, CID, 104)
    both = rk.chain_for(b"\x04" * 32, CID, 106)
    # Nothing under way: the chain goes to the earlier of the next rounds.
    chain, k = rkg.settle(old, None, 110, 108)
    assert k is None and chain == old.advance(108)
    chain, k = rkg.settle(old, None, None, 112)  # a device that does not send
    assert k is None and chain == old.advance(112)
    # Crossed: ours on our via chain from 107, the peer's on its from 109, the
    # combined chain from 112 both ways.
    crossing = rkg.Rekeying(
        b"s", 106, both, out_switch=112, in_switch=112,
        via_out=own, via_out_from=107, via_in=theirs, via_in_from=109, both=True,
    )  # fmt: skip
    chain, k = rkg.settle(old, crossing, 108, 108)  # in still on the old chain
    assert k is not None and chain == old.advance(108)
    assert k.via_out == own.advance(108) and k.via_in == theirs.advance(108)
    assert k.chain == both.advance(108)
    chain, k = rkg.settle(old, crossing, 110, 109)  # both on via chains: the old one goes
    assert k is not None and chain == theirs.advance(109) and k.via_in is None
    assert k.via_out == own.advance(109) and k.chain == both.advance(109)
    chain, k = rkg.settle(old, crossing, 112, 110)  # out on the combined, in on its via
    assert k is not None and chain == theirs.advance(110) and k.via_in is None
    chain, k = rkg.settle(old, replace(crossing, via_in=None, via_in_from=0), 111, 112)
    assert k is not None and chain == own.advance(111) and k.via_out is None
    early_out = replace(
        crossing, out_switch=110
    )  # ours moved on first, the peer's still on its via
    chain, k = rkg.settle(old, early_out, 112, 110)
    assert k is not None and chain == theirs.advance(110) and k.via_in is None
    assert k.via_out == own.advance(110)
    chain, k = rkg.settle(old, crossing, 112, 113)  # both moved: only the combined one stays
    assert k is None and chain == both.advance(112)
    # A device that does not send, waiting for an answer (no chain yet), keeps waiting.
    waiting = rkg.Rekeying(b"s", via_in=theirs, via_in_from=109, peer_part=b"p")
    chain, k = rkg.settle(old, waiting, None, 109)
    assert k is not None and k.via_in is None and k.peer_part == b"p"
    assert chain == theirs.advance(109)
