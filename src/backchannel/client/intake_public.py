"""The public's side of a mission's intake: submit a request, read its answer.

What the intake page does in a browser, for scripts and the command line
(``backchannel intake submit CARD``). The submitter needs no home, no key and
no account: the request is sealed to the card's intake key here, a proof of
work is found for the relay, and the reply code is the only thing to keep.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backchannel.errors import DecodeError, IntakeClosed, RelayRefused, RelayUnavailable

__all__ = [
    "Draft",
    "IntakeCard",
    "Kind",
    "RelayRefused",
    "Submitted",
    "check",
    "parse_request_text",
    "read_card",
    "submit",
]
from backchannel.protocol import intake as pi

if TYPE_CHECKING:  # imported where a request is made, not with the CLI
    import httpx

_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Submitted:
    """What the submitter keeps: the code that names (and opens) the answer."""

    reply_code: str

    def __repr__(self) -> str:
        return "Submitted(<reply code>)"


Kind = pi.Kind
IntakeCard = pi.IntakeCard
_HEADERS = ("kind", "subject", "contact")


@dataclass(frozen=True)
class Draft:
    """A request as written in a file: ``Kind:``, ``Subject:``, ``Contact:`` lines, a blank
    line, then the text."""

    kind: pi.Kind
    subject: str
    body: str
    contact: str

    def __repr__(self) -> str:
        return f"Draft({self.kind.label}, <text>)"


def parse_request_text(text: str) -> Draft:
    """A request file: header lines (``Kind:`` required, ``Subject:``, ``Contact:``), a blank
    line, the text. Everything the request says stays off the command line."""
    head, sep, body = text.replace("\r\n", "\n").partition("\n\n")
    if not sep:
        raise DecodeError(
            "a request file starts with header lines (Kind:, Subject:, Contact:), then a blank "
            "line, then the text"
        )
    fields: dict[str, str] = {}
    for line in head.splitlines():
        name, colon, value = line.partition(":")
        key = name.strip().lower()
        if not colon or key not in _HEADERS:
            raise DecodeError(
                "a request file's header lines are Kind:, Subject: and Contact: only; "
                "put the text after a blank line"
            )
        if key in fields:
            raise DecodeError(f"the header {name.strip()}: is given twice")
        fields[key] = value.strip()
    if "kind" not in fields:
        kinds = ", ".join(k.label for k in pi.Kind)
        raise DecodeError(f"the request file needs a Kind: line ({kinds})")
    if not body.strip():
        raise DecodeError("the request has no text after the header lines")
    return Draft(
        pi.Kind.parse(fields["kind"]), fields.get("subject", ""), body.strip("\n"),
        fields.get("contact", ""),
    )  # fmt: skip


def read_card(text: str) -> pi.IntakeCard:
    """A card from its text, a file's content or the intake page's address."""
    return pi.IntakeCard.from_text(text)


def _refusal(answer: httpx.Response) -> RelayRefused:
    try:
        message = str(answer.json().get("error", ""))
    except ValueError:
        message = ""
    return RelayRefused(f"the relay refused ({answer.status_code}): {message or 'no reason given'}")


async def submit(
    card: pi.IntakeCard,
    kind: pi.Kind,
    subject: str,
    body: str,
    contact: str = "",
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Submitted:
    """Seal a request to the card's mission and hand it to the relay."""
    import httpx

    code = pi.new_reply_code(secrets.token_bytes)
    cell = pi.seal_request(card, pi.IntakeRequest(kind, subject, body, contact, code))
    base = f"/v1/intake/{card.tenant_id}"
    try:
        async with _public_client(card, transport) as client:
            pow_answer = await client.get(f"{base}/pow")
            if pow_answer.status_code != 200:
                raise _refusal(pow_answer)
            need = pow_answer.json()
            bits, bucket = int(need["bits"]), int(need["bucket"])
            if not 0 <= bits <= pi.MAX_POW_BITS:
                raise RelayRefused("the relay asks for an impossible proof of work")
            prefix = pi.pow_prefix(card.tenant_id, bucket, cell)
            nonce = await asyncio.to_thread(pi.solve_pow, prefix, bits)
            sent = await client.post(
                f"{base}/requests",
                json={"cell": base64.b64encode(cell).decode(), "bucket": bucket, "nonce": nonce},
            )
            if sent.status_code not in (200, 201):
                raise _refusal(sent)
    except httpx.HTTPError as e:
        raise RelayUnavailable(f"cannot reach the relay at {card.relay_url}: {e}") from None
    return Submitted(pi.format_reply_code(code))


def _public_client(
    card: pi.IntakeCard, transport: httpx.AsyncBaseTransport | None
) -> httpx.AsyncClient:
    """A client to the card's relay that says nothing of the submitter's software
    (no User-Agent: the relay learns only what he writes)."""
    import httpx

    client = httpx.AsyncClient(base_url=card.relay_url, timeout=_TIMEOUT_S, transport=transport)
    del client.headers["User-Agent"]
    return client


async def check(
    card: pi.IntakeCard,
    reply_code: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str | None:
    """The mission's answer, or None while there is none (pending, ignored or blocked).

    Raises :class:`IntakeClosed` while the mission's intake is closed: the relay
    then withholds every answer, one already sent too, until it opens again.
    """
    import httpx

    code = pi.parse_reply_code(reply_code)
    path = f"/v1/intake/{card.tenant_id}/answers/{pi.reply_id(card, code).hex()}"
    try:
        async with _public_client(card, transport) as client:
            answer = await client.get(path)
    except httpx.HTTPError as e:
        raise RelayUnavailable(f"cannot reach the relay at {card.relay_url}: {e}") from None
    if answer.status_code == 404:
        if _error_of(answer) == pi.CLOSED_ERROR:
            raise IntakeClosed(pi.CLOSED_SAID)
        return None
    if answer.status_code != 200:
        raise _refusal(answer)
    try:
        cell = base64.b64decode(answer.json()["cell"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise DecodeError("the relay's answer is malformed") from None
    return pi.open_answer(card, code, cell)


def _error_of(answer: httpx.Response) -> str | None:
    """The relay's ``{"error": ...}`` of an answer, if it has one."""
    try:
        body = answer.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None
