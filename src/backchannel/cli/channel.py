"""``backchannel channel ...``: pair with a confirmed peer mission through signed offers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from backchannel.cli.context import open_client, read_file, write_file
from backchannel.cli.output import Text, output, short, table
from backchannel.cli.peer import PeerArg
from backchannel.client.api import ChannelOffer, Policy
from backchannel.client.cards import decode_offer, encode_offer
from backchannel.client.records import ChannelRecord
from backchannel.client.service import Client
from backchannel.errors import ConfigError

app = typer.Typer(help="Pair with a peer mission: offers signed by k officers of each side.")

OfferArg = Annotated[Path, typer.Argument(metavar="OFFER", help="A channel offer file.")]


def _offer_answer(
    ctx: typer.Context, client: Client, offer: ChannelOffer, out_file: Path, verb: str
) -> None:
    k = client.mission().roster.threshold
    n = len(offer.signatures)
    nxt = (
        "send it to the peer mission, and have every officer run "
        "`backchannel channel accept OWN_OFFER PEER_OFFER`"
        if n >= k
        else "a colleague signs it: `backchannel channel sign FILE`"
    )
    policy = _policy(offer.terms.policy)
    output(ctx).done(
        {"out": str(out_file), "signatures": n, "threshold": k, "policy": offer.terms.policy.label},
        Text.assemble(("ok", "green"), f" {verb} the channel offer; {n} of {k} signatures"),
        Text(f"policy: {policy}"),
        Text(f"written to {out_file}"),
        Text(f"next: {nxt}", style="dim"),
    )


_POLICIES = {
    "record": "for the record: every message carries k officers' signatures",
    "deniable": "deniable: messages carry MACs either side could compute, never signatures",
    "either": "deniable or for the record, chosen message by message (compose --deniable)",
}


def _policy(policy: Policy) -> str:
    return _POLICIES[policy.label]


@app.command()
def offer(
    ctx: typer.Context,
    peer: PeerArg,
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the offer.")],
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="record (signatures), deniable (MACs either side could compute; always with "
            "a contact) or either (message by message); both missions' offers must agree. "
            "docs/spec/deniable-v1.md",
        ),
    ] = "record",
) -> None:
    """Draw our half of the channel secret for a confirmed peer, and sign the offer."""
    if policy not in _POLICIES:
        raise ConfigError("--policy is record, deniable or either")
    with open_client(ctx) as client:
        rec = client.find_peer(peer)
        made = client.make_offer(rec.mission_id, policy=Policy[policy.upper()])
        write_file(out_file, encode_offer(made))
        _offer_answer(ctx, client, made, out_file, "made")


@app.command()
def sign(
    ctx: typer.Context,
    offer_file: OfferArg,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of back into OFFER.")
    ] = None,
) -> None:
    """Co-sign our mission's channel offer."""
    made = decode_offer(read_file(offer_file, "a channel offer"))
    target = out_file or offer_file
    with open_client(ctx) as client:
        signed = client.sign_offer(made)
        write_file(target, encode_offer(signed))
        _offer_answer(ctx, client, signed, target, "signed")


def _doc(client: Client, rec: ChannelRecord) -> dict[str, Any]:
    return {
        "channel_id": rec.channel_id.hex(),
        "peer": client.peer(rec.peer_mission).name,
        "start_round": rec.start_round,
        "policy": rec.terms.policy.label,
    }


@app.command()
def accept(
    ctx: typer.Context,
    own_offer: Annotated[
        Path, typer.Argument(metavar="OWN_OFFER", help="Our mission's signed offer.")
    ],
    peer_offer: Annotated[
        Path, typer.Argument(metavar="PEER_OFFER", help="The peer mission's signed offer.")
    ],
) -> None:
    """Check both offers and open the channel on this device (every officer runs it)."""
    x = decode_offer(read_file(own_offer, "a channel offer"))
    y = decode_offer(read_file(peer_offer, "a channel offer"))
    with open_client(ctx) as client:
        rec = client.accept_channel(x, y)
        doc = _doc(client, rec)
    output(ctx).done(
        doc,
        Text.assemble(
            ("ok", "green"),
            " channel with ",
            (doc["peer"], "bold"),
            f" open ({short(rec.channel_id)}), from round {rec.start_round}",
        ),
        Text(f"policy: {_policy(rec.terms.policy)}"),
    )


@app.command("list")
def list_channels(ctx: typer.Context) -> None:
    """List this device's channels."""
    with open_client(ctx) as client:
        docs = [_doc(client, c) for c in client.channels()]
    t = table("peer", "channel", "from round", "policy")
    for d in docs:
        t.add_row(
            Text(d["peer"], style="bold"), d["channel_id"][:8], str(d["start_round"]),
            d["policy"],
        )  # fmt: skip
    output(ctx).done({"channels": docs}, t if docs else Text("no channels yet"))
