"""``backchannel mission policy ...``: what the mission's channels may carry, set k of n."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backchannel.cli.context import open_client
from backchannel.cli.output import Text, output
from backchannel.client.api import (
    DEFAULT_LAG_SECONDS,
    NO_FALLBACK,
    NO_WITNESSES,
    FallbackRelay,
    Policy,
    WitnessRule,
)
from backchannel.client.policy import PendingPolicy, fallback_asked, witness_rule
from backchannel.errors import ConfigError

app = typer.Typer(
    help=(
        "The mission's policy: which official channels may be deniable, and how many "
        "officers sign a message to a Track II contact. A change takes k officers' "
        "signatures; the rounds carry it to every colleague."
    )
)

_KINDS = {p.label: p for p in Policy}


def _doc(p: PendingPolicy) -> dict[str, object]:
    return {
        "ref": p.ref,
        "version": p.policy.version,
        "official": sorted(k.label for k in p.policy.official),
        "track2_k": p.policy.track2_k,
        "epoch_seconds": p.policy.epoch_seconds,
        "unseen_seconds": p.policy.unseen_seconds,
        "witnesses": _witness_doc(p.policy.witnesses),
        "fallback_relay": _fallback_doc(p.policy.fallback),
        "signed_by": list(p.signed_by),
        "needed": p.needed,
        "adopted": p.adopted,
    }


def _fallback_doc(fallback: FallbackRelay) -> dict[str, str] | None:
    if not fallback.named:
        return None
    return {"url": fallback.url, "key_fingerprint": fallback.key_fingerprint.hex()}


def _witness_doc(rule: WitnessRule) -> dict[str, object]:
    return {
        "keys": [k.vkey() for k in rule.keys],
        "needed": rule.needed,
        "lag_seconds": rule.lag_seconds,
    }


@app.command()
def show(ctx: typer.Context) -> None:
    """The policy in force, and changes waiting for signatures."""
    with open_client(ctx) as client:
        current = client.mission_policy()
        pending = client.policy_pending()
    lines: list[Text] = [Text(current.describe())]
    for p in pending:
        mark = "" if p.signed_by_me else f"; `backchannel mission policy sign {p.ref}`"
        lines.append(
            Text(
                f"proposed {p.ref}: {p.policy.describe()}; signed by "
                f"{', '.join(p.signed_by)} ({len(p.signed_by)} of {p.needed}){mark}"
            )
        )
    output(ctx).done(
        {
            "version": current.version,
            "official": sorted(k.label for k in current.official),
            "track2_k": current.track2_k,
            "epoch_seconds": current.epoch_seconds,
            "unseen_seconds": current.unseen_seconds,
            "witnesses": _witness_doc(current.witnesses),
            "fallback_relay": _fallback_doc(current.fallback),
            "pending": [_doc(p) for p in pending],
        },
        *lines,
    )


@app.command()
def propose(
    ctx: typer.Context,
    official: Annotated[
        list[str],
        typer.Option(
            "--official",
            help="A kind of official channel allowed: record, deniable, either (repeatable).",
        ),
    ],
    track2_k: Annotated[
        int,
        typer.Option(
            "--track2-k",
            help="Officers who sign a message to a Track II contact (0: the roster's k).",
        ),
    ] = 0,
    epoch_hours: Annotated[
        int | None,
        typer.Option(
            "--epoch-hours",
            help="How many hours a channel's send keys last before they renew (1 to 168; "
            "default: as now, a day at first).",
        ),
    ] = None,
    unseen_hours: Annotated[
        int | None,
        typer.Option(
            "--unseen-hours",
            help="How many hours a colleague's device may send nothing before an alarm "
            "(1 to 720; default: as now, a day at first).",
        ),
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option(
            "--witness",
            help="A witness's cosigner key (the vkey `witness init` printed), or a file of "
            "them, one per line (repeatable; list both keys of a witness to require its "
            "post-quantum cosignature).",
        ),
    ] = None,
    witnesses_needed: Annotated[
        int | None,
        typer.Option(
            "--witnesses-needed",
            help="How many of the witnesses must cosign the relay's heads (default: all).",
        ),
    ] = None,
    witness_lag_minutes: Annotated[
        int,
        typer.Option(
            "--witness-lag-minutes",
            help="How long a head may stay without their cosignatures before an alarm "
            "(10 to 10,080).",
        ),
    ] = DEFAULT_LAG_SECONDS // 60,
    no_witnesses: Annotated[
        bool, typer.Option("--no-witnesses", help="Ask for no witness any more.")
    ] = False,
    fallback_url: Annotated[
        str | None,
        typer.Option(
            "--fallback-relay",
            help="The relay the mission moves to when its own is proven to lie "
            "(http(s)://host[:port]; needs --fallback-key).",
        ),
    ] = None,
    fallback_key: Annotated[
        str | None,
        typer.Option(
            "--fallback-key",
            help="That relay's key fingerprint, 64 hex digits, as its operator reads it "
            "out (`backchannel relay key` on the relay's machine).",
        ),
    ] = None,
    no_fallback: Annotated[
        bool, typer.Option("--no-fallback-relay", help="Name no fallback relay any more.")
    ] = False,
) -> None:
    """Propose the next policy, signed by you; colleagues sign it on their devices."""
    unknown = [k for k in official if k not in _KINDS]
    if unknown or not official:
        raise ConfigError("--official is record, deniable or either (repeat it for several)")
    if epoch_hours is not None and not 1 <= epoch_hours <= 168:
        raise ConfigError("--epoch-hours is 1 to 168 (an hour to a week)")
    if unseen_hours is not None and not 1 <= unseen_hours <= 720:
        raise ConfigError("--unseen-hours is 1 to 720 (an hour to thirty days)")
    seconds = None if epoch_hours is None else epoch_hours * 3600
    unseen = None if unseen_hours is None else unseen_hours * 3600
    rule = _witness_rule(witness or [], witnesses_needed, witness_lag_minutes, no_witnesses)
    fallback = _fallback(fallback_url, fallback_key, no_fallback)
    with open_client(ctx) as client:
        made = client.policy_propose(
            [_KINDS[k] for k in official], track2_k, seconds, unseen, rule, fallback
        )
    output(ctx).done(
        _doc(made),
        Text.assemble(("ok", "green"), f" proposed {made.policy.describe()}"),
        Text(
            f"colleagues see it after the next rounds and run "
            f"`backchannel mission policy sign {made.ref}`; in force with {made.needed} "
            "signatures",
            style="dim",
        ),
    )


@app.command()
def sign(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The change's reference (`mission policy show`).")],
) -> None:
    """Sign a proposed change (check it with its author in person first)."""
    with open_client(ctx) as client:
        signed = client.policy_sign(ref)
    state = (
        "in force"
        if signed.adopted
        else f"{len(signed.signed_by)} of {signed.needed} signatures; waiting for colleagues"
    )
    output(ctx).done(
        _doc(signed),
        Text.assemble(("ok", "green"), f" signed {signed.policy.describe()}: {state}"),
    )


def _fallback(url: str | None, key: str | None, none: bool) -> FallbackRelay | None:
    """The fallback relay the options ask for; None keeps the one in force."""
    if none:
        if url or key:
            raise ConfigError("--no-fallback-relay and --fallback-relay exclude each other")
        return NO_FALLBACK
    return fallback_asked(url or "", key or "")


def _witness_rule(
    given: list[str], needed: int | None, lag_minutes: int, none: bool
) -> WitnessRule | None:
    """The witness rule the options ask for; None keeps the one in force."""
    if none:
        if given:
            raise ConfigError("--no-witnesses and --witness exclude each other")
        return NO_WITNESSES
    if not given:
        if needed is not None:
            raise ConfigError("--witnesses-needed needs the witnesses (--witness)")
        return None
    vkeys: list[str] = []
    for item in given:
        path = Path(item)
        if "+" not in item and path.is_file():
            vkeys += path.read_text().splitlines()
        else:
            vkeys.append(item)
    return witness_rule(vkeys, needed, lag_minutes)
