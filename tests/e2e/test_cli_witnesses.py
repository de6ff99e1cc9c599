"""Naming the mission's witnesses through the CLI: the keys a witness printed at
``witness init`` go into the policy, which then shows what it asks for."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import (
    OPEN_REGISTRATION,
    Officer,
    assert_one_line_error,
    backchannel,
    found_by_cli,
)
from tests.relay.procs import RelayProcess


def test_an_officer_names_the_witnesses_the_devices_ask_for(tmp_path: Path) -> None:
    made = backchannel("witness", "init", "--dir", tmp_path / "w1", "--name", "example.org/w1")
    assert made.code == 0, made.err
    vkeys = made.out.split()
    assert len(vkeys) == 2 and all(v.startswith("example.org/w1+") for v in vkeys)
    keys_file = tmp_path / "w1.vkeys"
    keys_file.write_text(made.out)
    with RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", OPEN_REGISTRATION) as relay:
        ri, han = Officer(tmp_path / "ri", "Officer Ri"), Officer(tmp_path / "han", "Officer Han")
        for o in (ri, han):
            o.ok("officer", "create", "--name", o.name)
        found_by_cli(tmp_path, relay.base_url, ri, han)
        assert ri.json("mission", "policy", "show")["witnesses"]["needed"] == 0

        too_many = ri.run("mission", "policy", "propose", "--official", "record",
                           "--witness", keys_file, "--witnesses-needed", "2")  # fmt: skip
        assert_one_line_error(too_many, "witnesses needed: 1 to the 1 witnesses named")
        bad = ri.run("mission", "policy", "propose", "--official", "record",
                      "--witness", "example.org/w1+00000000+AAAA")  # fmt: skip
        assert_one_line_error(bad, "witnesses")

        changed = ri.json("mission", "policy", "propose", "--official", "record",
                          "--witness", keys_file, "--witness-lag-minutes", "30")  # fmt: skip
        assert changed["adopted"] is False and changed["needed"] == 2
        ri.settle()
        han.settle()
        assert han.json("mission", "policy", "sign", changed["ref"])["adopted"] is True
        han.settle()
        ri.settle()
        for o in (ri, han):
            shown = o.json("mission", "policy", "show")["witnesses"]
            assert shown == {"keys": vkeys, "needed": 1, "lag_seconds": 1800}
        status = ri.json("status")["witnesses"]
        assert status["needed"] == 1 and status["witnessed_size"] == 0
        assert "example.org/w1 within 30 minutes" in status["asked"]
        assert "relay log witnessed up to size 0 (no cosignature yet)" in ri.ok("status").out

        dropped = ri.json("mission", "policy", "propose", "--official", "record", "--no-witnesses")
        assert dropped["witnesses"]["keys"] == []
