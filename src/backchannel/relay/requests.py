"""Parsing and checking what a client sends, before anything reaches the store.

Every refusal is an :class:`HTTPRefusal` carrying the status code and a
one-line message saying what to do. Messages never echo a slot address, a
credential or body bytes back (they could end up in someone's log).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence

from starlette.requests import Request
from starlette.types import Receive

from backchannel.errors import BackchannelError

TENANT_ID_RE = re.compile(r"[a-z0-9-]{3,64}")
SLOT_HEX_RE = re.compile(r"[0-9a-f]{64}")
CREDENTIAL_RE = re.compile(r"[A-Za-z0-9_-]{43}=?")
CREDENTIAL_BYTES = 32


class HTTPRefusal(BackchannelError):
    """A request the relay answers with an error status. Never leaves the app."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def check_slot(text: str) -> bytes:
    if SLOT_HEX_RE.fullmatch(text) is None:
        raise HTTPRefusal(400, "a slot address must be 64 lowercase hexadecimal digits")
    return bytes.fromhex(text)


def is_tenant_id(text: str) -> bool:
    return TENANT_ID_RE.fullmatch(text) is not None


def decode_credential(text: str) -> bytes | None:
    """The 32 credential bytes of a base64url string, or None if it is not one."""
    if CREDENTIAL_RE.fullmatch(text) is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text.rstrip("=") + "=")
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == CREDENTIAL_BYTES else None


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def receive_body(
    receive: Receive,
    content_type: str | None,
    content_length: str | None,
    limit: int,
    media_type: str,
) -> bytes:
    """The whole body from an ASGI ``receive``; 413 as soon as it would exceed ``limit``.

    A declared Content-Length over the limit is refused before any body is read.
    """
    given = (content_type or "").split(";", 1)[0].strip().lower()
    if given != media_type:
        raise HTTPRefusal(415, f"send the request body as {media_type}")
    if content_length is not None:
        if not (content_length.isascii() and content_length.isdigit()):
            raise HTTPRefusal(400, "the Content-Length header is not a number")
        # Compared as digits: int() refuses more than 4,300 of them, and a
        # header of leading zeros may be that long and still small.
        digits = content_length.lstrip("0") or "0"
        if len(digits) > len(str(limit)) or int(digits) > limit:
            raise HTTPRefusal(413, f"request bodies are limited to {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise HTTPRefusal(400, "the client went away before sending the whole body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPRefusal(413, f"request bodies are limited to {limit} bytes")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: Request, limit: int, media_type: str) -> bytes:
    headers = request.headers
    return await receive_body(
        request.receive,
        headers.get("content-type"),
        headers.get("content-length"),
        limit,
        media_type,
    )


async def read_json_object(
    request: Request, limit: int, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, object]:
    body = await read_body(request, limit, "application/json")
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: arrays or objects nested thousands deep.
        raise HTTPRefusal(400, "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise HTTPRefusal(400, "the request body must be a JSON object")
    missing = [k for k in required if k not in value]
    if missing:
        raise HTTPRefusal(400, f"the request body lacks the field {missing[0]!r}")
    allowed = set(required) | set(optional)
    if any(k not in allowed for k in value):
        raise HTTPRefusal(400, f"the request body may only have the fields {sorted(allowed)}")
    return value


def slot_list(body: Mapping[str, object], max_batch: int) -> list[bytes]:
    """The distinct slots of a ``{"slots": [hex, ...]}`` body, in order."""
    slots = body["slots"]
    if not isinstance(slots, list):
        raise HTTPRefusal(400, "'slots' must be a list of slot addresses")
    if len(slots) > max_batch:
        raise HTTPRefusal(400, f"send at most {max_batch} slots per request")
    out: dict[bytes, None] = {}
    for item in slots:
        if not isinstance(item, str):
            raise HTTPRefusal(400, "a slot address must be 64 lowercase hexadecimal digits")
        out[check_slot(item)] = None
    return list(out)
