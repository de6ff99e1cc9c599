"""Pairing two missions by a short code over the relay's rendezvous tenant."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from backchannel.client import demo, pairing
from backchannel.client.service import Client
from backchannel.errors import ConfigError
from backchannel.protocol import channel as ch
from backchannel.protocol.constants import CELL_SIZE, RENDEZVOUS_CREDENTIAL, RENDEZVOUS_TENANT
from tests.client.conftest import FAST_KDF, RELAY_URL, InProcessRelay


async def _missions(tmp: Path, relay: InProcessRelay):  # type: ignore[no-untyped-def]
    f = relay.factory()
    ny = await demo.found(tmp, "New York", ("Ri", "Han"), RELAY_URL, f, "pw", FAST_KDF)
    dc = await demo.found(tmp, "Washington", ("Smith", "Jones"), RELAY_URL, f, "pw", FAST_KDF)
    return ny, dc


async def test_pairing_by_code_confirms_both_peers(tmp_path: Path, relay: InProcessRelay) -> None:
    ny, dc = await _missions(tmp_path, relay)
    code = pairing.new_code()
    a, b = await asyncio.gather(
        pairing.invite(ny[0], code, timeout=10, poll=0.01),
        pairing.join(dc[0], code, timeout=10, poll=0.01),
    )
    assert a.mission_id == dc[0].mission().mission_id and a.confirmed
    assert b.mission_id == ny[0].mission().mission_id and b.confirmed
    assert a.safety_number == b.safety_number == ch.safety_number(a.mission_id, b.mission_id)


async def test_a_wrong_code_pairs_nothing(tmp_path: Path, relay: InProcessRelay) -> None:
    ny, dc = await _missions(tmp_path, relay)
    code = pairing.new_code()
    nameplate = code.split("-")[0]
    wrong = f"{nameplate}-0000-0000" if not code.endswith("0000-0000") else f"{nameplate}-1111-1111"
    results = await asyncio.gather(
        pairing.invite(ny[0], code, timeout=10, poll=0.01),
        pairing.join(dc[0], wrong, timeout=10, poll=0.01),
        return_exceptions=True,
    )
    assert all(isinstance(r, pairing.PairingFailed) for r in results), results
    assert ny[0].peers() == [] and dc[0].peers() == []


async def test_a_relay_that_swaps_in_its_own_card_is_caught(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """A man in the middle without the code cannot produce a card that opens."""
    ny, dc = await _missions(tmp_path, relay)
    code = pairing.new_code()
    guess = pairing.new_code()
    nameplate = code.split("-")[0]
    mitm_code = f"{nameplate}-{guess.split('-', 1)[1]}"
    if mitm_code == code:
        pytest.skip("the random guess hit the code")
    results = await asyncio.gather(
        pairing.invite(ny[0], code, timeout=10, poll=0.01),
        pairing.join(dc[1], mitm_code, timeout=10, poll=0.01),  # the attacker's guess
        return_exceptions=True,
    )
    assert isinstance(results[0], pairing.PairingFailed)
    assert ny[0].peers() == []


def test_malformed_codes_are_refused() -> None:
    for bad in ("", "1234", "1234-5678", "abcd-efgh-ijkl", "12345-678-9012"):
        with pytest.raises(ConfigError, match="looks like"):
            pairing._parse(bad)


async def _fill(client: Client, slots: list[bytes]) -> None:
    """Random cells at ``slots`` of the rendezvous tenant, as anyone can deposit them."""
    async with client._relay(RELAY_URL, RENDEZVOUS_TENANT, RENDEZVOUS_CREDENTIAL) as stranger:
        for slot in slots:
            await stranger.deposit(RENDEZVOUS_TENANT, slot, os.urandom(CELL_SIZE))


async def test_a_code_whose_place_is_taken_is_never_shown_and_another_pairs(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    # Someone holding only the public rendezvous credential fills the places a
    # code names; an earlier run with the same nameplate leaves its cells too.
    ny, dc = await _missions(tmp_path, relay)
    code = pairing.new_code()
    nameplate = code.split("-")[0]
    await _fill(ny[1], [pairing._slot(nameplate, s, i) for s in (b"a", b"b") for i in range(3)])
    shown: list[str] = []
    with pytest.raises(pairing.NameplateTaken):
        await pairing.invite(ny[0], code, timeout=10, poll=0.01, ready=lambda: shown.append(code))
    assert shown == []  # the code was never read out
    # Another code's run: what the stranger filled beside its nameplate is not in its way.
    other = next(c for c in iter(pairing.new_code, None) if not c.startswith(nameplate))
    a, b = await asyncio.gather(
        pairing.invite(ny[0], other, timeout=10, poll=0.01, ready=lambda: shown.append(other)),
        pairing.join(dc[0], other, timeout=10, poll=0.01),
    )
    assert shown == [other] and a.confirmed and b.confirmed


async def test_the_joiners_places_cannot_be_filled_before_the_run(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    # Only the inviter's first place is named by the code; every other place is
    # named by that first message, which no one knows before the run begins.
    ny, dc = await _missions(tmp_path, relay)
    code = pairing.new_code()
    nameplate = code.split("-")[0]
    await _fill(
        ny[1],
        [pairing._slot(nameplate, b"b", i) for i in range(3)]
        + [pairing._slot(nameplate, b"a", 1 + i) for i in range(3)],
    )
    a, b = await asyncio.gather(
        pairing.invite(ny[0], code, timeout=10, poll=0.01),
        pairing.join(dc[0], code, timeout=10, poll=0.01),
    )
    assert a.confirmed and b.confirmed
