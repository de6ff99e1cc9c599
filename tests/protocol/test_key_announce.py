"""Officers' new epoch keys announced in the channel (protocol/key_announce.py).

New York (Pak, Kim, Ri; Pak's device sends) tells Washington of Kim's new key
in the channel's own cells; Washington's devices check it against Kim's
signing key in the roster they hold.
"""

from __future__ import annotations

import copy
import secrets

import pytest

from backchannel.client.harness import MissionKit, Pair
from backchannel.errors import DecodeError, LocalProtocolError
from backchannel.protocol import key_announce as ka
from backchannel.protocol import rekey as rk
from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.identity import EpochKey, EpochKeyCert, Officer
from backchannel.protocol.payload import note
from tests.conftest import DetRng
from tests.protocol.test_channel_rekey import _inject, _round, _start, _until_moved


@pytest.fixture
def pair(rng: DetRng) -> Pair:
    ny = MissionKit.create("New York", ["Pak", "Kim", "Ri"], 2, rng)
    dc = MissionKit.create("Washington", ["Smith", "Jones", "Brown"], 2, rng)
    return Pair(ny, dc, rng=rng, start_round=100)


def _new_cert(officer: Officer, epoch: int, signer: Officer | None = None) -> EpochKeyCert:
    key = EpochKey.generate(epoch, secrets.token_bytes)
    cert = key.certify(officer)
    if signer is None:
        return cert
    forged = key.certify(signer)  # signed by another officer, named for this one
    return EpochKeyCert(officer.officer_id, epoch, cert.public_key, forged.signature)


def _announced(pair: Pair) -> list[EpochKeyCert]:
    return [c for res in pair.b.results for c in res.keys]


def test_a_new_key_reaches_the_peer_checked(pair: Pair) -> None:
    kim = pair.a.mission.officers[1].officer
    cert = _new_cert(kim, 2)
    pair.a.endpoint.announce_keys([cert])
    for _ in range(4):
        _round(pair)
    assert _announced(pair) == [cert]
    # The announcement took the place of cover: messages still flow behind it.
    out = pair.cosign(pair.a, pair.compose(pair.a, 0, note("after the key")), 1)
    pair.send(pair.a, out)
    for _ in range(4):
        _round(pair)
    assert len([m for res in pair.b.results for m in res.messages]) == 1


def test_a_key_signed_by_another_officer_is_refused_and_changes_nothing(pair: Pair) -> None:
    """Ri (still on the roster, holding the channel's keys) names a key of his
    own choosing for Kim: the signature is not Kim's."""
    ny = pair.a.mission
    kim, ri = ny.officers[1].officer, ny.officers[2].officer
    raw = ka.KeyAnnouncement((_new_cert(kim, 2, signer=ri),)).encode()
    # In New York's direction, as Ri's device (a copy of the sending one) would seal it.
    ep = _inject(pair, copy.deepcopy(pair.a.endpoint), raw, outgoing=True)
    assert len(ep.partial) == 1  # the first piece stays; the refused last one was not taken


def test_keys_of_officers_the_roster_does_not_name_are_left_for_the_card(pair: Pair) -> None:
    stranger = Officer.generate("Lee", DetRng(b"stranger"))
    kim = pair.a.mission.officers[1].officer
    ann = ka.KeyAnnouncement((_new_cert(stranger, 1), _new_cert(kim, 3)))
    got = ka.checked(ka.KeyAnnouncement.decode(ann.encode()), pair.a.mission.roster)
    assert [c.officer_id for c in got] == [kim.officer_id]


def test_an_announcement_names_one_to_seven_officers() -> None:
    kim = Officer.generate("Kim", DetRng(b"kim"))
    cert = _new_cert(kim, 2)
    most = ka.KeyAnnouncement((cert,) * MAX_OFFICERS)
    assert ka.KeyAnnouncement.decode(most.encode()) == most
    for bad in (ka.KeyAnnouncement(()), ka.KeyAnnouncement((cert,) * (MAX_OFFICERS + 1))):
        with pytest.raises(DecodeError, match="1 to 7"):
            ka.KeyAnnouncement.decode(bad.encode())
    with pytest.raises(DecodeError):
        ka.KeyAnnouncement.decode(most.encode() + b"\x00")
    assert rk.tag_of(most.encode()) == rk.TAG_KEYS


def test_only_the_sending_device_announces(pair: Pair) -> None:
    reader = copy.deepcopy(pair.a.endpoint)
    reader.sends = False
    with pytest.raises(LocalProtocolError, match="sends"):
        reader.announce_keys([_new_cert(pair.a.mission.officers[1].officer, 2)])


def test_an_announcement_queued_before_a_rekey_does_not_move_the_channel_early(
    pair: Pair,
) -> None:
    """Only the last piece of a re-key (or of an answer) moves the direction we
    send in: an announcement that goes out first while the re-key waits behind
    it leaves the direction where it is, and the move completes as before."""
    a = pair.a.endpoint
    kim = pair.a.mission.officers[1].officer
    a.announce_keys([_new_cert(kim, 2)])
    pair.b.endpoint.adopt_peer_roster([pair.a.mission.roster])
    _start(pair)
    _round(pair)  # the announcement's pieces go first
    assert a.rekeying is not None and a.rekeying.out_switch == 0
    _until_moved(pair)
    assert len(_announced(pair)) == 1
    pair.b.endpoint.adopt_peer_roster([c.roster for c in pair.a.mission.chain])
    for side in (pair.a, pair.b):
        pair.send(side, pair.cosign(side, pair.compose(side, 0, note("moved")), 1))
    for _ in range(10):
        _round(pair)
    for side in (pair.a, pair.b):
        assert len([m for res in side.results for m in res.messages]) == 1
