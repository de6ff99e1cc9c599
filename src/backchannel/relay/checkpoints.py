"""The log's checkpoints, and the witnesses that cosign them.

The relay publishes its latest head as a checkpoint (c2sp.org/tlog-checkpoint,
a signed note): origin, size and root, signed by the log's checkpoint key (an
Ed25519 key derived from the log key, bound to it by a hybrid signature that
``GET /v1/log/key`` serves). Every ``witness_interval_seconds`` it pushes the
latest checkpoint to each configured witness with ``add-checkpoint``
(c2sp.org/tlog-witness): the witness checks that it extends the last head it
cosigned and answers with its cosignatures. ``GET /v1/log/checkpoint`` serves
the latest checkpoint with every cosignature that verified under the keys the
operator configured, so a client, a monitor or a review board can hold the
relay to one history that independent parties saw grow.

A witness that answers 409 with a larger size than the log has means the
relay was rolled back (or another relay holds this key): it is logged as an
error and that witness is not asked again until the log passes that size.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from backchannel.errors import DecodeError, SignatureError, StoreError
from backchannel.protocol.misbehaviour import (
    SignedHead,
    relay_key_fingerprint,
    relay_key_from_bytes,
)
from backchannel.protocol.note import (
    TYPE_ED25519,
    AddCheckpoint,
    Checkpoint,
    Note,
    NoteSignature,
    Verifier,
    sign_checkpoint,
    verify_cosignature,
)
from backchannel.relay.settings import RelaySettings, WitnessPeer, parse_witnesses
from backchannel.store.relay_store import RelayStore

log = logging.getLogger("backchannel.relay.checkpoints")

SIZE_TYPE = "text/x.tlog.size"


def default_origin(log_public_key: bytes) -> str:
    fingerprint = relay_key_fingerprint(relay_key_from_bytes(log_public_key))
    return f"backchannel.relay/{fingerprint[:8].hex()}"


class WitnessRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"witness answered {status}")
        self.status = status


class Checkpoints:
    """Signs checkpoints, pushes them to witnesses, keeps the latest cosigned one."""

    def __init__(self, settings: RelaySettings, store: RelayStore) -> None:
        self.settings = settings
        self.store = store
        self.witnesses = parse_witnesses(settings.witnesses)
        self._origin = settings.log_origin
        #: The size each witness last confirmed (from its 200 or its 409).
        self._sizes: dict[str, int] = {}
        self._lock = asyncio.Lock()

    @property
    def origin(self) -> str:
        if not self._origin:  # needs the store open: resolved on first use
            self._origin = default_origin(self.store.log_public_key())
        return self._origin

    def verifier(self) -> Verifier:
        return Verifier(self.origin, TYPE_ED25519, self.store.checkpoint_key().public)

    async def current(self) -> Note:
        """The log's latest head as a checkpoint signed by the relay alone."""
        head = SignedHead.decode(await self.store.compact_head()).head
        cp = Checkpoint(self.origin, head.size, head.root)
        return sign_checkpoint(cp, self.origin, self.store.checkpoint_key())

    async def served(self) -> Note | None:
        """What ``GET /v1/log/checkpoint`` serves: the latest cosigned checkpoint.

        Without witnesses, the latest head signed by the relay alone; with
        witnesses, None until one of them has cosigned.
        """
        if not self.witnesses:
            return await self.current()
        kept = await self.store.kept_checkpoint()
        return None if kept is None else Note.decode(kept)

    async def push_once(self, client: httpx.AsyncClient) -> Note:
        """Ask every witness to cosign the latest checkpoint; keep what verifies."""
        async with self._lock:
            note = await self.current()
            cp = Checkpoint.parse(note.text)
            sigs: list[NoteSignature] = []
            for peer in self.witnesses:
                try:
                    sigs += await self._push(client, peer, cp, note)
                except (httpx.HTTPError, WitnessRefused, DecodeError, SignatureError) as e:
                    log.warning("witness %s did not cosign size %d: %s", peer.url, cp.size, e)
                except StoreError as e:
                    log.warning("no consistency proof for witness %s: %s", peer.url, e)
            cosigned = note.with_signatures(sigs)
            if sigs:
                # In the store, so every relay process on it serves this one.
                await self.store.keep_checkpoint(cp.size, len(sigs), cosigned.encode())
            return cosigned

    async def _push(
        self, client: httpx.AsyncClient, peer: WitnessPeer, cp: Checkpoint, note: Note
    ) -> list[NoteSignature]:
        old = self._sizes.get(peer.url, 0)
        for _ in range(2):
            if old > cp.size:
                log.error(
                    "witness %s has cosigned size %d but the log is at %d: "
                    "this relay's log was rolled back or its key is used elsewhere",
                    peer.url,
                    old,
                    cp.size,
                )
                raise WitnessRefused(409)
            proof = await self.store.consistency_proof(old, cp.size) if 0 < old < cp.size else []
            body = AddCheckpoint(old, tuple(proof), note.encode()).encode()
            answer = await client.post(f"{peer.url}/add-checkpoint", content=body)
            if answer.status_code == 409 and answer.headers.get("content-type", "").startswith(
                SIZE_TYPE
            ):
                text = answer.text.strip()
                if not text.isdigit():
                    raise WitnessRefused(409)
                old = int(text)
                self._sizes[peer.url] = old
                continue
            if answer.status_code != 200:
                raise WitnessRefused(answer.status_code)
            self._sizes[peer.url] = cp.size
            lines = Note.decode(note.text + b"\n" + answer.content).signatures
            good = []
            for cosigner in peer.cosigners:
                mine = [s for s in lines if cosigner.matches(s)]
                verify_cosignature(Note(note.text, tuple(mine)), cosigner)
                good += mine
            return good
        raise WitnessRefused(409)

    async def run(self) -> None:
        """Push every ``witness_interval_seconds`` until cancelled."""
        if not self.witnesses:
            return
        async with httpx.AsyncClient(timeout=10.0) as client:
            while True:
                try:
                    await self.push_once(client)
                except StoreError as e:
                    log.warning("checkpoint skipped: %s", type(e).__name__)
                await asyncio.sleep(self.settings.witness_interval_seconds)
