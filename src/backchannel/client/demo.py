"""The demo: four officers, two missions, one real relay, the two-person rule shown.

"New York" (Officers Ri and Han) and "Washington" (Officers Smith and Jones)
found their missions, pair, and exchange one message. A solo send and a solo
open are refused; the co-signed message is opened jointly and a receipt comes
back. Every step is recorded with its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from backchannel.client.home import Home
from backchannel.client.keystore import DEFAULT_PARAMS, KdfParams
from backchannel.client.report import SyncReport
from backchannel.client.service import Client, RelayFactory, default_relay_factory
from backchannel.errors import BackchannelError
from backchannel.protocol import channel as ch
from backchannel.protocol.payload import note
from backchannel.protocol.states import SendState


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    outcome: str  # "ok" or "refused"
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "outcome": self.outcome, "detail": self.detail}


OFFICERS = {
    "New York": ("Officer Ri", "Officer Han"),
    "Washington": ("Officer Smith", "Officer Jones"),
}


async def found(
    workdir: Path,
    mission: str,
    names: tuple[str, str],
    relay_url: str,
    factory: RelayFactory,
    passphrase: str,
    params: KdfParams,
    clock: Callable[[], float] = time.time,
) -> tuple[Client, Client]:
    slug = mission.lower().replace(" ", "-")
    a, b = (
        Client(Home.create(workdir / f"{slug}-{i + 1}", n, passphrase, params), factory, clock)
        for i, n in enumerate(names)
    )
    proposal = a.propose_mission(mission, 2, [b.officer_card()], relay_url)
    proposal = b.sign_proposal(proposal)
    a.adopt_mission(proposal)
    b.adopt_mission(proposal)
    await a.register_tenant()
    return a, b


async def pair(ny: tuple[Client, Client], dc: tuple[Client, Client]) -> str:
    cards = {id(ny): ny[0].mission_card().encode(), id(dc): dc[0].mission_card().encode()}
    offers = {}
    for mine, theirs in ((ny, dc), (dc, ny)):
        for officer in mine:
            rec = officer.add_peer(cards[id(theirs)])
            officer.confirm_peer(rec.mission_id, rec.safety_number)
        peer_id = theirs[0].mission().mission_id
        offer = mine[0].make_offer(peer_id)
        offers[id(mine)] = mine[1].sign_offer(offer)
    for officer in (*ny, *dc):
        officer.accept_channel(offers[id(ny)], offers[id(dc)])
    return ch.safety_number(ny[0].mission().mission_id, dc[0].mission().mission_id)


async def lockstep(
    devices: Sequence[Client], done: Callable[[], bool], limit: int = 16
) -> set[int]:
    """Run rounds on ``devices`` in step (all deposit, then all fetch) until ``done()``.

    Returns the sequence numbers the peers acknowledged meanwhile.
    """
    delivered: set[int] = set()
    async with contextlib.AsyncExitStack() as stack:
        for d in devices:
            await stack.enter_async_context(d.relay_session())
        for _ in range(limit):
            reports = [SyncReport() for _ in devices]
            # The devices are separate machines: each phase runs on all at once.
            pairs = list(zip(devices, reports, strict=True))
            await asyncio.gather(*(d.deposit_phase(r) for d, r in pairs))
            await asyncio.gather(*(d.fetch_phase(r) for d, r in pairs))
            for r in reports:
                delivered.update(r.delivered)
            if done():
                break
    return delivered


async def run(
    workdir: Path,
    relay_url: str,
    message: str,
    *,
    factory: RelayFactory = default_relay_factory,
    passphrase: str,
    params: KdfParams = DEFAULT_PARAMS,
) -> list[Step]:
    steps: list[Step] = []

    def step(name: str, ok: bool, detail: str) -> None:
        steps.append(Step(name, "ok" if ok else "refused", detail))

    ny = await found(
        workdir, "New York", OFFICERS["New York"], relay_url, factory, passphrase, params
    )
    dc = await found(
        workdir, "Washington", OFFICERS["Washington"], relay_url, factory, passphrase, params
    )
    step("found missions", True, "New York (Ri, Han) and Washington (Smith, Jones), each 2-of-2")
    number = await pair(ny, dc)
    step("pair", True, f"safety number {number}, compared and confirmed on both sides")

    ri, han = ny
    smith, jones = dc
    channel = ri.channel_for("Washington").channel_id
    draft = ri.compose(channel, note(message))
    try:
        ri.send_now(draft.draft_id)
        step("solo send", True, "Officer Ri's message left the mission alone")
    except BackchannelError as exc:
        step("solo send", False, str(exc))

    await ri.settle()  # the co-sign request goes to Han's mailbox
    await han.settle()
    [request] = han.cosign_requests()
    _, shown = han.show_cosign(request.request_id)
    han.approve_cosign(request.request_id)
    step(
        "co-sign",
        shown.text == message,
        "Officer Han saw the plaintext on his own device and co-signed",
    )
    devices = (*ny, *dc)
    # Rounds in step on the four devices: each deposits, then each fetches.
    await lockstep(devices, lambda: bool(smith.inbox() and jones.inbox()))
    [item] = smith.inbox()
    step(
        "deliver",
        True,
        f"Washington received message {item.message_id.hex()[:8]} in fixed-size cells",
    )

    smith.request_open(item.message_id)
    try:
        smith.read(item.message_id)
        step("solo open", True, "Officer Smith read the message alone")
    except BackchannelError as exc:
        step("solo open", False, str(exc))
    await lockstep(devices, lambda: bool(jones.share_requests()))
    [share_request] = jones.share_requests()
    jones.approve_share(share_request.request_id)
    await lockstep(devices, lambda: smith.inbox()[-1].payload != b"")
    text = smith.read(item.message_id).text
    step("joint open", text == message, "Officers Smith and Jones opened it together")

    # The receipt rides in Washington's next cell.
    def receipted() -> list[int]:
        return [d.seq for d in ri.drafts() if d.outgoing.state is SendState.DELIVERED]

    await lockstep(devices, lambda: bool(receipted()))
    step(
        "receipt",
        bool(receipted()),
        f"New York holds a signed receipt for message {receipted()}",
    )
    alarms = [a for c in devices for a in c.relay_alarms()]
    heads = [c.log.monitor(relay_url) for c in devices]
    sizes = sorted({m.head.size for m in heads if m is not None and m.head is not None})
    step(
        "relay log",
        not alarms and len(sizes) > 0,
        "every cell proved in the relay's signed log, gossiped heads consistent, no alarm "
        f"(pinned heads of sizes {sizes[0]} to {sizes[-1]} on the four devices)"
        if not alarms and sizes
        else "; ".join(alarms) or "no signed head was seen",
    )
    # The refused attempts reached the colleagues, and every device holds a
    # record of what each officer did that verifies.
    await lockstep(devices, lambda: not any(c.mailbox.waiting_audit() for c in devices), 32)
    await lockstep(devices, lambda: True, 1)  # the last entries are read
    told = [a.text for a in (*han.officer_alarms(), *jones.officer_alarms())]
    broken = [p for c in devices for p in c.audit_verify()]
    entries = sum(len(c.audit_entries()) for c in devices)
    step(
        "record",
        len(told) == 2 and not broken,
        f"the colleagues were told of both refused attempts ({'; '.join(told)}); "
        f"the audit log of each mission verifies on every device ({entries} entries held)"
        if not broken
        else "; ".join(broken),
    )
    for c in devices:
        c.home.close()
    return steps
