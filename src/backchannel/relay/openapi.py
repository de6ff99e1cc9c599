"""The relay's OpenAPI 3.1 document, written by hand.

Starlette has no generator, so this is a static description kept honest by
tests: ``tests/relay/test_openapi.py`` checks it covers every route, and a
schemathesis run checks the app's answers against it.
"""

from __future__ import annotations

from typing import Any

from backchannel import __version__
from backchannel.relay.settings import RelaySettings

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_SLOT = {"type": "string", "pattern": "^[0-9a-f]{64}$", "minLength": 64, "maxLength": 64}
_TENANT_ID = {"type": "string", "pattern": "^[a-z0-9-]{3,64}$", "minLength": 3, "maxLength": 64}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ERROR_REF)}


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
    return {"name": "tenant_id", "in": "path", "required": True, "schema": _TENANT_ID}


def _slot_param() -> dict[str, Any]:
    return {"name": "slot", "in": "path", "required": True, "schema": _SLOT}


def _slot_list_body(max_batch: int) -> dict[str, Any]:
    return {
        "required": True,
        "content": _json({"$ref": "#/components/schemas/SlotList"}),
    }


def openapi_document(settings: RelaySettings) -> dict[str, Any]:
    """The document for a relay with these settings (cell size, batch limit)."""
    cell = settings.cell_size
    tenant_auth: list[dict[str, list[str]]] = [{"tenantCredential": []}]
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "description": "What to do next"}},
            "additionalProperties": False,
        },
        "TenantRequest": {
            "type": "object",
            "required": ["tenant_id", "credential"],
            "properties": {
                "tenant_id": _TENANT_ID,
                "credential": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_-]{43}=?$",
                    "description": "base64url of 32 random bytes; the relay keeps its SHA-256",
                },
                "quota_cells": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": settings.max_quota_cells,
                },
            },
            "additionalProperties": False,
        },
        "Tenant": {
            "type": "object",
            "required": ["tenant_id", "quota_cells"],
            "properties": {"tenant_id": _TENANT_ID, "quota_cells": {"type": "integer"}},
            "additionalProperties": False,
        },
        "Deposit": {
            "type": "object",
            "required": ["cell_id", "created"],
            "properties": {
                "cell_id": {
                    "type": "string",
                    "pattern": "^[0-9a-f]{64}$",
                    "description": "SHA-256 of the cell",
                },
                "created": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "SlotList": {
            "type": "object",
            "required": ["slots"],
            "properties": {
                "slots": {"type": "array", "items": _SLOT, "maxItems": settings.max_batch}
            },
            "additionalProperties": False,
        },
        "Cells": {
            "type": "object",
            "required": ["cells"],
            "properties": {
                "cells": {
                    "type": "object",
                    "propertyNames": _SLOT,
                    "additionalProperties": {
                        "type": "string",
                        "contentEncoding": "base64",
                        "description": f"standard base64 of the {cell}-byte cell",
                    },
                }
            },
            "additionalProperties": False,
        },
        "Removed": {
            "type": "object",
            "required": ["removed"],
            "properties": {"removed": {"type": "integer", "minimum": 0}},
            "additionalProperties": False,
        },
        "Info": {
            "type": "object",
            "required": ["cell_size", "version", "max_batch"],
            "properties": {
                "cell_size": {"type": "integer", "const": cell},
                "version": {"type": "string"},
                "max_batch": {"type": "integer", "const": settings.max_batch},
            },
            "additionalProperties": False,
        },
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}},
            "additionalProperties": False,
        },
    }
    paths: dict[str, Any] = {
        "/v1/tenants": {
            "post": {
                "operationId": "registerTenant",
                "summary": "Register a tenant (a mission)",
                "security": [{"operatorToken": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": _json({"$ref": "#/components/schemas/TenantRequest"}),
                },
                "responses": {
                    "201": {
                        "description": "Registered",
                        "content": _json({"$ref": "#/components/schemas/Tenant"}),
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
                                "description": f"exactly {cell} bytes",
                            }
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "Stored durably",
                        "content": _json({"$ref": "#/components/schemas/Deposit"}),
                    },
                    "200": {
                        "description": "The identical cell was already stored",
                        "content": _json({"$ref": "#/components/schemas/Deposit"}),
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
                        "content": _json({"$ref": "#/components/schemas/Cells"}),
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
                        "content": _json({"$ref": "#/components/schemas/Removed"}),
                    },
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
                        "content": _json({"$ref": "#/components/schemas/Info"}),
                    },
                    **_errors(429),
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
                        "content": _json({"$ref": "#/components/schemas/Status"}),
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
                        "content": _json({"$ref": "#/components/schemas/Status"}),
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
