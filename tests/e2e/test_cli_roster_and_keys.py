"""Roster changes and epoch-key rotation through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Officer, RelayProcess, set_up_missions


@pytest.mark.parametrize("relay", ["sqlite"], indirect=True)
def test_add_an_officer_and_rotate_keys(tmp_path: Path, relay: RelayProcess) -> None:
    m = set_up_missions(tmp_path, relay.base_url, relay.base_url)
    kim = Officer(tmp_path / "ny-kim", "Officer Kim")
    kim.ok("officer", "create", "--name", "Officer Kim")
    kim.ok("officer", "card", "--out", tmp_path / "kim.card")
    change = tmp_path / "change"
    m.ri.ok("mission", "change", "propose", "--threshold", "2",
            "--add", tmp_path / "kim.card", "--out", change)  # fmt: skip
    # Adopting before enough signatures is refused and changes nothing.
    r = m.ri.run("mission", "change", "adopt", change)
    assert r.code != 0 and "needs 2 officers of the current roster" in r.err, r.err
    m.han.ok("mission", "change", "sign", change)
    kim.ok("mission", "change", "sign", change)
    for o in (m.ri, m.han, kim):
        assert o.json("mission", "change", "adopt", change)["version"] == 1
    assert len(kim.json("mission", "show")["officers"]) == 3

    rotated = m.han.json("officer", "rotate-key")
    assert rotated["epoch"] == 2
    m.han.sync()
    m.ri.sync()
    assert m.han.json("officer", "erase-keys", "--keep", "1")["erased"] == 1
    assert m.han.json("officer", "erase-keys", "--keep", "1")["erased"] == 0

    # Han leaves: the intake moves to a new card, which the change says.
    before = m.ri.json("intake", "card")["fingerprint"]
    officers = kim.json("mission", "show")["officers"]
    han_id = next(o["officer_id"] for o in officers if "Han" in o["name"])
    leave = tmp_path / "leave"
    m.ri.ok("mission", "change", "propose", "--threshold", "2", "--remove", han_id[:12],
            "--out", leave)  # fmt: skip
    kim.ok("mission", "change", "sign", leave)
    assert m.han.json("mission", "change", "adopt", leave)["removed"] is True
    for o in (m.ri, kim):
        adopted = o.json("mission", "change", "adopt", leave)
        assert adopted["version"] == 2 and adopted["new_intake_card"] is True
    after = m.ri.json("intake", "card")["fingerprint"]
    assert after != before and kim.json("intake", "card")["fingerprint"] == after
