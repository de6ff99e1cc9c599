"""Deniable channels: messages and receipts carry MACs both sides could compute.

The forgery test shows it in code: the receiving side, alone, with nothing but
its own device state and the sender's public keys, produces the very bytes the
sender sent, so those bytes prove nothing about who wrote them; and whatever
it forges is accepted by the same verifier as the real thing. The rest of the
file is the other side of the bargain: to anyone but the two sides the MAC is
as binding as signatures, and the channel's transcript still catches replays,
reorders and drops.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from backchannel.client.harness import Pair, Side
from backchannel.errors import (
    AuthenticationError,
    DecodeError,
    GapDetected,
    LocalProtocolError,
    ReplayDetected,
    SignatureError,
)
from backchannel.protocol import cells, deniable
from backchannel.protocol.channel import Policy
from backchannel.protocol.endpoint import Endpoint
from backchannel.protocol.identity import EpochKeyCert
from backchannel.protocol.incoming import Incoming
from backchannel.protocol.message import SealedMessage
from backchannel.protocol.payload import Payload, note
from backchannel.protocol.sealing import SendEpoch, seal, start_epoch
from tests.conftest import DetRng, make_pair
from tests.helpers import force_queue


def deniable_pair(seed: str = "deniable", policy: Policy = Policy.DENIABLE) -> Pair:
    return make_pair(DetRng(seed), policy=policy)


def send(pair: Pair, side: Side, text: str, deniable: bool | None = None) -> SealedMessage:
    draft = pair.cosign(side, pair.compose(side, 0, note(text), deniable=deniable), 1)
    assert draft.message is not None
    pair.sent_signed.append(draft.message)
    pair.send(side, draft)
    return pair.sent_on_wire[-1]


def deliver(pair: Pair) -> None:
    pair.run_until_quiet()


def forge_from_peer(
    forger: Endpoint, certs: list[EpochKeyCert], payload: Payload, epoch_no: int, rng: DetRng
) -> SealedMessage:
    """What the receiving side can make alone: a message "from" the other side.

    It uses the forger's own endpoint (its view of the transcript and the
    channel's MAC root) and the recipients' public epoch certificates, which
    are its own: no key of the other side's.
    """
    recipients = forger.own_roster
    direction = forger.in_direction
    epoch: SendEpoch = start_epoch(forger.channel_id, direction, epoch_no, recipients, certs, rng)
    t = forger.transcript
    header = replace(
        forger.new_header(payload.kind, epoch, 0, deniable=True),
        direction=direction,
        seq=t.received_seq + 1,
        prev_hash=t.received[-1],
        peer_seq=t.next_seq - 1,
        peer_hash=t.sent[-1],
        sender_roster=forger.peer_roster.version,
    )
    msg, _, _ = seal(header, payload, epoch, recipients, rng)
    return deniable.authenticate(msg, forger.mac_root)


def copy(ep: Endpoint) -> Endpoint:
    fields = {f: getattr(ep, f) for f in ep.__dataclass_fields__}
    fields["outbox"], fields["partial"] = list(ep.outbox), list(ep.partial)
    return Endpoint(**fields)


def test_messages_and_receipts_on_a_deniable_channel_carry_macs_not_signatures() -> None:
    pair = deniable_pair()
    wire = send(pair, pair.a, "off the record: we could move on the fisheries")
    assert wire.deniable and wire.signatures == () and len(wire.mac) == 32
    assert SealedMessage.decode(wire.encode()) == wire
    # Copies of both sides take the sender's cell by hand, to look at the receipt the
    # receiver will send (the pair itself then runs its rounds as usual).
    a, b = copy(pair.a.endpoint), copy(pair.b.endpoint)
    r = a.next_send_round
    _, cell = a.cell_for_round(r, pair.rng(12))
    [msg] = b.receive(r, cell).messages
    receipt = b.receipt_due
    assert receipt is not None and msg.digest == wire.digest
    # Its "signature" is a MAC both sides could compute, zero-padded: no signature.
    t = b.transcript
    assert receipt.signature == deniable.receipt_field(
        deniable.receipt_tag(a.mac_root, a.channel_id, a.out_direction, t.received_seq,
                             t.received[-1])
    )  # fmt: skip
    with pytest.raises(SignatureError):
        receipt.verify(a.channel_id, a.out_direction, pair.b.mission.roster)
    # A receipt signed the way channels for the record sign them is refused here.
    signed = cells.Receipt.make(a.channel_id, a.out_direction, t.received_seq, t.received[-1],
                                pair.b.mission.officers[0].officer)  # fmt: skip
    with pytest.raises(AuthenticationError):
        deniable.verify_receipt(signed.signature, a.mac_root, a.channel_id, a.out_direction,
                                t.received_seq, t.received[-1])  # fmt: skip
    # The rounds carry the receipt back, and the sender takes it.
    deliver(pair)
    assert pair.a.endpoint.delivered_seq == 1
    [incoming] = pair.b.inbox
    opened = pair.open(pair.b, incoming, [0, 1])
    assert opened.payload is not None and opened.payload.text.startswith("off the record")
    # The two-person rule still holds inside the sending mission: one officer alone
    # cannot queue, deniable or not.
    lonely = pair.compose(pair.a, 0, note("alone"))
    with pytest.raises(Exception, match="officers needed"):
        pair.send(pair.a, lonely)


def test_either_side_alone_forges_what_the_other_sent() -> None:
    """The receiver forges, from its own state, a message the same verifier accepts and
    that has the real one's form in every byte that is not fresh randomness."""
    text = "the text the receiver will later disown"
    pair = deniable_pair("forgery")
    receiver = pair.b
    forger = copy(receiver.endpoint)  # the receiver's device state, as seized
    forged = forge_from_peer(forger, receiver.mission.certs(), note(text), 1, DetRng("mine"))
    real = send(pair, pair.a, text)
    # The same form: lengths, and every header field but the epoch's random id.
    assert len(forged.encode()) == len(real.encode())
    assert [len(x) for x in (forged.announcement, forged.content, *forged.shares)] == [
        len(x) for x in (real.announcement, real.content, *real.shares)
    ]
    assert replace(forged.header, epoch_id=real.header.epoch_id) == real.header
    assert forged.deniable and real.deniable and not forged.signatures
    # The same verifier accepts both: the MAC, the transcript, the joint opening.
    for m in (real, forged):
        ep = copy(receiver.endpoint)
        deniable.verify(m, ep.mac_root, ep.channel_id, ep.in_direction)
        ep.transcript.accept(m.header, m.digest, check_peer=True)
        opened = pair.open(receiver, Incoming.received(m), [0, 1])
        assert opened.payload is not None and opened.payload.text == text
    # What the real sender sent still arrives as usual.
    deliver(pair)
    assert [i.message.digest for i in receiver.inbox] == [real.digest]


def test_the_sender_alone_forges_a_receipt_and_the_receiver_a_message_of_its_own() -> None:
    pair = deniable_pair()
    a, b = pair.a.endpoint, pair.b.endpoint
    assert a.mac_root == b.mac_root  # both sides derived the same root from the pairing
    # Each side can make any tag of either direction: nothing a tag shows is one side's.
    for direction in (0, 1):
        assert deniable.receipt_tag(a.mac_root, a.channel_id, direction, 5, bytes(32)) == (
            deniable.receipt_tag(b.mac_root, b.channel_id, direction, 5, bytes(32))
        )
        assert deniable.message_key(a.mac_root, a.channel_id, direction, 3) == (
            deniable.message_key(b.mac_root, b.channel_id, direction, 3)
        )


def test_to_anyone_without_the_channel_the_mac_binds() -> None:
    pair = deniable_pair()
    wire = send(pair, pair.a, "tamper with me")
    ep = pair.b.endpoint
    bad_mac = wire.with_mac(bytes(32))
    for forged in (
        bad_mac,
        wire.with_mac(bytes([wire.mac[0] ^ 1]) + wire.mac[1:]),
        replace(wire, content=wire.content[:-1] + bytes([wire.content[-1] ^ 1])),
    ):
        with pytest.raises(AuthenticationError):
            deniable.verify(forged, ep.mac_root, ep.channel_id, ep.in_direction)
    # A key learnt for one message forges no other: another seq, another key.
    keys = {deniable.message_key(ep.mac_root, ep.channel_id, 0, s) for s in range(1, 50)}
    assert len(keys) == 49
    with pytest.raises(AuthenticationError):
        deniable.verify(wire, pair.a.endpoint.mac_root, ep.channel_id, 1 - ep.in_direction)


def test_signed_and_deniable_messages_do_not_cross_channels_of_the_other_policy() -> None:
    record = make_pair(DetRng("record"))
    signed = record.cosign(record.a, record.compose(record.a, 0, note("for the record")), 1)
    assert signed.message is not None and not signed.message.header.deniable
    off = deniable_pair()
    ep = off.b.endpoint
    # A signed message is refused where only deniable ones are taken.
    with pytest.raises(AuthenticationError, match="deniable messages only"):
        deniable.verify(signed.message, ep.mac_root, ep.channel_id, ep.in_direction)
    # A message for the record cannot be given a MAC: its header (under the
    # signatures) says how it goes out.
    with pytest.raises(LocalProtocolError, match="header"):
        deniable.authenticate(signed.message, ep.mac_root)
    # Nor can a channel for the record make or take a deniable one.
    with pytest.raises(LocalProtocolError, match="for the record"):
        record.compose(record.a, 0, note("deniably?"), deniable=True)
    flipped = replace(signed.message, header=replace(signed.message.header, deniable=True))
    force_queue(record.a.endpoint, deniable.authenticate(flipped, ep.mac_root))
    with pytest.raises(AuthenticationError, match="for the record"):
        record.run_until_quiet()


def test_an_authenticator_that_disagrees_with_its_header_is_refused() -> None:
    pair = deniable_pair("either", Policy.EITHER)
    wire = send(pair, pair.a, "sent deniably", deniable=True)
    assert wire.header.deniable and wire.deniable
    # The MAC stripped and signatures put back (what the sending mission holds): the
    # header still says deniable, so the receiver refuses it.
    [draft_sigs] = [pair.sent_signed[-1].signatures]
    swapped = replace(wire, mac=b"", signatures=draft_sigs)
    force_queue(pair.a.endpoint, swapped, record=False)
    with pytest.raises(AuthenticationError, match="does not match its header"):
        deliver(pair)


def test_on_a_channel_that_allows_both_the_author_chooses_message_by_message() -> None:
    pair = deniable_pair("either both ways", Policy.EITHER)
    first = send(pair, pair.a, "for the record")
    second = send(pair, pair.a, "off the record", deniable=True)
    deliver(pair)
    assert (first.deniable, len(first.signatures)) == (False, 2)
    assert (second.deniable, second.signatures) == (True, ())
    assert [i.message.deniable for i in pair.b.inbox] == [False, True]
    # Receipts stay signed on such a channel (only a deniable-only one makes them MACs).
    assert pair.a.endpoint.delivered_seq == 2 and not pair.a.endpoint.deniable


def test_a_contact_cannot_impersonate_the_mission_to_another_contact() -> None:
    # The mission's channels with two contacts: different pairings, different roots.
    with_first, with_second = deniable_pair("contact one"), deniable_pair("contact two")
    wire = send(with_first, with_first.a, "to contact one only")
    second = with_second.b.endpoint
    assert with_first.b.endpoint.mac_root != second.mac_root
    # Contact one re-tags it with everything he holds, for the other channel: refused.
    retagged = deniable.authenticate(
        replace(
            wire.with_mac(bytes(32)), header=replace(wire.header, channel_id=second.channel_id)
        ),
        with_first.b.endpoint.mac_root,
    )
    with pytest.raises(AuthenticationError):
        deniable.verify(retagged, second.mac_root, second.channel_id, second.in_direction)


def test_replays_reorders_and_drops_are_caught_as_on_channels_for_the_record() -> None:
    pair = deniable_pair()
    send(pair, pair.a, "first")
    deliver(pair)
    msg = pair.b.inbox[0].message
    force_queue(pair.a.endpoint, msg, record=False)  # the same message again
    with pytest.raises(ReplayDetected):
        deliver(pair)
    # A message whose first cell the relay dropped.
    pair2 = deniable_pair("drops")
    send(pair2, pair2.a, "x" * 9000)  # several cells
    r = pair2.a.endpoint.next_send_round
    pair2.a.endpoint.cell_for_round(r, pair2.rng(12))  # produced, never delivered
    _, cell = pair2.a.endpoint.cell_for_round(r + 1, pair2.rng(12))
    with pytest.raises(GapDetected):
        pair2.b.endpoint.receive(r + 1, cell)
    assert cells.fragment_capacity(4096) < 9000


# -- the keys as deniable-v1.md §2 and §3 write them, and each check alone ----------------


def _spec_hkdf(ikm: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


def _spec_hmac(key: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes, hmac

    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def test_macs_and_keys_are_the_ones_the_specification_writes() -> None:
    """Recomputed from deniable-v1.md with pyca directly: every input counts."""
    prefix = b"backchannel/v1/deniable/"
    secret, channel_id, head = bytes(range(32)), bytes(range(100, 116)), bytes(range(7, 39))
    root = _spec_hkdf(secret, prefix + b"root")
    assert deniable.mac_root(secret) == root
    for direction, seq in ((0, 1), (1, 1), (0, 2**40 + 3)):
        info = prefix + b"key/message" + channel_id + bytes([direction]) + seq.to_bytes(8, "big")
        assert deniable.message_key(root, channel_id, direction, seq) == _spec_hkdf(root, info)
        receipt_key = _spec_hkdf(root, prefix + b"key/receipt" + channel_id + bytes([direction]))
        tag = _spec_hmac(receipt_key, prefix + b"tag/receipt" + seq.to_bytes(8, "big") + head)
        assert deniable.receipt_tag(root, channel_id, direction, seq, head) == tag
    # And the message MAC, over the digest of a message the pair really sent.
    pair = deniable_pair("spec")
    wire = send(pair, pair.a, "the MAC as written")
    ep = pair.a.endpoint
    key = deniable.message_key(ep.mac_root, ep.channel_id, ep.out_direction, wire.header.seq)
    assert wire.mac == _spec_hmac(key, prefix + b"tag/message" + wire.digest)


def test_each_malformed_input_alone_is_refused() -> None:
    root, channel_id, head = bytes(32), bytes(16), bytes(32)
    for bad_root, bad_id, direction in ((bytes(31), channel_id, 0), (root, bytes(15), 0),
                                        (root, channel_id, 2)):  # fmt: skip
        with pytest.raises(DecodeError):
            deniable.message_key(bad_root, bad_id, direction, 1)
        with pytest.raises(DecodeError):
            deniable.receipt_tag(bad_root, bad_id, direction, 1, head)
    with pytest.raises(DecodeError):
        deniable.receipt_tag(root, channel_id, 0, 1, bytes(31))
    with pytest.raises(DecodeError):
        deniable.mac_root(bytes(31))


def test_a_receipt_tag_with_anything_in_its_padding_is_refused() -> None:
    root, channel_id, head = bytes(range(32)), bytes(16), bytes(32)
    tag = deniable.receipt_field(deniable.receipt_tag(root, channel_id, 1, 5, head))
    deniable.verify_receipt(tag, root, channel_id, 1, 5, head)  # as made: accepted
    for bad in (tag[:-1] + b"\x01", tag[:-1], tag + b"\x00"):
        with pytest.raises(AuthenticationError):
            deniable.verify_receipt(bad, root, channel_id, 1, 5, head)
    for seq, direction in ((6, 1), (5, 0)):
        with pytest.raises(AuthenticationError):
            deniable.verify_receipt(tag, root, channel_id, direction, seq, head)


def test_a_message_of_another_channel_or_direction_or_with_both_authenticators_is_refused(
) -> None:  # fmt: skip
    pair = deniable_pair("crossed")
    wire = send(pair, pair.a, "for this channel, this way")
    ep = pair.b.endpoint
    deniable.verify(wire, ep.mac_root, ep.channel_id, ep.in_direction)  # as sent: accepted
    # The right channel, the other direction; the right direction, another channel.
    with pytest.raises(AuthenticationError, match="another channel or direction"):
        deniable.verify(wire, ep.mac_root, ep.channel_id, 1 - ep.in_direction)
    with pytest.raises(AuthenticationError, match="another channel or direction"):
        deniable.verify(wire, ep.mac_root, bytes(16), ep.in_direction)
    # A MAC and signatures at once, or neither: not a deniable message.
    both = replace(wire, signatures=pair.sent_signed[-1].signatures)
    with pytest.raises(AuthenticationError, match="deniable messages only"):
        deniable.verify(both, ep.mac_root, ep.channel_id, ep.in_direction)
    with pytest.raises(AuthenticationError, match="deniable messages only"):
        deniable.verify(replace(wire, mac=b""), ep.mac_root, ep.channel_id, ep.in_direction)
