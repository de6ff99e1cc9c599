"""The public intake's part of the relay's OpenAPI document (``relay/intake.py``)."""

from __future__ import annotations

from typing import Any

from backchannel.protocol import intake as proto
from backchannel.relay import api_types as api
from backchannel.relay.intake import PAGE_FILES
from backchannel.relay.openapi_schemas import SLOT, TENANT_ID, error_answer, json_content, ref

_TENANT = {"name": "tenant_id", "in": "path", "required": True, "schema": TENANT_ID}
_REPLY = {"name": "reply_id", "in": "path", "required": True, "schema": SLOT}
_ANY = {"default": error_answer("Any other error")}


def _answer_404() -> dict[str, Any]:
    """The answer's two 404s, told apart by their bodies (docs/spec/relay-api.md)."""
    answer = error_answer(
        "No answer under this reply code (pending, ignored or blocked look the same); or "
        "the tenant's intake is closed (which withholds the answers already sent too), or "
        "there is no such tenant. The error tells the first from the others."
    )
    answer["content"]["application/json"]["examples"] = {
        "no_answer": {
            "summary": "The intake is open; no answer under this reply code (yet)",
            "value": {"error": proto.NO_ANSWER_ERROR},
        },
        "closed": {
            "summary": "The intake is closed (answers withheld), or no such tenant",
            "value": {"error": proto.CLOSED_ERROR},
        },
    }
    return answer


def intake_paths() -> dict[str, Any]:
    """The intake's paths; its bodies' schemas are generated with the rest
    (a tenant's cell in ``IntakeAnswer`` takes the relay's cell size there)."""
    return {
        "/v1/intake/{tenant_id}/pow": {
            "parameters": [_TENANT],
            "get": {
                "operationId": "intakePow",
                "summary": "What an intake request's proof of work must meet now",
                "security": [{}],
                "responses": {
                    "200": {
                        "description": "Leading zero bits, and the current time bucket",
                        "content": json_content(ref(api.IntakePow)),
                    },
                    "404": error_answer("No such tenant, or its intake is closed"),
                    "429": error_answer("Rate limited; retry after the Retry-After delay"),
                    **_ANY,
                },
            },
        },
        "/v1/intake/{tenant_id}/requests": {
            "parameters": [_TENANT],
            "post": {
                "operationId": "intakeSubmit",
                "summary": "Leave a sealed request with a mission's public intake",
                "description": "No credential: the proof of work is bound to the tenant, "
                "the time bucket and the cell (docs/spec/intake-v1.md §5). No schema can "
                "state it: a body the schema admits is refused (400) unless its nonce gives "
                "the bits GET /v1/intake/{tenant_id}/pow asks for, with its bucket the "
                "current one or the one before.",
                "security": [{}],
                "requestBody": {
                    "required": True,
                    "content": json_content(ref(api.IntakeSubmission)),
                },
                "responses": {
                    "201": {
                        "description": "Stored",
                        "content": json_content(ref(api.IntakeStored)),
                    },
                    "200": {
                        "description": "Already stored",
                        "content": json_content(ref(api.IntakeStored)),
                    },
                    "400": error_answer("Malformed, or the proof of work does not hold"),
                    "404": error_answer("No such tenant, or its intake is closed"),
                    "413": error_answer("Request body too large"),
                    "415": error_answer("Wrong Content-Type"),
                    "429": error_answer("Rate limited; retry after the Retry-After delay"),
                    "503": error_answer("The store is unavailable; retry shortly"),
                    "507": error_answer("The mission's intake is full"),
                    **_ANY,
                },
            },
        },
        "/v1/intake/{tenant_id}/answers/{reply_id}": {
            "parameters": [_TENANT, _REPLY],
            "get": {
                "operationId": "intakeAnswer",
                "summary": "The answer a reply code names, if the mission has sent one",
                "security": [{}],
                "responses": {
                    "200": {
                        "description": "The sealed answer (a cell of the tenant)",
                        "content": json_content(ref(api.IntakeAnswer)),
                    },
                    "400": error_answer("Malformed reply id"),
                    "404": _answer_404(),
                    "429": error_answer("Rate limited; retry after the Retry-After delay"),
                    **_ANY,
                },
            },
        },
        "/v1/tenants/{tenant_id}/intake/fetch": {
            "parameters": [_TENANT],
            "post": {
                "operationId": "intakeFetch",
                "summary": "A mission's round request: intake requests since a number",
                "security": [{"tenantCredential": []}],
                "requestBody": {
                    "required": True,
                    "content": json_content(ref(api.IntakeFetch)),
                },
                "responses": {
                    "200": {
                        "description": "Requests numbered above 'after', oldest first",
                        "content": json_content(ref(api.IntakeRequests)),
                    },
                    "400": error_answer("Malformed"),
                    "401": error_answer("Missing or wrong credential (also for an unknown tenant)"),
                    "404": error_answer("No such tenant"),
                    "413": error_answer("Request body too large"),
                    "415": error_answer("Wrong Content-Type"),
                    "429": error_answer("Rate limited; retry after the Retry-After delay"),
                    "503": error_answer("The store is unavailable; retry shortly"),
                    **_ANY,
                },
            },
        },
        "/intake/": {"get": _page("intakePage", "The intake page (the card goes after '#')")},
        "/intake/{name}": {
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": sorted(PAGE_FILES)},
                }
            ],
            "get": _page("intakePageFile", "A file of the intake page (script, style)"),
        },
    }


def _page(operation: str, summary: str) -> dict[str, Any]:
    return {
        "operationId": operation,
        "summary": summary,
        "security": [{}],
        "responses": {
            "200": {
                "description": "The file",
                "content": {
                    "text/html": {"schema": {"type": "string"}},
                    "text/javascript": {"schema": {"type": "string"}},
                    "text/css": {"schema": {"type": "string"}},
                },
            },
            "404": error_answer("No such file"),
            "429": error_answer("Rate limited; retry after the Retry-After delay"),
            **_ANY,
        },
    }
