"""The relay's OpenAPI 3.1 document.

Every JSON body's schema is generated from the type the relay builds or reads
it as (:mod:`.api_types`, by pydantic, in :mod:`.openapi_schemas`); this
module names, for each route, its operation, parameters, the types of its
bodies and its answers. Kept honest by tests: ``tests/relay/test_api.py``
checks it covers every route, and schemathesis checks the app against it
(``tests/relay/test_schemathesis.py``; at length, ``make schemathesis``).
"""

from __future__ import annotations

from typing import Any

from backchannel import __version__
from backchannel.protocol.batch import DepositBatch, FetchBatch
from backchannel.relay import api_types as api
from backchannel.relay.openapi_intake import intake_paths
from backchannel.relay.openapi_schemas import (
    SIZE,
    SLOT,
    TENANT_ID,
    U63,
    component_schemas,
    error_answer,
    json_content,
    ref,
)
from backchannel.relay.settings import RelaySettings

_json = json_content
_error = error_answer


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "The request is malformed; the message says what to fix",
        401: "Missing or wrong credential (also for an unknown tenant)",
        403: "Registration is closed on this relay",
        404: "No such tenant, slot or endpoint",
        405: "Method not allowed",
        409: "Conflict",
        413: "Request body too large",
        415: "Wrong Content-Type",
        429: "Rate limited; retry after the Retry-After delay",
        503: "The store is unavailable; retry shortly",
        507: "The tenant's quota is full",
    }
    out = {str(c): _error(text[c]) for c in codes}
    out["default"] = _error("Any other error")
    return out


def _tenant_param() -> dict[str, Any]:
    return {"name": "tenant_id", "in": "path", "required": True, "schema": TENANT_ID}


def _slot_param() -> dict[str, Any]:
    return {"name": "slot", "in": "path", "required": True, "schema": SLOT}


def _slot_list_body(max_batch: int) -> dict[str, Any]:
    return {
        "required": True,
        "content": _json(ref(api.SlotList)),
    }


def _binary_body(layout: str, example: bytes) -> dict[str, Any]:
    # A length-prefixed binary layout is beyond JSON Schema: the schema admits any
    # bytes, the layout is stated in prose (and in docs/spec/relay-api.md), and the
    # example is a valid body (bytes below 0x80, so the JSON string is the body).
    assert max(example) < 0x80
    return {
        "required": True,
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "description": layout},
                "example": example.decode("ascii"),
            }
        },
    }


def _binary_answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"Cache-Control": {"schema": {"type": "string", "const": "no-store"}}},
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }


def openapi_document(settings: RelaySettings) -> dict[str, Any]:
    """The document for a relay with these settings (cell size, batch limit)."""
    cell = settings.cell_size
    tenant_auth: list[dict[str, list[str]]] = [{"tenantCredential": []}]
    schemas = component_schemas(settings)
    paths: dict[str, Any] = {
        "/v1/tenants": {
            "post": {
                "operationId": "registerTenant",
                "summary": "Register a tenant (a mission)",
                "security": [{"operatorToken": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": _json(ref(api.TenantRequest)),
                },
                "responses": {
                    "201": {
                        "description": "Registered",
                        "content": _json(ref(api.Tenant)),
                    },
                    **_errors(400, 401, 403, 409, 413, 415, 429, 503),
                },
            }
        },
        "/v1/tenants/{tenant_id}/slots/{slot}": {
            "parameters": [_tenant_param(), _slot_param()],
            "put": {
                "operationId": "deposit",
                "summary": f"Deposit one {cell}-byte cell; no authentication",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {
                                "type": "string",
                                "format": "binary",
                                "minLength": cell,
                                "maxLength": cell,
                                "description": f"exactly {cell} bytes",
                            }
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "Stored durably",
                        "content": _json(ref(api.Deposit)),
                    },
                    "200": {
                        "description": "The identical cell was already stored",
                        "content": _json(ref(api.Deposit)),
                    },
                    **_errors(400, 404, 409, 413, 415, 429, 503, 507),
                },
            },
            "get": {
                "operationId": "getCell",
                "summary": "Read the cell at one slot",
                "security": tenant_auth,
                "responses": {
                    "200": {
                        "description": "The cell",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    **_errors(400, 401, 404, 429, 503),
                },
            },
        },
        "/v1/tenants/{tenant_id}/fetch": {
            "parameters": [_tenant_param()],
            "post": {
                "operationId": "fetch",
                "summary": f"Read up to {settings.max_batch} slots at once",
                "security": tenant_auth,
                "requestBody": _slot_list_body(settings.max_batch),
                "responses": {
                    "200": {
                        "description": "Cells present at those slots",
                        "content": _json(ref(api.Cells)),
                    },
                    **_errors(400, 401, 413, 415, 429, 503),
                },
            },
        },
        "/v1/tenants/{tenant_id}/ack": {
            "parameters": [_tenant_param()],
            "post": {
                "operationId": "ack",
                "summary": "Delete cells the tenant has read",
                "security": tenant_auth,
                "requestBody": _slot_list_body(settings.max_batch),
                "responses": {
                    "200": {
                        "description": "How many cells were removed",
                        "content": _json(ref(api.Removed)),
                    },
                    **_errors(400, 401, 413, 415, 429, 503),
                },
            },
        },
        "/v1/tenants/{tenant_id}/credential": {
            "parameters": [_tenant_param()],
            "post": {
                "operationId": "rotateCredential",
                "summary": "Move the tenant to a new credential, signed by k of its officers",
                "description": "No bearer: the signatures of k officers of the mission's "
                "roster authorize it, checked against the roster chain from the genesis "
                "the tenant is named after. Only a rotation after the one in force "
                "(roster version, then seq) replaces it.",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": _json(ref(api.Rotation)),
                },
                "responses": {
                    "200": {
                        "description": "The rotation is in force",
                        "content": _json(ref(api.Rotated)),
                    },
                    **_errors(400, 404, 413, 415, 429, 503),
                    "403": _error("The chain or the signatures do not authorize it"),
                    "409": _error("A later rotation, or one under another roster, is in force"),
                },
            },
        },
        "/v1/batch/deposit": {
            "post": {
                "operationId": "batchDeposit",
                "summary": f"Deposit up to {settings.max_batch} cells to any tenants in one "
                "request; no authentication",
                "description": "Binary layouts: docs/spec/relay-api.md, 'Batch exchange'. "
                "Each cell is answered on its own (201, 200, 400, 404, 409, 429, 503, 507); "
                "the answer proves every stored cell against one signed head. Version 2 "
                "asks for the compact answer (each of its proofs' hashes once); version 3 "
                "for the shared answer (each batch's proof once, no cell ids).",
                "security": [],
                "requestBody": _binary_body(
                    "version u8 | known_size u64 | count u16 | count x (tenant_len u8 | "
                    "tenant | slot [32] | cell_len u32 | cell)",
                    DepositBatch(0, ()).encode(),
                ),
                "responses": {
                    "200": _binary_answer(
                        "The batch deposit answer: one result per cell, then the log bundle"
                    ),
                    **_errors(400, 413, 415, 429, 503),
                },
            }
        },
        "/v1/tenants/{tenant_id}/batch/fetch": {
            "parameters": [_tenant_param()],
            "post": {
                "operationId": "batchFetch",
                "summary": f"Read up to {settings.max_batch} slots and ask log queries in one "
                "request",
                "description": "Binary layouts: docs/spec/relay-api.md, 'Batch exchange'. "
                "Cells, spent slots and the statement of absence come from one snapshot, "
                "proved against one signed head; each query is answered in order. Version 2 "
                "also asks for the tenant's public intake requests (the answer carries them); "
                "version 3 asks for the compact answer (slot statuses instead of slots, the "
                "statement of absence without what the client knows), the intake ask "
                "optional; version 4, the compact answer with each batch's proof once.",
                "security": tenant_auth,
                "requestBody": _binary_body(
                    "version u8 | known_size u64 | pad_to u32 | nslots u16 | slots [32] | "
                    "nqueries u8 | queries [33] [| 0x49 | after u64 | limit u16 | open u8]",
                    FetchBatch(0, 0, ()).encode(),
                ),
                "responses": {
                    "200": _binary_answer(
                        "The batch fetch answer, zero-padded to a multiple of pad_to bytes"
                    ),
                    **_errors(400, 401, 413, 415, 429, 503),
                },
            },
        },
        "/v1/info": {
            "get": {
                "operationId": "info",
                "summary": "Cell size, version and batch limit",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Relay parameters",
                        "content": _json(ref(api.Info)),
                    },
                    **_errors(429),
                },
            }
        },
        "/v1/log/key": {
            "get": {
                "operationId": "logKey",
                "summary": "The relay's public signing keys (hex) and their fingerprint",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Ed25519 and ML-DSA-65 public keys",
                        "content": _json(ref(api.LogKey)),
                    },
                    **_errors(429),
                },
            }
        },
        "/v1/log/checkpoint": {
            "get": {
                "operationId": "logCheckpoint",
                "summary": "The latest checkpoint (c2sp.org/tlog-checkpoint) with its cosignatures",
                "description": "A signed note: origin, size and base64 root, a blank line, the"
                " log's signature (type 0x01) and every witness cosignature (types 0x04 and"
                " 0x06) that verified. With witnesses configured, the latest checkpoint a"
                " witness cosigned (503 until one has); without, the latest head.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The signed note",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(429, 503),
                },
            }
        },
        "/v1/log/head": {
            "get": {
                "operationId": "logHead",
                "summary": "The latest signed tree head, or with size the head of that size",
                "security": [],
                "parameters": [
                    {
                        "name": "size",
                        "in": "query",
                        "required": False,
                        "schema": SIZE,
                        "description": "the committed head of this size (compact form only);"
                        " 404 while the log is smaller",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The head and its signed encoding",
                        "content": _json(
                            {
                                "oneOf": [
                                    ref(api.LogHead),
                                    ref(api.LogHeadAt),
                                ]
                            }
                        ),
                    },
                    **_errors(400, 404, 429, 503),
                },
            }
        },
        "/v1/log/leaves/{index}": {
            "parameters": [{"name": "index", "in": "path", "required": True, "schema": U63}],
            "get": {
                "operationId": "logLeaf",
                "summary": "The bytes of one log leaf (one committed batch)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The leaf",
                        "content": _json(ref(api.LogLeaf)),
                    },
                    **_errors(400, 404, 429, 503),
                },
            },
        },
        "/v1/log/proof/inclusion": {
            "get": {
                "operationId": "logInclusionProof",
                "summary": "RFC 9162 inclusion proof of a leaf in the tree of tree_size leaves",
                "security": [],
                "parameters": [
                    {"name": "leaf_index", "in": "query", "required": True, "schema": U63},
                    {"name": "tree_size", "in": "query", "required": True, "schema": SIZE},
                ],
                "responses": {
                    "200": {
                        "description": "The proof, leaf upwards",
                        "content": _json(ref(api.InclusionProof)),
                    },
                    **_errors(400, 404, 429, 503),
                },
            }
        },
        "/v1/log/proof/consistency": {
            "get": {
                "operationId": "logConsistencyProof",
                "summary": "RFC 9162 consistency proof between two tree sizes",
                "security": [],
                "parameters": [
                    {"name": "first", "in": "query", "required": True, "schema": SIZE},
                    {"name": "second", "in": "query", "required": True, "schema": SIZE},
                ],
                "responses": {
                    "200": {
                        "description": "The proof",
                        "content": _json(ref(api.ConsistencyProof)),
                    },
                    **_errors(400, 404, 429, 503),
                },
            }
        },
        "/v1/log/proof/entry": {
            "get": {
                "operationId": "logEntryProof",
                "summary": "A batch member's proofs: its batch's leaf, batch proof and inclusion",
                "security": [],
                "parameters": [
                    {"name": "leaf_index", "in": "query", "required": True, "schema": U63},
                    {"name": "batch_position", "in": "query", "required": True, "schema": U63},
                    {"name": "tree_size", "in": "query", "required": True, "schema": SIZE},
                ],
                "responses": {
                    "200": {
                        "description": "The leaf and both proofs",
                        "content": _json(ref(api.EntryProof)),
                    },
                    **_errors(400, 404, 429, 503),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "The process is alive",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Alive",
                        "content": _json(ref(api.Status)),
                    },
                    **_errors(429),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "The store is reachable",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Ready",
                        "content": _json(ref(api.Status)),
                    },
                    **_errors(429, 503),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (no tenant ids, slots or cell data)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(429),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})},
                    **_errors(429),
                },
            }
        },
    }
    paths.update(intake_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Backchannel relay",
            "version": __version__,
            "description": (
                "A multi-tenant mailbox of fixed-size ciphertext cells. Deposits carry no "
                "identity: the slot address is the capability. Fetching needs the tenant's "
                'credential. Every error body is {"error": "<what to do next>"}.'
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "operatorToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The relay operator's token",
                },
                "tenantCredential": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The tenant's credential (base64url)",
                },
            },
        },
    }
