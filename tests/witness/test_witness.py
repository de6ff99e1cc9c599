"""Witnesses cosign the relay's checkpoints, and refuse a relay that forks or rolls back."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from backchannel.crypto import labels
from backchannel.crypto.signing import SigningKey, VerifyKey
from backchannel.errors import ConfigError
from backchannel.protocol.note import (
    AddCheckpoint,
    Checkpoint,
    Note,
    Verifier,
    open_checkpoint,
    sign_checkpoint,
    verify_cosignature,
)
from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore
from backchannel.store.relay_store import RelayStore
from backchannel.store.sqlite import SQLiteRelayStore
from backchannel.witness.service import Refusal, Witness, create_witness_app
from backchannel.witness.state import WitnessState, create_keys, load_keys
from tests.relay.conftest import OPERATOR_TOKEN, Clock, deposit, new_cell, new_slot, register

WITNESS_URL = "http://witness.test"


class Relay:
    """An in-process relay over a memory store, and an HTTP client to it."""

    def __init__(self, app: Starlette, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http
        self.service = app.state.service

    async def grow(self, tenant: str, cells: int) -> None:
        for _ in range(cells):
            r = await deposit(self.http, tenant, new_slot(), new_cell())
            assert r.status_code == 201, r.text

    async def vkey(self) -> str:
        body = (await self.http.get("/v1/log/key")).json()
        return str(body["checkpoint_vkey"])

    async def push(self, witness_app: Starlette) -> Note:
        transport = httpx.ASGITransport(app=witness_app)
        async with httpx.AsyncClient(transport=transport) as client:
            note: Note = await self.service.checkpoints.push_once(client)
            return note


async def _relay(
    tmp_path: Path,
    witnesses: str,
    key: SigningKey | None = None,
    store: RelayStore | None = None,
    tenant: str = "mission-w",
) -> AsyncIterator[Relay]:
    settings = RelaySettings(
        data_dir=tmp_path,
        operator_token=OPERATOR_TOKEN,
        ip_rate=0,
        tenant_rate=0,
        expire_interval_seconds=3600,
        log_origin="relay.test/log",
        witnesses=witnesses,
        witness_interval_seconds=3600,
    )
    app = create_app(settings, store or MemoryRelayStore(signing_key=key), clock=Clock())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
            await register(http, tenant)
            yield Relay(app, http)


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    directory = tmp_path / "witness"
    keys = create_keys(directory)
    state = WitnessState(directory)
    state.set_name("witness.test/w1")
    return Witness("witness.test/w1", keys, state, clock=lambda: 1_800_000_000)


def _witness_spec(witness: Witness) -> str:
    return f"{WITNESS_URL} " + " ".join(v.vkey() for v in witness.verifiers())


async def test_a_witness_cosigns_a_growing_log_and_the_relay_serves_its_cosignatures(
    tmp_path: Path, witness: Witness
) -> None:
    async for relay in _relay(tmp_path, _witness_spec(witness)):
        vkey = await relay.vkey()
        witness.state.add_log(vkey)
        # Nothing cosigned yet: the relay says so rather than serve a bare head.
        assert (await relay.http.get("/v1/log/checkpoint")).status_code == 503
        await relay.grow("mission-w", 3)
        await relay.push(create_witness_app(witness))
        first = await relay.http.get("/v1/log/checkpoint")
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/plain")
        log = Verifier.from_vkey(vkey)
        cp, note = open_checkpoint(first.content, log)
        head = (await relay.http.get("/v1/log/head")).json()
        assert (cp.origin, cp.size, cp.root.hex()) == ("relay.test/log", head["size"], head["root"])
        for cosigner in witness.verifiers():
            assert verify_cosignature(note, cosigner) == 1_800_000_000
        # The log grows; the witness checks the consistency proof and moves on.
        await relay.grow("mission-w", 5)
        await relay.push(create_witness_app(witness))
        cp2, note2 = open_checkpoint((await relay.http.get("/v1/log/checkpoint")).content, log)
        assert cp2.size > cp.size
        for cosigner in witness.verifiers():
            verify_cosignature(note2, cosigner)
        [followed] = witness.state.logs()
        assert (followed.size, followed.root) == (cp2.size, cp2.root)


async def test_every_relay_process_on_one_database_serves_the_cosigned_checkpoint(
    tmp_path: Path, witness: Witness
) -> None:
    db = tmp_path / "relay.db"
    spec = _witness_spec(witness)
    async for first in _relay(tmp_path, spec, store=SQLiteRelayStore(db)):
        witness.state.add_log(await first.vkey())
        await first.grow("mission-w", 3)
        async for second in _relay(tmp_path, spec, store=SQLiteRelayStore(db), tenant="other"):
            assert (await second.http.get("/v1/log/checkpoint")).status_code == 503
            # Only the first process pushed; the second serves what it got.
            pushed = await first.push(create_witness_app(witness))
            served = await second.http.get("/v1/log/checkpoint")
            assert served.status_code == 200
            assert served.content == pushed.encode()
            for cosigner in witness.verifiers():
                verify_cosignature(Note.decode(served.content), cosigner)
    # A process started afterwards serves it before it has pushed anything.
    async for third in _relay(tmp_path, spec, store=SQLiteRelayStore(db), tenant="third"):
        again = await third.http.get("/v1/log/checkpoint")
        assert again.status_code == 200 and again.content == pushed.encode()


async def test_the_checkpoint_key_is_bound_to_the_relay_key(tmp_path: Path) -> None:
    async for relay in _relay(tmp_path, ""):
        body = (await relay.http.get("/v1/log/key")).json()
        key = VerifyKey(bytes.fromhex(body["ed25519"]), bytes.fromhex(body["mldsa65"]))
        log = Verifier.from_vkey(body["checkpoint_vkey"])
        binding = bytes.fromhex(body["checkpoint_binding"])
        key.verify_ed25519(binding, labels.SIG_CHECKPOINT_KEY, log.public + log.name.encode())
        # Without witnesses the relay serves its latest head, signed by itself.
        await relay.grow("mission-w", 2)
        cp, _ = open_checkpoint((await relay.http.get("/v1/log/checkpoint")).content, log)
        assert cp.size == (await relay.http.get("/v1/log/head")).json()["size"]


async def test_a_forked_relay_gets_no_cosignature_and_leaves_evidence(
    tmp_path: Path, witness: Witness
) -> None:
    # Two relays with one key and two histories: the split view a witness exists to stop.
    key = SigningKey(secrets.token_bytes(32), secrets.token_bytes(32))
    spec = _witness_spec(witness)
    async for honest in _relay(tmp_path / "a", spec, key):
        async for liar in _relay(tmp_path / "b", spec, key):
            witness.state.add_log(await honest.vkey())
            assert await liar.vkey() == await honest.vkey()
            await honest.grow("mission-w", 4)
            await liar.grow("mission-w", 4)
            await honest.push(create_witness_app(witness))
            assert (await honest.http.get("/v1/log/checkpoint")).status_code == 200
            # Same size, another root: refused, and kept as evidence.
            shown = await liar.push(create_witness_app(witness))
            assert len(shown.signatures) == 1  # the relay's own, no cosignature
            assert (await liar.http.get("/v1/log/checkpoint")).status_code == 503
            # Grown further, the liar's tree is not an extension of what was cosigned.
            await liar.grow("mission-w", 3)
            await liar.push(create_witness_app(witness))
            assert (await liar.http.get("/v1/log/checkpoint")).status_code == 503
            reasons = [reason for _, _, reason, _ in witness.state.evidence()]
            assert len(reasons) == 2
            assert reasons[0].startswith("fork")
            assert reasons[1] == "consistency proof does not verify"
            # The evidence holds the liar's own signed checkpoints.
            for _, _, _, request in witness.state.evidence():
                open_checkpoint(
                    AddCheckpoint.decode(request).note, Verifier.from_vkey(await honest.vkey())
                )


async def test_a_relay_rolled_back_is_refused(tmp_path: Path, witness: Witness) -> None:
    key = SigningKey(secrets.token_bytes(32), secrets.token_bytes(32))
    spec = _witness_spec(witness)
    async for before in _relay(tmp_path / "a", spec, key):
        witness.state.add_log(await before.vkey())
        await before.grow("mission-w", 6)
        await before.push(create_witness_app(witness))
    # The same key on an older, smaller log (a restore from an old backup).
    async for after in _relay(tmp_path / "b", spec, key):
        await after.grow("mission-w", 2)
        note = await after.push(create_witness_app(witness))
        assert len(note.signatures) == 1
        assert (await after.http.get("/v1/log/checkpoint")).status_code == 503
    [followed] = witness.state.logs()
    assert followed.size > 2


def _request(witness: Witness, body: bytes) -> tuple[int, str, str]:
    try:
        lines = witness.add_checkpoint(body)
    except Refusal as r:
        return r.status, r.text, r.content_type
    return 200, lines.decode(), "text/plain"


def test_add_checkpoint_answers_as_the_witness_protocol_says(tmp_path: Path) -> None:
    directory = tmp_path / "w"
    keys = create_keys(directory)
    state = WitnessState(directory)
    witness = Witness("witness.test/w1", keys, state, clock=lambda: 1_800_000_000)
    log_key = create_keys(tmp_path / "log").ed25519  # any Ed25519 key will do as the log's
    origin = "relay.test/log"
    log = Verifier(origin, 0x01, log_key.public)
    state.add_log(log.vkey())

    def checkpoint(size: int, root: bytes) -> bytes:
        return sign_checkpoint(Checkpoint(origin, size, root), origin, log_key).encode()

    root3 = bytes(range(32))
    assert _request(witness, b"nonsense")[0] == 400
    stranger = sign_checkpoint(Checkpoint("other.test/log", 3, root3), "other.test/log", log_key)
    assert _request(witness, AddCheckpoint(0, (), stranger.encode()).encode())[0] == 404
    other_key = create_keys(tmp_path / "x").ed25519
    forged = sign_checkpoint(Checkpoint(origin, 3, root3), origin, other_key).encode()
    assert _request(witness, AddCheckpoint(0, (), forged).encode())[0] == 403
    assert _request(witness, AddCheckpoint(5, (), checkpoint(3, root3)).encode())[0] == 400
    status, text, _ = _request(witness, AddCheckpoint(0, (), checkpoint(3, root3)).encode())
    assert status == 200
    lines = Note.decode(Checkpoint(origin, 3, root3).text() + b"\n" + text.encode())
    for cosigner in witness.verifiers():
        verify_cosignature(lines, cosigner)
    # The witness is at 3: a request from 0 gets 409 and the size, as text/x.tlog.size.
    assert _request(witness, AddCheckpoint(0, (), checkpoint(4, root3)).encode()) == (
        409,
        "3\n",
        "text/x.tlog.size",
    )
    # A proof that does not verify: 422, and the head stays.
    bad = AddCheckpoint(3, (bytes(32),), checkpoint(4, bytes(32))).encode()
    assert _request(witness, bad)[0] == 422
    assert state.log(origin).size == 3  # type: ignore[union-attr]
    # The same checkpoint again is cosigned again.
    assert _request(witness, AddCheckpoint(3, (), checkpoint(3, root3)).encode())[0] == 200


def test_state_and_keys_survive_a_restart_and_refuse_a_second_init(tmp_path: Path) -> None:
    directory = tmp_path / "w"
    keys = create_keys(directory)
    with pytest.raises(ConfigError, match="already holds a witness"):
        create_keys(directory)
    assert load_keys(directory).ed25519.public == keys.ed25519.public
    assert (directory / "witness.key").stat().st_mode & 0o777 == 0o600
    state = WitnessState(directory)
    vkey = Verifier("relay.test/log", 0x01, keys.ed25519.public).vkey()
    state.add_log(vkey)
    state.close()
    again = WitnessState(directory)
    assert [log.origin for log in again.logs()] == ["relay.test/log"]
    with pytest.raises(ConfigError, match="another key"):
        again.add_log(Verifier("relay.test/log", 0x01, bytes(32)).vkey())


async def test_the_witness_speaks_http(tmp_path: Path, witness: Witness) -> None:
    log_key = create_keys(tmp_path / "log").ed25519
    origin = "relay.test/log"
    witness.state.add_log(Verifier(origin, 0x01, log_key.public).vkey())
    note = sign_checkpoint(Checkpoint(origin, 1, bytes(32)), origin, log_key).encode()
    transport = httpx.ASGITransport(app=create_witness_app(witness))
    async with httpx.AsyncClient(transport=transport, base_url=WITNESS_URL) as http:
        keys = (await http.get("/vkeys")).text.splitlines()
        assert keys == [v.vkey() for v in witness.verifiers()]
        ok = await http.post("/add-checkpoint", content=AddCheckpoint(0, (), note).encode())
        assert ok.status_code == 200 and ok.text.startswith("\u2014 witness.test/w1 ")
        stale = await http.post("/add-checkpoint", content=AddCheckpoint(0, (), note).encode())
        assert (stale.status_code, stale.text) == (409, "1\n")
        assert stale.headers["content-type"] == "text/x.tlog.size"
        big = await http.post("/add-checkpoint", content=b"x" * (300 * 1024))
        assert big.status_code == 413
