"""A recipient officer's share keys within one epoch, and the epoch's announcement:
keys taken out of order, each erased once used, and the bound on skipping; an
announcement opens only for its own channel, direction and held epoch key."""

from __future__ import annotations

import pytest

from backchannel.crypto import labels
from backchannel.crypto.primitives import hmac_sha256, sha256
from backchannel.errors import (
    AuthenticationError,
    DecodeError,
    ForkDetected,
    LocalProtocolError,
)
from backchannel.protocol.payload import note
from backchannel.protocol.sealing import (
    MAX_SKIP,
    RecvEpoch,
    ShareChain,
    accept_announcement,
    epoch_id_of,
)
from backchannel.protocol.transcript import Transcript
from tests.conftest import DetRng, make_pair

SECRET, EID, OID = bytes(range(32)), bytes(16), bytes([5]) * 16


def _expected_keys(n: int) -> list[bytes]:
    """Share keys 0..n-1 derived here, step by step, from the chain's root key."""
    ck = ShareChain.root(SECRET, EID, OID).chain_key
    keys = []
    for _ in range(n):
        keys.append(hmac_sha256(ck, labels.SHARE_CHAIN_KEY))
        ck = hmac_sha256(ck, labels.SHARE_CHAIN_NEXT)
    return keys


def _epoch() -> RecvEpoch:
    return RecvEpoch(EID, 1, ShareChain.root(SECRET, EID, OID))


def test_keys_in_order_follow_the_chain() -> None:
    want, epoch = _expected_keys(4), _epoch()
    for i in range(4):
        key, epoch = epoch.share_key(i)
        assert key == want[i]
        assert epoch.skipped == () and epoch.chain.index == i + 1


def test_keys_out_of_order_are_kept_until_used_then_erased() -> None:
    want = _expected_keys(6)
    key, epoch = _epoch().share_key(3)
    assert key == want[3]
    assert epoch.skipped == ((0, want[0]), (1, want[1]), (2, want[2]))
    key, epoch = epoch.share_key(1)
    assert key == want[1]
    assert epoch.skipped == ((0, want[0]), (2, want[2]))
    with pytest.raises(LocalProtocolError, match="used and erased"):
        epoch.share_key(1)
    with pytest.raises(LocalProtocolError, match="used and erased"):
        epoch.share_key(3)
    key, epoch = epoch.share_key(5)
    assert key == want[5]
    assert epoch.skipped == ((0, want[0]), (2, want[2]), (4, want[4]))
    for i in (4, 0, 2):
        key, epoch = epoch.share_key(i)
        assert key == want[i]
    assert epoch.skipped == () and epoch.chain.index == 6
    assert (epoch.epoch_id, epoch.officer_index) == (EID, 1)


def test_skipping_is_bounded() -> None:
    _, epoch = _epoch().share_key(MAX_SKIP)  # MAX_SKIP keys skipped: the most allowed
    assert len(epoch.skipped) == MAX_SKIP
    with pytest.raises(DecodeError, match="too many skipped"):
        _epoch().share_key(MAX_SKIP + 1)


# -- announcements --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sent():  # type: ignore[no-untyped-def]
    pair = make_pair(DetRng("share keys"))
    out = pair.cosign(pair.a, pair.compose(pair.a, 0, note("hello")), 1)
    assert out.message is not None and out.message.announcement
    return pair, out.message


def _accept(sent, **changes):  # type: ignore[no-untyped-def]
    pair, msg = sent
    kit = pair.b.mission.officers[0]
    args = {
        "raw": msg.announcement,
        "channel_id": msg.header.channel_id,
        "direction": msg.header.direction,
        "roster": pair.b.mission.roster,
        "officer": kit.officer,
        "epoch_keys": kit.epoch_keys,
    }
    args.update(changes)
    return accept_announcement(**args)


def test_an_announcement_opens_for_its_recipient(sent) -> None:  # type: ignore[no-untyped-def]
    _, msg = sent
    epoch = _accept(sent)
    assert epoch.epoch_id == msg.header.epoch_id == epoch_id_of(msg.announcement)
    assert epoch_id_of(msg.announcement) == sha256(labels.EPOCH_ID, msg.announcement)[:16]
    assert epoch.officer_index == 1 and epoch.chain.index == 0


def test_an_announcement_for_another_direction_or_channel_is_refused(sent) -> None:  # type: ignore[no-untyped-def]
    _, msg = sent
    with pytest.raises(AuthenticationError, match=r"^decryption failed$"):
        _accept(sent, direction=1 - msg.header.direction)
    with pytest.raises(AuthenticationError, match=r"^decryption failed$"):
        _accept(sent, channel_id=bytes(len(msg.header.channel_id)))


def test_an_announcement_needs_the_epoch_key_it_was_sealed_to(sent) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LocalProtocolError, match="no longer held"):
        _accept(sent, epoch_keys=[])


def test_an_officer_without_a_box_is_refused(sent) -> None:  # type: ignore[no-untyped-def]
    pair, msg = sent
    from backchannel.protocol.sealing import Announcement

    ann = Announcement.decode(msg.announcement)
    mine = pair.b.mission.officers[0].officer.officer_id
    others = tuple(b for b in ann.boxes if b[0] != mine)
    assert len(others) == len(ann.boxes) - 1
    stripped = Announcement(
        ann.channel_id, ann.direction, ann.epoch_no, ann.recipient_roster, others
    )
    with pytest.raises(AuthenticationError, match=r"^decryption failed$"):
        _accept(sent, raw=stripped.encode())


def test_the_box_is_bound_to_channel_direction_epoch_and_officer(sent) -> None:  # type: ignore[no-untyped-def]
    """The HPKE info of an officer's box, built here from its parts."""
    pair, msg = sent
    from backchannel.protocol.sealing import Announcement

    ann = Announcement.decode(msg.announcement)
    kit = pair.b.mission.officers[0]
    oid, key_epoch, box = next(b for b in ann.boxes if b[0] == kit.officer.officer_id)
    info = (
        labels.HPKE_EPOCH_SECRET
        + ann.channel_id
        + bytes([ann.direction])
        + ann.epoch_no.to_bytes(4, "big")
        + oid
    )
    key = next(k for k in kit.epoch_keys if k.epoch == key_epoch)
    assert len(key.private_key.open(box, info)) == 32


# -- the transcript's view of the peer ---------------------------------------------------


def test_a_peer_claiming_a_message_we_never_sent_is_a_fork() -> None:
    t = Transcript.start(bytes(32), 0)
    t.check_peer_view(0, t.sent[0])
    with pytest.raises(ForkDetected, match="never sent"):
        t.check_peer_view(1, t.sent[0])
    with pytest.raises(ForkDetected, match="differs from ours"):
        t.check_peer_view(0, bytes(32))


def test_a_chain_jumps_ahead_to_the_key_stepping_would_reach() -> None:
    """key_at(i) from the root is key i of the chain stepped one by one, for a
    jump of any length up to MAX_SKIP; one further is refused."""
    root = ShareChain.root(SECRET, EID, OID)
    expected = _expected_keys(MAX_SKIP + 1)
    for index in (0, 1, 2, 7, MAX_SKIP):
        key, after = root.key_at(index)
        assert key == expected[index], index
        assert after.index == index + 1
        assert after.key_at(index + 1)[0] == _expected_keys(index + 2)[index + 1]
    with pytest.raises(DecodeError, match="too far ahead"):
        root.key_at(MAX_SKIP + 1)
