"""Roster changes and epoch-key rotation through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Officer,
    RelayProcess,
    assert_one_line_error,
    backchannel,
    set_up_missions,
)


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
    # The proposer signing again adds nothing, and is told so.
    again = m.ri.ok("mission", "change", "sign", change)
    assert "you had signed" in again.out and "1 signature(s)" in again.out, again.out
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


@pytest.mark.parametrize("relay", ["sqlite"], indirect=True)
@pytest.mark.parametrize("lost", ["han", "ri"])
def test_headquarters_recovery_keys_restore_a_2_of_2_mission(
    tmp_path: Path, relay: RelayProcess, lost: str
) -> None:
    """Founded with two of headquarters' keys (2 of 2), New York loses Han, or Ri
    whose device runs the rounds; the one who stays and Kim cannot change the
    roster alone, the two keys' signatures let them. When Ri is the one lost,
    the device of the officer who stays takes over the rounds and says so."""
    hq = []
    for i in (1, 2):
        key, card = tmp_path / f"hq{i}.key", tmp_path / f"hq{i}.card"
        made = backchannel("--json", "recovery", "create", "--name", f"HQ {i}", "--key", key,
                           "--out", card)  # fmt: skip
        assert made.code == 0, made.err
        assert made.json["out"] == str(card) and key.exists()
        assert card.read_text().startswith("BACKCHANNEL-RECOVERY-KEY-1:")
        hq.append((key, card))
    ri, han, kim = (Officer(tmp_path / n, n) for n in ("ri", "han", "kim"))
    for o in (ri, han, kim):
        o.ok("officer", "create", "--name", o.name)
    han.ok("officer", "card", "--out", tmp_path / "han.card")
    kim.ok("officer", "card", "--out", tmp_path / "kim.card")
    proposal = tmp_path / "proposal"
    base = ("mission", "create", "--name", "New York", "-k", "2", "--relay", relay.base_url,
            "--officer", tmp_path / "han.card", "--out", proposal)  # fmt: skip
    r = ri.run(*base, "--recovery", hq[0][1])
    assert_one_line_error(r, "--recovery-k")
    ri.ok(*base, "--recovery", hq[0][1], "--recovery", hq[1][1], "--recovery-k", "2")
    han.ok("mission", "sign", proposal)
    for o in (ri, han):
        o.ok("mission", "adopt", proposal)
    stays = han if lost == "ri" else ri
    lost_id = next(
        o["officer_id"] for o in stays.json("mission", "show")["officers"] if o["name"] == lost
    )
    change = tmp_path / "change"
    stays.ok("mission", "change", "propose", "--threshold", "2", "--add", tmp_path / "kim.card",
             "--remove", lost_id[:12], "--out", change)  # fmt: skip
    kim.ok("mission", "change", "sign", change)
    r = stays.run("mission", "change", "adopt", change)
    assert r.code != 0 and "or 2 recovery keys; 0 signed" in r.err, r.err
    for key, _ in hq:
        signed = backchannel("--json", "recovery", "sign", change, "--key", key)
        assert signed.code == 0, signed.err
    adopted = {o.name: o.json("mission", "change", "adopt", change) for o in (stays, kim)}
    assert all(a["version"] == 1 for a in adopted.values())
    assert adopted[stays.name]["runs_the_rounds"] is (lost == "ri")
    assert adopted["kim"]["runs_the_rounds"] is False
    shown = kim.json("mission", "show")
    assert [o["name"] for o in shown["officers"]] == [stays.name, "kim"]
    assert [o["name"] for o in shown["officers"] if o["runner"]] == [
        stays.name if lost == "ri" else "ri"
    ]
    assert shown["recovery"]["threshold"] == 2
    assert [k["name"] for k in shown["recovery"]["keys"]] == ["HQ 1", "HQ 2"]
