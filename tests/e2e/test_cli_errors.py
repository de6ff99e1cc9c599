"""Failures through the CLI: one line on stderr that says what to do, and nothing changed.

Each case snapshots every byte of every file in the officer's home before and
after the failing command, and checks the exit status and the single line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import (
    PASSPHRASE,
    Missions,
    assert_one_line_error,
    base_env,
    set_up_missions,
    snapshot,
)

DEAD_RELAY = "http://127.0.0.1:9"  # nothing here is ever contacted


@pytest.fixture(scope="module")
def missions(tmp_path_factory: pytest.TempPathFactory) -> Missions:
    # Founded and not paired; no relay is needed for any of these cases.
    workdir = tmp_path_factory.mktemp("homes")
    return set_up_missions(workdir, DEAD_RELAY, DEAD_RELAY, register=False, pair=False)


def test_wrong_passphrase(missions: Missions, tmp_path: Path) -> None:
    ri = missions.ri
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    right = tmp_path / "right"
    right.write_text(PASSPHRASE + "\n")
    before = snapshot(ri.home)
    for r in (
        ri.run("--passphrase-file", wrong, "peer", "list"),
        ri.run("status", env=base_env(BACKCHANNEL_PASSPHRASE="not the passphrase")),
    ):
        assert r.code == 1
        assert_one_line_error(r, "try again")
        assert PASSPHRASE not in r.err and "not the passphrase" not in r.err
    assert snapshot(ri.home) == before
    # The file wins over the environment, and the right one opens the home.
    shown = ri.run(
        "--passphrase-file",
        right,
        "--json",
        "officer",
        "show",
        env=base_env(BACKCHANNEL_PASSPHRASE="x"),
    )
    assert shown.code == 0 and shown.json["officer"] == "Officer Ri"


def test_corrupted_keystore(missions: Missions) -> None:
    han = missions.han
    keystore = han.home / "keystore.bcks"
    original = keystore.read_bytes()
    damaged = bytearray(original)
    for i in (60, 61, 62):
        damaged[i] ^= 0xFF
    keystore.write_bytes(bytes(damaged))
    try:
        before = snapshot(han.home)
        r = han.run("--json", "officer", "show")
        assert r.code == 1
        assert_one_line_error(r, "restore it from a backup")
        assert r.json == {"error": r.err_lines[0].removeprefix("error: ")}
        assert snapshot(han.home) == before
    finally:
        keystore.write_bytes(original)
    assert han.json("officer", "show")["officer"] == "Officer Han"


def test_unknown_peer(missions: Missions, tmp_path: Path) -> None:
    ri = missions.ri
    before = snapshot(ri.home)
    offer = tmp_path / "offer"
    text = tmp_path / "text"
    text.write_text("hello")
    for r in (
        ri.run("channel", "offer", "Atlantis", "--out", offer),
        ri.run("peer", "confirm", "0123456789abcdef", "--safety-number", "1 2 3"),
        ri.run("compose", "Atlantis", "--file", text),
    ):
        assert r.code == 2  # a configuration error: the peer was never added
        assert_one_line_error(r, "backchannel peer list", "peer add")
    assert not offer.exists()
    assert snapshot(ri.home) == before


def test_tampered_mission_card(missions: Missions, tmp_path: Path) -> None:
    jones = missions.jones
    prefix, body = missions.ny_card.strip().split(":", 1)
    i = len(body) // 2
    flipped = "B" if body[i] == "A" else "A"
    card = tmp_path / "ny.card"
    card.write_text(f"{prefix}:{body[:i]}{flipped}{body[i + 1 :]}\n")
    before = snapshot(jones.home)
    r = jones.run("peer", "add", card)
    assert r.code == 1
    assert_one_line_error(r, "ask for a fresh copy")
    assert snapshot(jones.home) == before
    assert jones.json("peer", "list")["peers"] == []
    # The untouched card is accepted: the refusal was the tampering's doing.
    good = tmp_path / "good.card"
    good.write_text(missions.ny_card)
    assert jones.json("peer", "add", good)["peer"] == "New York"


def test_a_message_nobody_could_read_is_refused_before_it_is_sealed(
    missions: Missions, tmp_path: Path
) -> None:
    ri = missions.ri
    before = snapshot(ri.home)
    long_text = tmp_path / "long"
    long_text.write_text("x" * (256 * 1024 + 1))
    short = tmp_path / "short"
    short.write_text("Shall we meet?")
    cases = (
        (("compose", "Washington", "--file", long_text), "too long for a message"),
        (("compose", "Washington", "--kind", "meeting", "--file", short), "--when, --where"),
        (
            ("compose", "Washington", "--kind", "meeting", "--when", "x" * 1025,
             "--where", "Geneva", "--file", short),
            "too long for a message",
        ),
    )  # fmt: skip
    for args, said in cases:
        r = ri.run(*args)
        assert r.code == 2
        assert_one_line_error(r, said)
    assert snapshot(ri.home) == before
