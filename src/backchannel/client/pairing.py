"""Pairing by a short one-time code: SPAKE2 over the relay's rendezvous tenant.

One mission's officer runs ``invite`` and reads the code aloud (at a meeting,
on the phone); the other mission's officer runs ``join`` with it. SPAKE2
turns the code into a shared key that an eavesdropper, the relay included,
cannot learn and can test only one guess against per run. Each side then sends
its mission card encrypted under that key; a card that opens under it came
from whoever knew the code, so the peer is recorded as confirmed (its safety
number is still shown, to compare if the parties wish).

Code: ``NNNN-NNNN-NNNN``: a nameplate (which rendezvous slots to use) and
eight secret digits (about 26.5 bits; online guessing gets one try per run).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable

from spake2 import SPAKE2_Symmetric
from spake2.spake2 import SPAKEError

from backchannel.client.records import PeerRecord
from backchannel.client.relay_client import RelayRefusal
from backchannel.client.service import Client
from backchannel.crypto import labels
from backchannel.crypto.primitives import hkdf, sha256
from backchannel.errors import (
    AuthenticationError,
    ConfigError,
    RelayUnavailable,
    RemoteProtocolError,
)
from backchannel.protocol import joint
from backchannel.protocol.constants import (
    CELL_SIZE,
    RENDEZVOUS_CREDENTIAL,
    RENDEZVOUS_TENANT,
    SLOT_LEN,
)


class PairingFailed(AuthenticationError):
    """The code did not match, or someone interfered: nothing was paired."""


def new_code() -> str:
    nameplate = 1000 + secrets.randbelow(9000)
    return f"{nameplate}-{secrets.randbelow(10000):04d}-{secrets.randbelow(10000):04d}"


def _parse(code: str) -> str:
    parts = code.strip().split("-")
    if len(parts) != 3 or not all(p.isdigit() and len(p) == 4 for p in parts):
        raise ConfigError("a pairing code looks like 1234-5678-9012")
    return parts[0]


def _slot(nameplate: str, side: bytes, index: int) -> bytes:
    """Where the inviter's first message waits: the one slot the code alone names."""
    return sha256(labels.PAKE_SLOT, nameplate.encode(), side, index.to_bytes(4, "big"))[:SLOT_LEN]


def _session_slot(session: bytes, side: bytes, index: int) -> bytes:
    """Every other slot: named by this run's first message (``session``, 32 bytes,
    where :func:`_slot` takes 4 digits), so no one can fill them before the run
    begins and an earlier run with the same nameplate never stands in the way.
    Once the first message is at the relay, anyone with the public rendezvous
    credential can read it and fill these slots first: that jams the run
    (:class:`PairingFailed`, start again), and pairs no one, since no card
    opens without the code."""
    return sha256(labels.PAKE_SLOT, session, side, index.to_bytes(4, "big"))[:SLOT_LEN]


class NameplateTaken(RelayUnavailable):
    """The code's first slot holds another run's message: draw another code."""


async def _exchange(
    client: Client,
    code: str,
    initiator: bool,
    timeout: float,
    poll: float,
    sleep: Callable[[float], Awaitable[None]],
    ready: Callable[[], None] | None = None,
) -> PeerRecord:
    nameplate = _parse(code)
    mine, theirs = (b"a", b"b") if initiator else (b"b", b"a")
    pake = SPAKE2_Symmetric(code.strip().encode(), idSymmetric=labels.PAKE_ID)
    outbound = pake.start()
    first = bytes([len(outbound)]) + outbound
    first += secrets.token_bytes(CELL_SIZE - len(first))
    url = client.mission().relay_url
    deadline = time.monotonic() + timeout
    async with client._relay(url, RENDEZVOUS_TENANT, RENDEZVOUS_CREDENTIAL) as relay:

        async def wait_for(slots: list[bytes]) -> dict[bytes, bytes]:
            while True:
                got = await relay.fetch(slots)
                if all(s in got for s in slots):
                    return got
                if time.monotonic() > deadline:
                    raise RelayUnavailable(
                        "the other mission did not show up in time; start again with a new code"
                    )
                await sleep(poll)

        interfered = PairingFailed(
            "someone else wrote where this pairing writes: nothing was paired; "
            "start again with a new code"
        )

        async def put(slot: bytes, cell: bytes, taken: Exception = interfered) -> None:
            """Deposit ``cell``; ``taken`` if another cell holds the slot already."""
            try:
                await relay.deposit(RENDEZVOUS_TENANT, slot, cell)
            except RelayRefusal as exc:
                if exc.status != 409:
                    raise
                raise taken from None

        # The inviter's first message opens the run, at the slot the code names;
        # everything after it is at slots that message names.
        opening = _slot(nameplate, b"a", 0)
        if initiator:
            await put(opening, first, NameplateTaken("this code's place on the relay is taken"))
            if ready is not None:
                ready()
            session = sha256(first)
            cell0 = (await wait_for([_session_slot(session, theirs, 0)])).popitem()[1]
        else:
            cell0 = (await wait_for([opening]))[opening]
            session = sha256(cell0)
            await put(_session_slot(session, mine, 0), first)
        try:
            shared = pake.finish(cell0[1 : 1 + cell0[0]])
        except (SPAKEError, ValueError):
            raise PairingFailed(
                "the pairing messages are malformed: nothing was paired; start again"
            ) from None
        key = hkdf(shared, salt=None, info=labels.PAKE_KEY + nameplate.encode())
        side_key = {s: hkdf(key, salt=None, info=labels.PAKE_KEY + s) for s in (b"a", b"b")}

        card = client.mission_card().encode().encode()
        n = joint.cells_needed(len(card), CELL_SIZE)
        slots = [_session_slot(session, mine, 1 + i) for i in range(n)]
        for slot, cell in zip(
            slots,
            joint.to_cells(card, bytes(16), slots, side_key[mine], CELL_SIZE, secrets.token_bytes),
            strict=True,
        ):
            await put(slot, cell)

        first_slot = _session_slot(session, theirs, 1)
        try:
            head = joint.open_cell(
                (await wait_for([first_slot]))[first_slot], first_slot, side_key[theirs], CELL_SIZE
            )
            their_slots = [_session_slot(session, theirs, 1 + i) for i in range(head.count)]
            got = await wait_for(their_slots)
            chunks = [joint.open_cell(got[s], s, side_key[theirs], CELL_SIZE) for s in their_slots]
            text = joint.join_chunks(chunks).decode()
        except (AuthenticationError, RemoteProtocolError, UnicodeDecodeError):
            raise PairingFailed(
                "the code did not match, or someone interfered: nothing was paired; "
                "check the code and start again"
            ) from None
        # What this side has read, the relay may drop now rather than keep it
        # for its retention against the shared tenant's quota (the slots stay
        # spent until then: a code's first slot is not free again before).
        their_first = _session_slot(session, theirs, 0) if initiator else opening
        with contextlib.suppress(RelayUnavailable, RelayRefusal):
            await relay.ack([their_first, *their_slots])
    rec = client.add_peer(text)
    return client.confirm_peer(rec.mission_id, rec.safety_number)


async def invite(
    client: Client,
    code: str,
    *,
    timeout: float = 600.0,
    poll: float = 1.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ready: Callable[[], None] | None = None,
) -> PeerRecord:
    """Wait for the other mission to join with ``code`` (from :func:`new_code`).

    ``ready`` is called once the run has its place on the relay: only then is
    the code worth reading out. :class:`NameplateTaken` (before ``ready``):
    draw another code.
    """
    return await _exchange(client, code, True, timeout, poll, sleep, ready)


async def join(
    client: Client,
    code: str,
    *,
    timeout: float = 600.0,
    poll: float = 1.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> PeerRecord:
    """Join the mission that read ``code`` to us."""
    return await _exchange(client, code, False, timeout, poll, sleep)
