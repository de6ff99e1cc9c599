"""Full exchanges between two missions through the two-party harness."""

from __future__ import annotations

import pytest

from backchannel.client.harness import Pair
from backchannel.errors import NotEnoughShares
from backchannel.protocol.payload import MessageKind, media_request, meeting_request, note
from backchannel.protocol.states import RecvState, SendState
from tests.conftest import DetRng, make_pair


def send(pair: Pair, side_name: str, payload, author: int = 0, cosigner: int = 1):  # type: ignore[no-untyped-def]
    side = pair.a if side_name == "a" else pair.b
    out = pair.cosign(side, pair.compose(side, author, payload), cosigner)
    assert out.state is SendState.COSIGNED
    return pair.send(side, out)


def test_note_round_trip_2_of_2(pair: Pair) -> None:
    send(pair, "a", note("Talks in Geneva?"))
    pair.run_until_quiet()
    [incoming] = pair.b.inbox
    opened = pair.open(pair.b, incoming, [0, 1])
    assert opened.state is RecvState.OPENED
    assert opened.open(pair.b.mission.roster).text == "Talks in Geneva?"


def test_both_directions_and_all_kinds(pair: Pair) -> None:
    send(pair, "a", meeting_request("Meet?", when="2026-12-02 10:00", where="Geneva"))
    send(pair, "b", media_request("Interview", outlet="Daily", subject="talks"))
    send(pair, "a", note("second"))
    pair.run_until_quiet()
    assert [i.message.header.kind for i in pair.b.inbox] == [
        MessageKind.MEETING_REQUEST,
        MessageKind.NOTE,
    ]
    assert [i.message.header.seq for i in pair.b.inbox] == [1, 2]
    got = [pair.open(pair.b, i, [1, 0]).open(pair.b.mission.roster) for i in pair.b.inbox]
    assert got[0].get("where") == "Geneva"
    assert got[1].text == "second"
    [reply] = pair.a.inbox
    assert pair.open(pair.a, reply, [0, 1]).open(pair.a.mission.roster).get("outlet") == "Daily"


def test_2_of_3_any_two_officers_open(rng: DetRng) -> None:
    pair = make_pair(rng, k=2, n=3)
    for i in range(3):
        send(pair, "a", note(f"m{i}"), author=i, cosigner=(i + 1) % 3)
    pair.run_until_quiet()
    combos = [(0, 1), (1, 2), (0, 2)]
    for inc, combo in zip(pair.b.inbox, combos, strict=True):
        assert pair.open(pair.b, inc, combo).open(pair.b.mission.roster).text.startswith("m")


def test_2_of_3_one_officer_alone_cannot_open(pair23: Pair) -> None:
    send(pair23, "a", note("secret"))
    pair23.run_until_quiet()
    half = pair23.open(pair23.b, pair23.b.inbox[0], [2])
    with pytest.raises(NotEnoughShares):
        half.open(pair23.b.mission.roster)


def test_long_message_spans_rounds(pair: Pair) -> None:
    text = "x" * 20000
    send(pair, "a", note(text))
    cells_before = len(pair.relay.deposits)
    pair.run_until_quiet()
    assert len(pair.relay.deposits) - cells_before >= 2 * 6
    assert pair.open(pair.b, pair.b.inbox[0], [0, 1]).open(pair.b.mission.roster).text == text


def test_every_round_deposits_one_cell_per_side_of_one_size(pair: Pair) -> None:
    for _ in range(3):
        pair.run_round()
    send(pair, "a", note("hi"))
    for _ in range(3):
        pair.run_round()
    assert len(pair.relay.deposits) == 12
    assert {len(c) for _, c in pair.relay.deposits} == {4096}
    assert len({s for s, _ in pair.relay.deposits}) == 12


def test_receipt_confirms_delivery(pair: Pair) -> None:
    send(pair, "a", note("one"))
    send(pair, "a", note("two"))
    pair.run_until_quiet()
    delivered = [s for r in pair.a.results for s in r.delivered]
    assert delivered == [1, 2]


def test_epoch_announcement_only_in_first_message(pair: Pair) -> None:
    send(pair, "a", note("one"))
    send(pair, "a", note("two"))
    pair.run_until_quiet()
    first, second = (i.message for i in pair.b.inbox)
    assert first.announcement and not second.announcement
    assert first.header.epoch_id == second.header.epoch_id
    assert pair.open(pair.b, pair.b.inbox[1], [0, 1]).open(pair.b.mission.roster).text == "two"
