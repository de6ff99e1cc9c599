"""Attacks by a single officer (a defector) on the two-person rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backchannel.client.harness import OfficerKit, Pair
from backchannel.crypto.sharing import Share
from backchannel.errors import (
    AuthenticationError,
    LocalProtocolError,
    NotEnoughShares,
    NotEnoughSignatures,
    SignatureError,
)
from backchannel.protocol.payload import note
from backchannel.protocol.sealing import (
    Announcement,
    _box_info,
    accept_announcement,
    decrypt_share,
    sign,
)
from tests.conftest import DetRng
from tests.helpers import force_queue


def test_solo_officer_cannot_queue_a_message(pair: Pair) -> None:
    draft = pair.compose(pair.a, 0, note("I alone decide"))
    with pytest.raises(NotEnoughSignatures):
        pair.send(pair.a, draft)
    assert pair.a.endpoint.pending_cells == 0


def test_solo_officer_message_is_refused_by_the_peer(pair: Pair) -> None:
    draft = pair.compose(pair.a, 0, note("I alone decide"))
    assert draft.message is not None
    force_queue(pair.a.endpoint, draft.message)
    with pytest.raises(SignatureError):
        pair.run_round()
    assert pair.b.inbox == []


def test_one_officer_signing_twice_counts_once(pair: Pair) -> None:
    draft = pair.compose(pair.a, 0, note("twice"))
    assert draft.message is not None
    author = pair.a.mission.officers[0].officer
    doubled = draft.message.with_signature(b"\x00" * 16, b"\x00" * 64)
    doubled = sign(doubled, author, pair.a.mission.roster)
    forged = doubled.__class__(
        doubled.header,
        doubled.announcement,
        doubled.content,
        doubled.shares,
        (doubled.signatures[-1], doubled.signatures[-1]),
    )
    force_queue(pair.a.endpoint, forged)
    with pytest.raises(SignatureError):
        pair.run_round()


def test_signer_not_on_the_pinned_roster_is_refused(pair: Pair, rng: DetRng) -> None:
    outsider = OfficerKit.create("Accomplice", rng).officer
    draft = pair.compose(pair.a, 0, note("with a friend"))
    assert draft.message is not None
    from backchannel.crypto import labels

    sig = outsider.signing_key.sign_ed25519(labels.SIG_MESSAGE, draft.message.digest)
    forged = draft.message.with_signature(outsider.officer_id, sig)
    force_queue(pair.a.endpoint, forged)
    with pytest.raises(SignatureError, match="not on the sender's pinned roster"):
        pair.run_round()


def test_officer_of_the_peer_mission_cannot_cosign_for_us(pair: Pair) -> None:
    draft = pair.compose(pair.a, 0, note("co-signed by the other side"))
    assert draft.message is not None
    peer_officer = pair.b.mission.officers[0].officer
    with pytest.raises(LocalProtocolError):
        sign(draft.message, peer_officer, pair.a.mission.roster)
    from backchannel.crypto import labels

    sig = peer_officer.signing_key.sign_ed25519(labels.SIG_MESSAGE, draft.message.digest)
    force_queue(pair.a.endpoint, draft.message.with_signature(peer_officer.officer_id, sig))
    with pytest.raises(SignatureError):
        pair.run_round()


def test_cosigner_refuses_a_ciphertext_that_differs_from_the_plaintext_shown(pair: Pair) -> None:
    draft = pair.compose(pair.a, 0, note("what is really sealed"))
    shown = draft.__class__(
        draft.state, note("what the co-signer is shown"), draft.message, draft.content_key
    )
    with pytest.raises(AuthenticationError):
        pair.cosign(pair.a, shown, 1)


def test_solo_recipient_officer_cannot_decrypt(pair: Pair) -> None:
    out = pair.cosign(pair.a, pair.compose(pair.a, 0, note("for two eyes pairs")), 1)
    pair.send(pair.a, out)
    pair.run_until_quiet()
    half = pair.open(pair.b, pair.b.inbox[0], [0])
    with pytest.raises(NotEnoughShares):
        half.open(pair.b.mission.roster)


def test_solo_recipient_officer_cannot_complete_with_a_made_up_share(pair: Pair) -> None:
    out = pair.cosign(pair.a, pair.compose(pair.a, 0, note("guess the other half")), 1)
    pair.send(pair.a, out)
    pair.run_until_quiet()
    half = pair.open(pair.b, pair.b.inbox[0], [0])
    fake = Share(1, 2, b"\x42" * 32)
    with pytest.raises(AuthenticationError):
        half.add_share(fake, pair.b.mission.roster)


def test_recipient_officer_cannot_decrypt_a_colleagues_share(pair: Pair) -> None:
    out = pair.cosign(pair.a, pair.compose(pair.a, 0, note("not yours")), 1)
    pair.send(pair.a, out)
    pair.run_until_quiet()
    msg = pair.b.inbox[0].message
    kit0 = pair.b.mission.officers[0]
    # His key does not open his colleague's epoch box...
    ann = Announcement.decode(msg.announcement)
    colleague_id, _, box = ann.boxes[1]
    info = _box_info(ann.channel_id, ann.direction, ann.epoch_no, colleague_id)
    with pytest.raises(AuthenticationError):
        kit0.epoch_keys[0].private_key.open(box, info)
    # ...and his own chain does not open his colleague's share.
    pair.share(pair.b, msg, 0)
    own = kit0.recv_epochs[msg.header.epoch_id]
    own_fresh = accept_announcement(
        msg.announcement,
        pair.terms.channel_id,
        msg.header.direction,
        pair.b.mission.roster,
        kit0.officer,
        kit0.epoch_keys,
    )
    posing = replace(own_fresh, officer_index=2)
    assert own.officer_index == 1
    with pytest.raises(AuthenticationError):
        decrypt_share(msg, posing)


def test_a_cosignature_forged_in_a_colleagues_name_is_refused(pair: Pair) -> None:
    """One officer adds a signature in his colleague's name: made-up bytes, the
    colleague's real signature of another message, or of this message's digest
    under another label (a receipt's). None of them counts, and the peer refuses
    the message."""
    from backchannel.crypto import labels
    from backchannel.protocol.sealing import valid_signers

    draft = pair.compose(pair.a, 0, note("signed in his name"))
    assert draft.message is not None
    roster = pair.a.mission.roster
    author, colleague = (o.officer for o in pair.a.mission.officers[:2])
    key = colleague.signing_key
    forgeries = (
        b"\x5a" * 64,
        key.sign_ed25519(labels.SIG_MESSAGE, bytes(32)),
        key.sign_ed25519(labels.SIG_RECEIPT, draft.message.digest),
    )
    for sig in forgeries:
        forged = draft.message.with_signature(colleague.officer_id, sig)
        assert valid_signers(forged, roster) == {author.officer_id}
    real = key.sign_ed25519(labels.SIG_MESSAGE, draft.message.digest)
    signed = draft.message.with_signature(colleague.officer_id, real)
    assert valid_signers(signed, roster) == {author.officer_id, colleague.officer_id}
    force_queue(pair.a.endpoint, draft.message.with_signature(colleague.officer_id, forgeries[1]))
    with pytest.raises(SignatureError):
        pair.run_round()
    assert pair.b.inbox == []
