"""Go's signed-note implementation verifies the relay's checkpoints.

golang.org/x/mod/sumdb/note is the reference implementation of the format
(c2sp.org/signed-note grew out of it) and is what the Go ecosystem's
transparency tools build on. A Go program built from Debian's packages
(golang-go, golang-golang-x-mod-dev) verifies a checkpoint the relay serves,
cosignatures included, under the verifier key the relay publishes, and refuses
it once altered. Skips, saying why, where Go or that package is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from backchannel.witness.service import Witness, create_witness_app
from backchannel.witness.state import WitnessState, create_keys
from tests.witness.test_witness import WITNESS_URL, _relay

GOPATH = Path("/usr/share/gocode")
NOTE_PACKAGE = GOPATH / "src" / "golang.org" / "x" / "mod" / "sumdb" / "note"
PROGRAM = """package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	v, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "vkey:", err)
		os.Exit(2)
	}
	msg, _ := io.ReadAll(os.Stdin)
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(1)
	}
	fmt.Print(n.Text)
	for _, s := range n.Sigs {
		fmt.Printf("verified %s %08x\\n", s.Name, s.Hash)
	}
	fmt.Printf("unverified %d\\n", len(n.UnverifiedSigs))
}
"""

pytestmark = pytest.mark.skipif(
    shutil.which("go") is None or not NOTE_PACKAGE.is_dir(),
    reason="needs Go and golang.org/x/mod (apt-get install golang-go golang-golang-x-mod-dev)",
)


@pytest.fixture(scope="module")
def go_verify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("gonote")
    (work / "main.go").write_text(PROGRAM)
    env = {
        **os.environ,
        "GOPATH": str(GOPATH),
        "GO111MODULE": "off",
        "GOCACHE": str(work / "cache"),
        "GOFLAGS": "",
    }
    subprocess.run(
        ["go", "build", "-o", str(work / "verify"), "main.go"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return work / "verify"


async def test_go_verifies_a_cosigned_checkpoint_and_refuses_an_altered_one(
    tmp_path: Path, go_verify: Path
) -> None:
    directory = tmp_path / "witness"
    keys = create_keys(directory)
    state = WitnessState(directory)
    witness = Witness("witness.test/w1", keys, state)
    spec = f"{WITNESS_URL} " + " ".join(v.vkey() for v in witness.verifiers())
    async for relay in _relay(tmp_path / "relay", spec):
        vkey = await relay.vkey()
        state.add_log(vkey)
        await relay.grow("mission-w", 3)
        await relay.push(create_witness_app(witness))
        note = (await relay.http.get("/v1/log/checkpoint")).content
        head = (await relay.http.get("/v1/log/head")).json()

    ok = subprocess.run(
        [str(go_verify), vkey], input=note, capture_output=True, timeout=60, check=False
    )
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.decode().splitlines()
    assert lines[0] == "relay.test/log"
    assert int(lines[1]) == head["size"]
    assert lines[3] == f"verified relay.test/log {vkey.split('+')[1]}"
    # The two cosignatures are of types Go's package does not know: set aside, not failed.
    assert lines[4] == "unverified 2"

    altered = note.replace(b"relay.test/log\n", b"relay.test/log\n1", 1)
    bad = subprocess.run(
        [str(go_verify), vkey], input=altered, capture_output=True, timeout=60, check=False
    )
    assert bad.returncode == 1
    assert b"open:" in bad.stderr
