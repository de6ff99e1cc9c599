"""The rounds: ``sync`` (now), ``run`` (every round, until Ctrl-C) and ``status``."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import RenderableType

from backchannel.cli.context import open_client, run
from backchannel.cli.output import Output, Text, output, table
from backchannel.client.service import Client, SyncReport

#: ``sync`` exits with this when the relay could not be reached or refused: the
#: cells wait, persisted on this device, and go out at the next sync.
EXIT_RELAY_DOWN = 3


def _report_lines(r: SyncReport) -> list[RenderableType]:
    lines: list[RenderableType] = [
        Text.assemble(
            ("ok", "green") if r.relay_error is None else ("relay", "yellow"),
            f" {r.rounds} round(s) run, {r.rounds_received} round(s) of the peer received, "
            f"{r.deposited} cell(s) deposited, "
            f"{r.waiting} waiting, {r.joint_objects} mailbox object(s) from colleagues",
        )
    ]
    if r.messages:
        ids = ", ".join(m[:8] for m in r.messages)
        lines.append(Text(f"new message(s): {ids}; see `backchannel inbox`"))
    if r.delivered:
        lines.append(Text(f"receipt(s): the peer mission holds message(s) {r.delivered}"))
    lines += [Text(f"alarm: {a}", style="bold red") for a in r.alarms]
    if r.relay_error is not None:
        lines.append(
            Text(
                f"the relay is unavailable ({r.relay_error}); {r.waiting} cell(s) wait on this "
                "device and go out at the next sync",
                style="yellow",
            )
        )
    return lines


def sync(
    ctx: typer.Context,
    rounds: Annotated[
        int | None,
        typer.Option(
            "--rounds",
            min=1,
            help="Run exactly this many rounds now (default: until nothing waits, at most 64).",
        ),
    ] = None,
) -> None:
    """Run rounds now, back to back: each one the same deposit and fetch as on the schedule."""
    with open_client(ctx) as client:
        report = run(client.sync(rounds) if rounds else client.settle())
    output(ctx).done(report.as_dict(), *_report_lines(report))
    if report.relay_error is not None:
        raise typer.Exit(EXIT_RELAY_DOWN)


async def _every(client: Client, seconds: float | None, out: Output) -> None:
    def show(report: SyncReport) -> None:
        if out.json:  # one JSON document per round, one per line
            sys.stdout.write(json.dumps(report.as_dict()) + "\n")
            sys.stdout.flush()
        else:
            for line in _report_lines(report):
                out.console.print(line)

    await client.run(show, seconds=seconds)


def run_daemon(
    ctx: typer.Context,
    interval: Annotated[
        float | None,
        typer.Option("--interval", min=0.1, help="Seconds between rounds (default: round length)."),
    ] = None,
) -> None:
    """Keep the round schedule in the foreground until Ctrl-C (deposit, then fetch, each round)."""
    out = output(ctx)
    with open_client(ctx) as client:
        seconds = interval or client.round_seconds()
        if not out.json:
            out.console.print(Text(f"one round every {seconds:g} s; Ctrl-C stops", style="dim"))
        try:
            run(_every(client, interval, out))
        except KeyboardInterrupt:
            if not out.json:
                out.console.print(Text("stopped", style="dim"))


def status(ctx: typer.Context) -> None:
    """Show each channel's counters and alarms, and the cells waiting on this device."""
    with open_client(ctx) as client:
        st = client.status()
    role = "desk device (runner)" if st["runner"] else "co-signer"
    lines: list[RenderableType] = [
        Text.assemble(
            "officer ",
            (st["officer"], "bold"),
            " of ",
            (st["mission"] or "no mission", "bold"),
            f", {role}",
        ),
        Text(f"{st['waiting_cells']} cell(s) waiting to be deposited"),
    ]
    t = table("peer", "sent", "received", "delivered", "next send", "next receive", "pending")
    for c in st["channels"]:
        t.add_row(
            Text(c["peer"], style="bold"),
            str(c["sent"]),
            str(c["received"]),
            str(c["delivered"]),
            str(c["next_send_round"]),
            str(c["next_receive_round"]),
            str(c["pending_cells"]),
        )
        lines += [Text(f"alarm ({c['peer']}): {a}", style="bold red") for a in c["alarms"]]
        if c["takeover_pending"]:
            lines.append(
                Text(
                    f"{c['peer']}: this device took the channel over; messages wait until "
                    "the peer has added the mission card written here",
                    style="bold",
                )
            )
    lines.insert(2, t if st["channels"] else Text("no channels yet"))
    w = st["witnesses"]
    if w and w["needed"]:
        lines.append(
            Text(
                f"relay log witnessed up to size {w['witnessed_size']} "
                f"({', '.join(w['cosigned_by']) or 'no cosignature yet'}); "
                f"the policy asks {w['asked']}"
            )
        )
    move = st["relay_move"]
    if move:
        tell = ", ".join(move["peers_to_tell"])
        lines.append(
            Text(
                f"the mission left {move['from']} (proven to lie) for {move['to']}"
                + (f"; give {tell} our new card (`backchannel mission card`)" if tell else ""),
                style="bold",
            )
        )
    lines += [Text(f"alarm: {a}", style="bold red") for a in st["relay_alarms"]]
    lines += [
        Text(f"alarm: {a['text']}; {a['what_to_do']}", style="bold red")
        for a in st["officer_alarms"]
    ]
    if st["relay_evidence"]:
        lines.append(
            Text(
                f"{len(st['relay_evidence'])} proof(s) of relay misbehaviour kept; "
                "`backchannel evidence export DIR` writes them out",
                style="bold red",
            )
        )
    output(ctx).done(st, *lines)
