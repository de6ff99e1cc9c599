"""The schemas of the relay's OpenAPI document (``components/schemas``), and the
small shapes the paths share with them (slots, hashes, proofs, signed heads).

Split from :mod:`backchannel.relay.openapi`, which assembles the paths.
"""

from __future__ import annotations

from typing import Any

from backchannel.protocol.constants import MAX_OFFICERS
from backchannel.protocol.tenant_credential import MAX_CHAIN
from backchannel.relay.settings import RelaySettings

ERROR_REF = {"$ref": "#/components/schemas/Error"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON body or answer with ``schema``."""
    return {"application/json": {"schema": schema}}


def error_answer(description: str) -> dict[str, Any]:
    """An error answer (the ``Error`` schema) described as ``description``."""
    return {"description": description, "content": json_content(ERROR_REF)}


SLOT = {"type": "string", "pattern": "^[0-9a-f]{64}$", "minLength": 64, "maxLength": 64}
TENANT_ID = {"type": "string", "pattern": "^[a-z0-9-]{3,64}$", "minLength": 3, "maxLength": 64}
HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$", "minLength": 64, "maxLength": 64}
#: Standard base64 with its padding, as the relay decodes it.
_BASE64 = {
    "type": "string",
    "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
    "contentEncoding": "base64",
}
PROOF = {"type": "array", "items": HASH, "maxItems": 64}
U63 = {"type": "integer", "minimum": 0, "maximum": (1 << 63) - 1}
#: A tree size a proof or head can be asked for (the empty tree has none).
SIZE = {**U63, "minimum": 1}
SIGNED_HEAD = {
    "type": "string",
    "pattern": "^[0-9a-f]+$",
    "minLength": 2 * 3422,
    "maxLength": 2 * 3422,
    "description": "full signed head: hex of TreeHead (49 bytes) || Ed25519 (64) || "
    "ML-DSA-65 (3309) signature",
}
COMPACT_HEAD = {
    "type": "string",
    "pattern": "^[0-9a-f]{226}$",
    "minLength": 226,
    "maxLength": 226,
    "description": "compact signed head: hex of TreeHead (49 bytes) || Ed25519 (64); "
    "the first 113 bytes of the full signed head of the same size",
}
CELL_LOG_PROPS: dict[str, Any] = {
    "leaf_index": {**U63, "description": "the batch's leaf in the log"},
    "batch_position": {"type": "integer", "minimum": 0},
    "batch_size": {"type": "integer", "minimum": 1},
    "batch_proof": {**PROOF, "description": "cell entry -> batch root (RFC 9162 path)"},
    "inclusion_proof": {**PROOF, "description": "leaf -> the signed head's root"},
}


def component_schemas(settings: RelaySettings) -> dict[str, Any]:
    """The named schemas for a relay with these settings (cell size, limits)."""
    cell = settings.cell_size
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
                "tenant_id": TENANT_ID,
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
            "properties": {"tenant_id": TENANT_ID, "quota_cells": {"type": "integer"}},
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
                "log": {"$ref": "#/components/schemas/DepositLog"},
            },
            "additionalProperties": False,
        },
        "DepositLog": {
            "type": "object",
            "description": (
                "Where the cell sits in the relay log, with proofs against signed_head. "
                "Absent only for cells stored before the relay kept a log."
            ),
            "required": [*CELL_LOG_PROPS, "signed_head"],
            "properties": {**CELL_LOG_PROPS, "signed_head": COMPACT_HEAD},
            "additionalProperties": False,
        },
        "CellLog": {
            "type": "object",
            "required": list(CELL_LOG_PROPS),
            "properties": CELL_LOG_PROPS,
            "additionalProperties": False,
        },
        "LogKey": {
            "type": "object",
            "required": [
                "ed25519",
                "mldsa65",
                "fingerprint",
                "checkpoint_vkey",
                "checkpoint_binding",
            ],
            "properties": {
                "ed25519": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "mldsa65": {"type": "string", "pattern": "^[0-9a-f]{3904}$"},
                "fingerprint": {**HASH, "description": "SHA-256(ed25519 || mldsa65)"},
                "checkpoint_vkey": {
                    "type": "string",
                    "pattern": "^[!-*,-~]{1,255}\\+[0-9a-f]{8}\\+[A-Za-z0-9+/]{44}$",
                    "description": "the verifier key (c2sp.org/signed-note) of the log's"
                    " checkpoints: name (the origin) + key ID + base64(0x01 || Ed25519 key)",
                },
                "checkpoint_binding": {
                    "type": "string",
                    "pattern": "^[0-9a-f]{128}$",
                    "description": "Ed25519 signature of the log key over"
                    " 'backchannel/v1/sig/checkpoint-key' || checkpoint public key || origin",
                },
            },
            "additionalProperties": False,
        },
        "LogHead": {
            "type": "object",
            "required": ["size", "root", "timestamp", "signed_head", "compact_head"],
            "properties": {
                "size": U63,
                "root": HASH,
                "timestamp": {"type": "integer", "minimum": 0},
                "signed_head": SIGNED_HEAD,
                "compact_head": COMPACT_HEAD,
            },
            "additionalProperties": False,
        },
        "LogHeadAt": {
            "type": "object",
            "required": ["size", "root", "timestamp", "compact_head"],
            "properties": {
                "size": U63,
                "root": HASH,
                "timestamp": {"type": "integer", "minimum": 0},
                "compact_head": COMPACT_HEAD,
            },
            "additionalProperties": False,
        },
        "EntryProof": {
            "type": "object",
            "required": [
                "leaf_index",
                "batch_position",
                "tree_size",
                "leaf",
                "batch_proof",
                "inclusion_proof",
            ],
            "properties": {
                "leaf_index": U63,
                "batch_position": U63,
                "tree_size": U63,
                "leaf": {"type": "string", "pattern": "^[0-9a-f]{106}$"},
                "batch_proof": PROOF,
                "inclusion_proof": PROOF,
            },
            "additionalProperties": False,
        },
        "LogLeaf": {
            "type": "object",
            "required": ["leaf_index", "leaf"],
            "properties": {
                "leaf_index": U63,
                "leaf": {
                    "type": "string",
                    "pattern": "^[0-9a-f]{106}$",
                    "description": "version u8 | batch_index u64 | batch_size u32 | "
                    "batch_root [32] | coarse_time u64",
                },
            },
            "additionalProperties": False,
        },
        "InclusionProof": {
            "type": "object",
            "required": ["leaf_index", "tree_size", "proof"],
            "properties": {"leaf_index": U63, "tree_size": U63, "proof": PROOF},
            "additionalProperties": False,
        },
        "ConsistencyProof": {
            "type": "object",
            "required": ["first", "second", "proof"],
            "properties": {"first": U63, "second": U63, "proof": PROOF},
            "additionalProperties": False,
        },
        "SlotList": {
            "type": "object",
            "required": ["slots"],
            "properties": {
                "slots": {"type": "array", "items": SLOT, "maxItems": settings.max_batch}
            },
            "additionalProperties": False,
        },
        "Cells": {
            "type": "object",
            "required": ["cells", "log"],
            "properties": {
                "log": {
                    "type": "object",
                    "required": ["signed_head", "cells"],
                    "description": "each returned cell's place in the log, against signed_head",
                    "properties": {
                        "signed_head": COMPACT_HEAD,
                        "cells": {
                            "type": "object",
                            "propertyNames": SLOT,
                            "additionalProperties": {"$ref": "#/components/schemas/CellLog"},
                        },
                        "spent": {
                            "type": "array",
                            "items": SLOT,
                            "description": "asked slots whose cells the tenant acknowledged: "
                            "no cell, not empty, closed to any other cell until retention",
                        },
                        "absent": {
                            "type": "string",
                            "pattern": "^([0-9a-f]{2})+$",
                            "description": "present when a slot asked for held no cell: the "
                            "relay's signed statement of absence (docs/spec/relay-log-v1.md "
                            "§3.2) of those slots, at signed_head",
                        },
                    },
                    "additionalProperties": False,
                },
                "cells": {
                    "type": "object",
                    "propertyNames": SLOT,
                    "additionalProperties": {
                        "type": "string",
                        "contentEncoding": "base64",
                        "description": f"standard base64 of the {cell}-byte cell",
                    },
                },
            },
            "additionalProperties": False,
        },
        "Rotation": {
            "type": "object",
            "required": ["chain", "seq", "credential_hash", "signatures"],
            "description": "docs/spec/relay-api.md, 'Credential rotation'",
            "properties": {
                "chain": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_CHAIN,
                    "items": _BASE64,
                    "description": "the mission's signed rosters from its genesis, base64 "
                    "(one that does not decode authorizes nothing: 403)",
                },
                "seq": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                "credential_hash": {
                    "type": "string",
                    "pattern": "^[0-9a-fA-F]{64}$",
                    "description": "SHA-256 of the new credential's 32 bytes, hex",
                },
                "signatures": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_OFFICERS,
                    "items": {
                        "type": "array",
                        "prefixItems": [
                            {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
                            _BASE64,
                        ],
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    "description": "[officer id hex, hybrid signature base64] of k officers; "
                    "one that does not verify (of the wrong length included) counts for nothing",
                },
            },
            "additionalProperties": False,
        },
        "Rotated": {
            "type": "object",
            "required": ["rotated", "roster_version", "seq"],
            "properties": {
                "rotated": {
                    "type": "boolean",
                    "description": "false: this very rotation was already in force",
                },
                "roster_version": {"type": "integer", "minimum": 0},
                "seq": {"type": "integer", "minimum": 0},
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
    return schemas
