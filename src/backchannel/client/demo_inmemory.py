"""The in-memory demo: two missions, one relay in memory, the two-person rule shown.

Each step says what happened and, for the refusals, why. The same steps run
through a real relay in :mod:`backchannel.client.demo`.
"""

from __future__ import annotations

from dataclasses import dataclass

from backchannel.client.harness import MissionKit, Pair, Rng, system_rng
from backchannel.errors import BackchannelError
from backchannel.protocol import channel as ch
from backchannel.protocol.payload import note
from backchannel.protocol.sealing import verify_signatures


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    outcome: str  # "ok" or "refused"
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "outcome": self.outcome, "detail": self.detail}


def run(message: str, rng: Rng = system_rng) -> list[Step]:
    steps: list[Step] = []
    ny = MissionKit.create("New York", ["Officer Ri", "Officer Han"], 2, rng)
    dc = MissionKit.create("Washington", ["Officer Smith", "Officer Jones"], 2, rng)
    steps.append(Step("create missions", "ok", "New York (2-of-2) and Washington (2-of-2)"))
    pair = Pair(ny, dc, rng=rng)
    number = ch.safety_number(ny.mission_id, dc.mission_id)
    steps.append(Step("pair", "ok", f"safety number {number}"))

    solo = pair.compose(pair.a, 0, note(message))
    try:
        pair.send(pair.a, solo)
        steps.append(Step("solo send", "ok", "a single officer's message left the mission"))
    except BackchannelError as exc:
        steps.append(Step("solo send", "refused", str(exc)))
    assert solo.message is not None
    try:
        verify_signatures(solo.message, ny.roster)
        steps.append(Step("solo message at the peer", "ok", "accepted with one signature"))
    except BackchannelError as exc:
        steps.append(Step("solo message at the peer", "refused", str(exc)))
    solo.reject()

    draft = pair.compose(pair.a, 0, note(message))
    cosigned = pair.cosign(pair.a, draft, 1)
    pair.send(pair.a, cosigned)
    steps.append(
        Step("co-signed send", "ok", "Officer Ri wrote, Officer Han checked and co-signed")
    )
    pair.run_until_quiet()
    cells = len(pair.relay.deposits)
    steps.append(
        Step("rounds", "ok", f"{pair.round} rounds, {cells} cells of equal size deposited")
    )

    incoming = pair.b.inbox[0]
    half = pair.open(pair.b, incoming, [0])
    try:
        half.open(dc.roster)
        steps.append(Step("solo open", "ok", "one officer read the message alone"))
    except BackchannelError as exc:
        steps.append(Step("solo open", "refused", str(exc)))
    opened = pair.open(pair.b, half, [1])
    text = opened.open(dc.roster).text
    steps.append(
        Step(
            "joint open",
            "ok" if text == message else "refused",
            "Officers Smith and Jones opened it together",
        )
    )
    delivered = [s for r in pair.a.results for s in r.delivered]
    steps.append(
        Step(
            "receipt",
            "ok" if delivered else "refused",
            f"New York holds a signed receipt for message {delivered}",
        )
    )
    return steps
