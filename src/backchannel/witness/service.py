"""A witness: cosigns a log's checkpoints after checking that it only grows.

The HTTP interface is c2sp.org/tlog-witness's ``add-checkpoint``, so a relay
pushes its checkpoints here exactly as it would to witness software written
elsewhere, and this witness would serve any log that speaks the protocol:

* the origin must be one the witness follows (else 404), signed by that log's
  key (else 403);
* the request's old size must be the size the witness last cosigned (else 409
  with that size, ``text/x.tlog.size``); equal sizes need equal roots (else
  409, and the two signed checkpoints are kept as evidence of a fork);
* the consistency proof from the old head to the new must verify (else 422,
  evidence kept);
* then the new head is committed and the answer is two cosignature lines,
  Ed25519 (type 0x04) and ML-DSA-44 (type 0x06), timestamped now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from backchannel.errors import DecodeError, SignatureError
from backchannel.protocol.merkle import ProofError, verify_consistency
from backchannel.protocol.note import (
    TYPE_COSIGNATURE_ED25519,
    TYPE_COSIGNATURE_MLDSA44,
    AddCheckpoint,
    Checkpoint,
    Note,
    Verifier,
    cosign,
    verify_note,
)
from backchannel.witness.state import LogHead, WitnessKeys, WitnessState

#: Largest request body read (a note of 32 post-quantum signatures fits).
BODY_LIMIT = 256 * 1024
SIZE_TYPE = "text/x.tlog.size"


@dataclass
class Refusal(Exception):
    status: int
    text: str
    content_type: str = "text/plain; charset=utf-8"
    #: A request signed by the log that contradicts what was cosigned: kept.
    evidence: bool = False


class Witness:
    def __init__(
        self,
        name: str,
        keys: WitnessKeys,
        state: WitnessState,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.keys = keys
        self.state = state
        self.clock = clock

    def verifiers(self) -> tuple[Verifier, Verifier]:
        """The cosigner keys clients configure: Ed25519 (0x04), ML-DSA-44 (0x06)."""
        return (
            Verifier(self.name, TYPE_COSIGNATURE_ED25519, self.keys.ed25519.public),
            Verifier(self.name, TYPE_COSIGNATURE_MLDSA44, self.keys.mldsa44.public),
        )

    def add_checkpoint(self, body: bytes) -> bytes:
        """The cosignature lines for the request ``body``, or raise :class:`Refusal`."""
        try:
            req = AddCheckpoint.decode(body)
            note = Note.decode(req.note)
            cp = Checkpoint.parse(note.text)
        except DecodeError as exc:
            raise Refusal(400, f"malformed request: {exc}") from None
        log = self.state.log(cp.origin)
        if log is None:
            raise Refusal(404, "unknown log origin")
        try:
            verify_note(note, [log.verifier])
        except SignatureError:
            raise Refusal(403, "no valid signature from the log's key") from None
        if req.old_size > cp.size:
            raise Refusal(400, "old size is larger than the checkpoint's size")
        try:
            self.state.advance(cp.origin, lambda head: _check(head, req, cp))
        except Refusal as refusal:
            if refusal.evidence:
                self.state.record_evidence(cp.origin, int(self.clock()), refusal.text, body)
            raise
        now = int(self.clock())
        sigs = [cosign(cp, self.name, self.keys.ed25519, now)]
        sigs.append(cosign(cp, self.name, self.keys.mldsa44, now))
        return b"".join(s.line() for s in sigs)


def _check(head: LogHead, req: AddCheckpoint, cp: Checkpoint) -> tuple[int, bytes]:
    if req.old_size != head.size:
        raise Refusal(409, f"{head.size}\n", SIZE_TYPE)
    if req.old_size == cp.size:
        if req.proof:
            raise Refusal(422, "a proof between equal sizes is empty", evidence=True)
        if cp.root != head.root:
            raise Refusal(409, "fork: same size, another root than the one cosigned", evidence=True)
        return head.size, head.root
    if req.old_size == 0:
        if req.proof:
            raise Refusal(422, "the proof from size 0 is empty", evidence=True)
        return cp.size, cp.root
    try:
        verify_consistency(req.old_size, cp.size, head.root, cp.root, req.proof)
    except ProofError:
        raise Refusal(422, "consistency proof does not verify", evidence=True) from None
    return cp.size, cp.root


def create_witness_app(witness: Witness) -> Starlette:
    # One SQLite connection, one request at a time in a worker thread.
    limiter = anyio.CapacityLimiter(1)

    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > BODY_LIMIT:
                return PlainTextResponse("request too large", status_code=413)
        try:
            lines = await anyio.to_thread.run_sync(witness.add_checkpoint, body, limiter=limiter)
        except Refusal as refusal:
            # Exactly the type the protocol names (Starlette would add a charset).
            headers = {"content-type": refusal.content_type}
            return Response(refusal.text.encode(), refusal.status, headers=headers)
        return Response(lines, 200, media_type="text/plain; charset=utf-8")

    async def vkeys(request: Request) -> Response:
        text = "".join(f"{v.vkey()}\n" for v in witness.verifiers())
        return PlainTextResponse(text)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/vkeys", vkeys, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
