"""``backchannel intake``: a mission's public intake, from both sides.

``submit`` and ``check`` need no officer home: anyone holding a mission's
intake card may write to it. What the request says (its kind, subject,
contact and text) comes from a file or stdin, never from the command line,
and the reply code is read from a prompt or stdin.

The other commands are an officer's: publish the card, open or close the
intake, and triage what arrives (``list``, ``show``, ``assign``, ``tag``,
``note``, ``answer``, ``approve``, ``ignore``, ``block``). Each is signed into
the audit log and reaches every colleague's desk on the round schedule; an
answer goes out once k officers approved it (``docs/intake.md``).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import click
import typer

from backchannel.cli.context import open_client, read_file, read_secret_input, run, write_file
from backchannel.cli.messages import message_text
from backchannel.cli.output import Text, output, short
from backchannel.client import intake_public as public
from backchannel.client.api import INTAKE_STATES
from backchannel.client.intake import IntakeItem
from backchannel.errors import ConfigError, IntakeClosed

app = typer.Typer(
    help="A mission's public intake: submit a request, check for its answer.",
    no_args_is_help=True,
)

CardArg = Annotated[
    str,
    typer.Argument(
        help="The intake card: a file holding it, its text, or the intake page's address."
    ),
]

_TEMPLATE = "Kind: interview\nSubject: \nContact: \n\n"


def load_card(card: str) -> public.IntakeCard:
    path = Path(card)
    text = card
    if not card.startswith(("BACKCHANNEL-INTAKE-1:", "http://", "https://")) and path.exists():
        text = read_file(path, "an intake card")
    return public.read_card(text)


def _request_text(file: Path | None) -> str:
    if file is not None:
        return read_file(file, "a request file")
    if not sys.stdin.isatty():
        return sys.stdin.read()
    edited = click.edit(_TEMPLATE, extension=".txt", require_save=True)
    if not edited:
        raise ConfigError("no request: give --file PATH, pipe it on stdin, or set $EDITOR")
    return edited


@app.command()
def submit(
    ctx: typer.Context,
    card: CardArg,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="The request: 'Kind:', 'Subject:' and 'Contact:' lines, a blank line, the "
            "text (else stdin, else $EDITOR). Kinds: interview, media-tour, meeting, other.",
        ),
    ] = None,
) -> None:
    """Seal a request to the mission on this machine and send it; print the reply code."""
    intake_card = load_card(card)
    draft = public.parse_request_text(_request_text(file))
    sent = run(public.submit(intake_card, draft.kind, draft.subject, draft.body, draft.contact))
    output(ctx).done(
        {
            "mission": intake_card.mission_name,
            "kind": draft.kind.label,
            "reply_code": sent.reply_code,
        },
        Text.assemble(("ok", "green"), " sealed and sent to ", (intake_card.mission_name, "bold")),
        Text("keep this reply code; it is the only way to read an answer:"),
        Text(sent.reply_code, style="bold"),
    )


@app.command()
def check(ctx: typer.Context, card: CardArg) -> None:
    """Look for the mission's answer (the reply code is asked for, or read from stdin)."""
    intake_card = load_card(card)
    code = read_secret_input("Reply code", hide=True).strip()
    try:
        answer = run(public.check(intake_card, code))
    except IntakeClosed as exc:  # closed: answers already sent are withheld too
        output(ctx).done({"answered": False, "closed": True}, Text(str(exc)))
        return
    if answer is None:
        output(ctx).done({"answered": False}, Text("there is no answer under this reply code"))
        return
    output(ctx).done({"answered": True, "answer": answer}, Text(answer))


# --- the officers' side ------------------------------------------------------------

RequestArg = Annotated[
    str, typer.Argument(help="The request: its number (as `intake list` shows) or id prefix.")
]
AnswerArg = Annotated[
    str,
    typer.Argument(
        help="The proposed answer: its id (or the start of it) as `intake show` lists it; "
        "the approval counts for that text only."
    ),
]
TextOption = Annotated[
    str | None,
    typer.Option(
        "--text",
        help="The text, or - for stdin. Prefer --file, stdin or $EDITOR: a command line "
        "is visible to other users of the machine.",
    ),
]
FileOption = Annotated[Path | None, typer.Option("--file", help="Read the text from this file.")]


def _item_doc(i: IntakeItem) -> dict[str, object]:
    return {
        "number": i.number,
        "id": i.request_id.hex(),
        "kind": i.kind,
        "state": i.state,
        "subject": i.subject,
        "contact": i.contact,
        "text": i.body,
        "assigned_to": i.assigned_to,
        "tags": list(i.tags),
        "notes": [{"officer": o, "note": n} for o, n in i.notes],
        "answer": i.answer,
        "approvals": list(i.approvals),
        "approvals_needed": i.needed,
        "answer_sent": i.sent,
        "duplicate_of": i.duplicate_of,
        "proposals": [
            {"id": p.answer_id.hex(), "text": p.text, "approvals": list(p.approvals)}
            for p in i.proposals
        ],
    }


@app.command()
def card(
    ctx: typer.Context,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the card to this file.")
    ] = None,
    qr: Annotated[
        Path | None,
        typer.Option("--qr", help="Write a QR code of the intake page's address (.svg or .png)."),
    ] = None,
) -> None:
    """The mission's intake card: its text, its fingerprint and the intake page's address."""
    import segno

    with open_client(ctx) as client:
        intake_card = client.intake_card()
        is_open = client.intake_is_open()
    text = intake_card.to_text()
    if out_file is not None:
        write_file(out_file, text + "\n")
    if qr is not None:
        try:
            segno.make(intake_card.page_url(), error="l").save(str(qr), scale=4)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot write the QR code to {qr}: {exc}") from None
    lines = [
        Text.assemble("intake card of ", (intake_card.mission_name, "bold"),
                      "" if is_open else " (the intake is closed: `backchannel intake open`)"),
        Text(f"fingerprint {intake_card.fingerprint()}"),
        Text(f"page {intake_card.page_url()}"),
    ]  # fmt: skip
    if out_file is None:
        lines.append(Text(text))
    output(ctx).done(
        {"card": text, "fingerprint": intake_card.fingerprint(), "page": intake_card.page_url(),
         "open": is_open},
        *lines,
    )  # fmt: skip


def _set_open(ctx: typer.Context, is_open: bool) -> None:
    with open_client(ctx) as client:
        client.intake_set_open(is_open)
    word = "opened" if is_open else "closed"
    output(ctx).done(
        {"open": is_open},
        Text.assemble(("ok", "green"), f" intake {word}; the next round tells the relay"),
    )


@app.command("open")
def open_(ctx: typer.Context) -> None:
    """Open the mission's intake (the relay takes requests from the next round)."""
    _set_open(ctx, True)


@app.command()
def close(ctx: typer.Context) -> None:
    """Close the mission's intake (the relay refuses requests from the next round)."""
    _set_open(ctx, False)


#: The states a request can be in, as ``intake list --state`` names them.
State = StrEnum("State", [(s.upper(), s) for s in INTAKE_STATES])  # type: ignore[misc]


@app.command("list")
def list_(
    ctx: typer.Context,
    state: Annotated[
        list[State] | None,
        typer.Option(
            "--state",
            help="Only the requests in this state; give it again for several "
            "(--state new --state assigned: those still to triage).",
        ),
    ] = None,
) -> None:
    """Every request on this device (or those in the states named), with its triage."""
    with open_client(ctx) as client:
        items = client.intake_items()
    if state:
        wanted = {s.value for s in state}
        items = [i for i in items if i.state in wanted]
    lines = [
        Text(f"#{i.number} {short(i.request_id)} {i.state:<9} {i.kind:<10} {i.subject}"
             + (f"  [{', '.join(i.tags)}]" if i.tags else "")
             + (f"  -> {i.assigned_to}" if i.assigned_to else "")
             + (f"  (same reply code as #{i.duplicate_of})" if i.duplicate_of else ""))
        for i in items
    ]  # fmt: skip
    output(ctx).done(
        {"requests": [_item_doc(i) for i in items]},
        *(lines or [Text("no requests in those states" if state else "no requests yet")]),
    )


@app.command()
def show(ctx: typer.Context, request: RequestArg) -> None:
    """One request in full: its text, notes and the answer awaiting approval."""
    with open_client(ctx) as client:
        item = client.intake_item(request)
    lines = [
        Text(f"#{item.number} {item.kind}, {item.state}: {item.subject}", style="bold"),
        Text(item.body),
        Text(f"contact: {item.contact or '(none given)'}"),
    ]
    lines += [Text(f"note by {o}: {n}") for o, n in item.notes]
    if item.duplicate_of is not None:
        lines.append(
            Text(f"duplicate of #{item.duplicate_of}: the same reply code, which holds one "
                 f"answer; answer #{item.duplicate_of} instead", style="yellow")
        )  # fmt: skip
    if item.state != "answered":
        for p in item.proposals:
            lines.append(
                Text(f"proposed answer {p.answer_id.hex()[:8]} ({len(p.approvals)} of "
                     f"{item.needed} approvals: {', '.join(p.approvals) or 'none'}):")
            )  # fmt: skip
            lines.append(Text(p.text))
    elif item.answer is not None:
        lines.append(
            Text(f"answer ({len(item.approvals)} of {item.needed} approvals: "
                 f"{', '.join(item.approvals)}){' sent' if item.sent else ''}:")
        )  # fmt: skip
        lines.append(Text(item.answer))
    output(ctx).done(_item_doc(item), *lines)


def _done(ctx: typer.Context, what: str, doc: dict[str, object]) -> None:
    output(ctx).done(
        {"ok": True, **doc},
        Text.assemble(("ok", "green"), f" {what}; your colleagues see it after the next rounds"),
    )


@app.command()
def assign(ctx: typer.Context, request: RequestArg, officer: str) -> None:
    """Assign a request to an officer of the mission."""
    with open_client(ctx) as client:
        client.intake_assign(request, officer)
    _done(ctx, f"assigned to {officer}", {"assigned_to": officer})


@app.command()
def tag(ctx: typer.Context, request: RequestArg, label: str) -> None:
    """Tag a request (a short label, seen by every officer)."""
    with open_client(ctx) as client:
        client.intake_tag(request, label)
    _done(ctx, "tagged", {"tag": label})


@app.command()
def note(
    ctx: typer.Context, request: RequestArg, text: TextOption = None, file: FileOption = None
) -> None:
    """Add a note for the other officers (signed into the audit log)."""
    body = message_text(text, file)
    with open_client(ctx) as client:
        client.intake_note(request, body)
    _done(ctx, "noted", {})


@app.command()
def answer(
    ctx: typer.Context, request: RequestArg, text: TextOption = None, file: FileOption = None
) -> None:
    """Propose an answer; it goes out once k officers approved it."""
    body = message_text(text, file)
    with open_client(ctx) as client:
        client.intake_answer(request, body)
    _done(ctx, "answer proposed (and approved by you)", {})


@app.command()
def approve(ctx: typer.Context, request: RequestArg, answer: AnswerArg) -> None:
    """Approve the answer a colleague proposed, named by the id `intake show` gives it."""
    with open_client(ctx) as client:
        client.intake_approve(request, answer)
    _done(ctx, "answer approved", {})


@app.command()
def ignore(ctx: typer.Context, request: RequestArg) -> None:
    """Ignore a request: nothing is sent, and the submitter learns nothing."""
    with open_client(ctx) as client:
        client.intake_ignore(request)
    _done(ctx, "ignored", {})


@app.command()
def block(ctx: typer.Context, request: RequestArg) -> None:
    """Block a request, and file later ones from the same contact as blocked."""
    with open_client(ctx) as client:
        client.intake_block(request)
    _done(ctx, "blocked", {})
