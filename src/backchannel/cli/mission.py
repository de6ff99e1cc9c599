"""``backchannel mission ...``: found a mission, sign and adopt it, hand out its card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from backchannel.cli.context import open_client, read_file, run, write_file
from backchannel.cli.officer import OutOption, emit_card
from backchannel.cli.output import Text, fingerprint, output, table
from backchannel.client import recovery
from backchannel.client.api import Roster
from backchannel.client.cards import OfficerCard
from backchannel.client.mission import Proposal
from backchannel.errors import ConfigError

app = typer.Typer(help="Found a mission with colleagues, then show it or hand out its card.")

ProposalArg = Annotated[
    Path, typer.Argument(metavar="PROPOSAL", help="The proposal file passed between officers.")
]


def _roster(
    roster: Roster, runner_id: bytes, signed: set[bytes] | None = None
) -> tuple[list[dict[str, Any]], RenderableType]:
    """The roster as JSON and as a table: every name with its officer-id fingerprint."""
    doc: list[dict[str, Any]] = []
    t = table("officer", "officer id", "role", *(["signed"] if signed is not None else []))
    for o in roster.officers:
        runner = o.officer_id == runner_id
        entry: dict[str, Any] = {"name": o.name, "officer_id": o.officer_id.hex(), "runner": runner}
        row: list[RenderableType] = [
            Text(o.name, style="bold"),
            fingerprint(o.officer_id),
            "desk device (runner)" if runner else "co-signer",
        ]
        if signed is not None:
            entry["signed"] = o.officer_id in signed
            row.append("[green]yes[/green]" if entry["signed"] else "[yellow]not yet[/yellow]")
        doc.append(entry)
        t.add_row(*row)
    return doc, t


def _proposal_answer(ctx: typer.Context, p: Proposal, out_file: Path, verb: str) -> None:
    signed = p.signed_by()
    roster_doc, roster_table = _roster(p.genesis, p.runner_id, signed)
    g = p.genesis
    nxt = (
        "every officer has signed: each runs `backchannel mission adopt FILE`"
        if p.complete
        else "pass the file to the next officer: `backchannel mission sign FILE`"
    )
    output(ctx).done(
        {
            "mission": g.mission_name,
            "mission_id": p.mission_id.hex(),
            "threshold": g.threshold,
            "officers": roster_doc,
            "relay": p.relay_url,
            "signatures": len(signed),
            "complete": p.complete,
            "out": str(out_file),
        },
        Text.assemble(
            ("ok", "green"),
            f" {verb} mission ",
            (g.mission_name, "bold"),
            f": {g.threshold} of {g.n} officers must act together; relay {p.relay_url}",
        ),
        roster_table,
        Text(f"{len(signed)} of {g.n} signatures; written to {out_file}"),
        Text(f"next: {nxt}", style="dim"),
    )


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="The mission's name.")],
    threshold: Annotated[
        int, typer.Option("--threshold", "-k", help="How many officers must act together.")
    ],
    relay: Annotated[str, typer.Option("--relay", help="The mission's relay, e.g. https://...")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the proposal.")],
    officers: Annotated[
        list[Path] | None,
        typer.Option(
            "--officer", metavar="CARD", help="A colleague's officer card file (repeat for each)."
        ),
    ] = None,
    recovery_cards: Annotated[
        list[Path] | None,
        typer.Option(
            "--recovery",
            metavar="CARD",
            help="A recovery card of headquarters' (repeat for each; `recovery create`).",
        ),
    ] = None,
    recovery_k: Annotated[
        int,
        typer.Option("--recovery-k", help="How many recovery keys may act in place of k officers."),
    ] = 0,
) -> None:
    """Found a mission: propose its roster (you and the colleagues' cards) and sign it."""
    cards = [OfficerCard.decode(read_file(p, "an officer card")) for p in officers or []]
    keys = [recovery.read_card(read_file(p, "a recovery card")) for p in recovery_cards or []]
    if keys and not recovery_k:
        raise ConfigError("give --recovery-k: how many of the recovery keys must act together")
    with open_client(ctx) as client:
        proposal = client.propose_mission(name, threshold, cards, relay, keys, recovery_k)
    write_file(out_file, proposal.encode())
    _proposal_answer(ctx, proposal, out_file, "proposed")


@app.command()
def sign(
    ctx: typer.Context,
    proposal_file: ProposalArg,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of back into PROPOSAL.")
    ] = None,
) -> None:
    """Sign a mission proposal (check the roster it shows with your colleagues)."""
    proposal = Proposal.decode(read_file(proposal_file, "a mission proposal"))
    with open_client(ctx) as client:
        proposal = client.sign_proposal(proposal)
    target = out_file or proposal_file
    write_file(target, proposal.encode())
    _proposal_answer(ctx, proposal, target, "signed")


@app.command()
def adopt(ctx: typer.Context, proposal_file: ProposalArg) -> None:
    """Join the mission once every officer has signed (the founder registers it at the relay)."""
    proposal = Proposal.decode(read_file(proposal_file, "a mission proposal"))
    with open_client(ctx) as client:
        state = client.adopt_mission(proposal)
        runner = client.is_runner
        if runner:
            run(client.register_tenant())
    output(ctx).done(
        {
            "mission": state.name,
            "mission_id": state.mission_id.hex(),
            "runner": runner,
            "relay": state.relay_url,
            "registered": runner,
        },
        Text.assemble(("ok", "green"), " adopted mission ", (state.name, "bold")),
        Text(
            f"registered at {state.relay_url}; this device drafts the mission's messages"
            if runner
            else "this device co-signs and co-opens the mission's messages"
        ),
        Text("next: `backchannel mission card --out FILE` for the peer mission", style="dim"),
    )


@app.command()
def show(ctx: typer.Context) -> None:
    """Show the mission: roster, threshold, relay."""
    with open_client(ctx) as client:
        m = client.mission()
        runner = client.is_runner
    roster = m.roster
    roster_doc, roster_table = _roster(roster, m.runner_id)
    output(ctx).done(
        {
            "mission": m.name,
            "mission_id": m.mission_id.hex(),
            "threshold": roster.threshold,
            "officers": roster_doc,
            "relay": m.relay_url,
            "tenant": m.tenant_id,
            "runner": runner,
            "recovery": {
                "threshold": roster.recovery_threshold,
                "keys": [{"name": o.name, "key_id": o.officer_id.hex()} for o in roster.recovery],
            },
        },
        Text.assemble("mission ", (m.name, "bold"), f": {roster.threshold} of {roster.n} officers"),
        Text(f"mission id {fingerprint(m.mission_id)}"),
        Text(f"relay {m.relay_url} (tenant {m.tenant_id})"),
        roster_table,
        Text(
            f"recovery quorum: {roster.recovery_threshold} of {len(roster.recovery)} of "
            "headquarters' keys may act in place of the officers"
            if roster.recovery
            else "no recovery quorum: if fewer than k officers remain, the mission is founded again"
        ),
    )


@app.command()
def card(ctx: typer.Context, out_file: OutOption = None) -> None:
    """Print (or write) the mission card the peer mission needs to pair."""
    with open_client(ctx) as client:
        text = client.mission_card().encode()
    emit_card(ctx, text, out_file)
