"""Epoch key rotation and erasure: forward secrecy against a device seized later."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.client.home import Home
from backchannel.errors import BackchannelError
from tests.client.conftest import FAST_KDF, InProcessRelay
from tests.client.test_client_flow import cosigned, two_missions


async def _deliver(ny, dc) -> bytes:  # type: ignore[no-untyped-def]
    await ny[0].settle()
    for c in dc:
        await c.settle()
    return dc[0].inbox()[-1].message_id


async def test_rotated_key_is_used_and_the_old_one_can_be_erased(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    smith, jones = dc
    cert = smith.rotate_epoch_key()
    assert cert.epoch == 2
    await smith.settle()
    await jones.settle()
    assert jones.mission().cert_of(smith.officer.officer_id).epoch == 2
    for c in ny:
        c.add_peer(smith.mission_card().encode())
    await cosigned(ny, "under the new key")
    mid = await _deliver(ny, dc)
    assert smith.erase_epoch_keys(keep=1) == 1
    smith.request_open(mid)
    await smith.settle()
    await jones.settle()
    [req] = jones.share_requests()
    jones.approve_share(req.request_id)
    await jones.settle()
    await smith.settle()
    assert smith.read(mid).text == "under the new key"
    # The erasure is durable: a reopened home has only the new key.
    smith.home.close()
    reopened = Home.unlock(smith.home.path, "pw")
    assert [k.epoch for k in reopened.epoch_keys] == [2]
    reopened.close()


async def test_message_sealed_to_an_erased_key_cannot_be_opened(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    ny, dc = await two_missions(tmp_path, relay)
    smith = dc[0]
    await cosigned(ny, "recorded today, stolen tomorrow")
    mid = await _deliver(ny, dc)
    smith.rotate_epoch_key()
    smith.erase_epoch_keys(keep=1)
    # The thief holds Smith's unlocked device: the old epoch's box no longer opens.
    with pytest.raises(BackchannelError):
        smith.request_open(mid)
    assert smith.inbox_item(mid.hex()[:8]).own_share == b""


def test_keep_must_leave_the_current_key(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "h", "Officer", "pw", FAST_KDF)
    with pytest.raises(BackchannelError):
        home.erase_epoch_keys(keep=0)
    home.close()
