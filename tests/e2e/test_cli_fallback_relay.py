"""Naming the mission's fallback relay through the CLI: the operator of the other
relay reads out its key (``backchannel relay key``), two officers put it in the
policy, and every device then holds it."""

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


def test_two_officers_name_the_relay_to_move_to(tmp_path: Path) -> None:
    spare = tmp_path / "spare-relay"
    read_out = backchannel("relay", "key", "--data-dir", spare)
    assert read_out.code == 0, read_out.err
    fingerprint = read_out.out.strip()
    url = "https://spare-relay.example:8443"
    with RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", OPEN_REGISTRATION) as relay:
        ri, han = Officer(tmp_path / "ri", "Officer Ri"), Officer(tmp_path / "han", "Officer Han")
        for o in (ri, han):
            o.ok("officer", "create", "--name", o.name)
        found_by_cli(tmp_path, relay.base_url, ri, han)
        assert ri.json("mission", "policy", "show")["fallback_relay"] is None

        propose = ("mission", "policy", "propose", "--official", "record")
        for args, why in (
            (("--fallback-relay", url), "go together"),
            (("--fallback-key", fingerprint), "go together"),
            (("--fallback-relay", url, "--fallback-key", fingerprint[:-2]), "64 hex digits"),
            (("--fallback-relay", url, "--fallback-key", "zz" * 32), "64 hex digits"),
            (("--fallback-relay", "spare-relay.example", "--fallback-key", fingerprint), "http"),
            (
                ("--fallback-relay", "https://op:pw@spare.example", "--fallback-key", fingerprint),
                "password",
            ),
            (("--no-fallback-relay", "--fallback-relay", url), "exclude each other"),
        ):
            assert_one_line_error(ri.run(*propose, *args), why)

        changed = ri.json(*propose, "--fallback-relay", url, "--fallback-key", fingerprint)
        assert changed["adopted"] is False and changed["needed"] == 2
        ri.settle()
        han.settle()
        assert han.json("mission", "policy", "sign", changed["ref"])["adopted"] is True
        han.settle()
        ri.settle()
        for o in (ri, han):
            assert o.json("mission", "policy", "show")["fallback_relay"] == {
                "url": url,
                "key_fingerprint": fingerprint,
            }
        assert f"moves to {url}" in ri.ok("mission", "policy", "show").out
        assert ri.json("status")["relay_move"] is None

        dropped = ri.json(*propose, "--no-fallback-relay")
        assert dropped["fallback_relay"] is None
