"""The audit log anchored in the peer's hands, through a real relay.

New York's runner (Ri) anchors New York's audit log in the channel every few
rounds; Washington's devices keep the anchors. Han's and Ri's records open the
latest one Washington holds; a record from which Han's latest entries were
dropped (what officers who collude against him would do to every copy they
hold) still passes alone, and is caught beside Washington's record, naming the
entry; so is one whose openings were dropped or made up to fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backchannel.client.anchors import Anchors
from backchannel.client.audit import verify_record
from backchannel.protocol import audit_anchor as aa
from backchannel.protocol.audit import AuditEntry
from tests.client.conftest import InProcessRelay
from tests.client.test_audit import one_message_opened, settle
from tests.e2e.conftest import backchannel

EVERY = 4


@pytest.fixture(autouse=True)
def _short_anchor_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Anchors, "anchor_every", EVERY)


def _latest(record: dict, mission_id: str) -> aa.SignedAnchor:  # type: ignore[type-arg]
    held = [aa.SignedAnchor.decode(bytes.fromhex(a)) for a in record["peer_anchors"][mission_id]]
    return max(held, key=lambda a: a.round)


async def anchored(tmp: Path, relay: InProcessRelay, rounds: int = 2 * EVERY):  # type: ignore[no-untyped-def]
    """Two missions after a message both ways' worth of audit entries and ``rounds``
    more rounds of every device, caught up."""
    (ri, han), (smith, jones) = await one_message_opened(tmp, relay)
    for _ in range(rounds):
        for c in (ri, han, smith, jones):
            await c.sync(1)
    await settle(ri, han, smith, jones)
    return (ri, han), (smith, jones)


async def test_a_record_opens_the_latest_anchor_the_peer_holds(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (ri, han), (smith, jones) = await anchored(tmp_path, relay)
    ny_id = ri.mission().mission_id
    # Both of Washington's devices hold New York's anchors, signed by Ri; and the
    # other way round. Han's device holds Ri's openings, sent through the mailbox.
    for device in (smith, jones):
        got = device.peer_anchors()[ny_id]
        assert len(got) >= 2 and {a.officer_id for a in got} == {ri.officer.officer_id}
    assert ri.peer_anchors()[smith.mission().mission_id]
    dc_record = smith.export_record()
    for device in (ri, han):
        check = verify_record(device.export_record(), [dc_record])
        assert check.problems == [] and check.anchors == 1, device.officer.name
    # The anchor says nothing Washington could read: a digest over entries it never saw.
    latest = _latest(json.loads(dc_record), ny_id.hex())
    assert len(latest.digest) == 32 and latest.round % EVERY == 0


async def test_entries_dropped_after_the_anchor_are_named(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    (ri, han), (smith, _) = await anchored(tmp_path, relay)
    dc_record = smith.export_record()
    ny_id = ri.mission().mission_id.hex()
    latest = _latest(json.loads(dc_record), ny_id)
    record = json.loads(ri.export_record())
    [opening] = [
        o
        for o in (aa.AnchorOpening.decode(bytes.fromhex(x)) for x in record["anchors"])
        if o.round == latest.round
    ]
    han_id = han.officer.officer_id
    han_head = dict(opening.heads)[han_id]
    # Han's entries from the one the anchor named onward are dropped from the record:
    # what remains is an intact chain, so the record alone does not show it.
    record["entries"] = [
        e
        for e in record["entries"]
        if not (
            AuditEntry.decode(bytes.fromhex(e)).officer_id == han_id
            and AuditEntry.decode(bytes.fromhex(e)).seq >= han_head
        )
    ]
    alone = verify_record(json.dumps(record))
    assert alone.problems == []
    [problem] = verify_record(json.dumps(record), [dc_record]).problems
    assert f"entry {han_head} of officer {han_id.hex()[:12]}" in problem
    assert f"round {latest.round}" in problem and "missing from the record" in problem
    # The same through the command line, with nothing but the files.
    files = {name: tmp_path / f"{name}.audit" for name in ("ny", "cut", "dc")}
    files["ny"].write_text(ri.export_record())
    files["cut"].write_text(json.dumps(record))
    files["dc"].write_text(dc_record)
    fine = backchannel("--json", "audit", "verify", "--file", files["ny"],
                       "--peer-record", files["dc"])  # fmt: skip
    assert fine.code == 0 and json.loads(fine.out)["anchors"] == 1, fine.err
    cut = backchannel("--json", "audit", "verify", "--file", files["cut"],
                      "--peer-record", files["dc"])  # fmt: skip
    assert cut.code == 1 and json.loads(cut.out)["problems"] == [problem]
    assert backchannel("audit", "verify", "--file", files["cut"]).code == 0
    # Dropping the openings as well does not help.
    del record["anchors"]
    [problem] = verify_record(json.dumps(record), [dc_record]).problems
    assert "not opened by the record" in problem
    # Nor does an opening made up to fit what is left.
    made_up = aa.AnchorOpening(
        opening.mission_id,
        opening.round,
        tuple((o, s - 1 if o == han_id else s) for o, s in opening.heads if s > 1 or o != han_id),
    )
    record["anchors"] = [made_up.encode().hex()]
    [problem] = verify_record(json.dumps(record), [dc_record]).problems
    assert "not opened by the record" in problem


async def test_a_peer_record_cannot_frame_the_mission(
    tmp_path: Path, relay: InProcessRelay
) -> None:
    """Washington adds an anchor no New York officer signed, of a later round: it is
    named as such, and the record is still checked against the latest genuine one."""
    (ri, _), (smith, _) = await anchored(tmp_path, relay, EVERY + 1)
    ny_id = ri.mission().mission_id
    dc = json.loads(smith.export_record())
    latest = _latest(dc, ny_id.hex())
    smith_signs = aa.SignedAnchor.make(ny_id, latest.round + EVERY, bytes(32), smith.officer)
    dc["peer_anchors"][ny_id.hex()].append(smith_signs.encode().hex())
    check = verify_record(ri.export_record(), [json.dumps(dc)])
    assert check.anchors == 1
    assert check.problems == [
        "Washington's record holds 1 anchor(s) of this mission that none of its officers signed"
    ]
    # A peer record with no anchor of ours proves nothing and says so.
    del dc["peer_anchors"]
    check = verify_record(ri.export_record(), [json.dumps(dc)])
    assert check.problems == ["Washington's record holds no anchor of this mission's audit log"]
    assert "damaged" in verify_record(ri.export_record(), ["{}"]).problems[0]
