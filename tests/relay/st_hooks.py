"""Schemathesis hooks for the relay (``SCHEMATHESIS_HOOKS=tests.relay.st_hooks``).

One hook: an intake request (``POST /v1/intake/{tenant_id}/requests``) that
schemathesis generated as valid gets a proof of work. The proof binds the
tenant, the current ten-minute bucket and the cell (``docs/spec/intake-v1.md``
§5), which no JSON Schema can state: the document says so in the operation's
description, and the relay refuses a body without a proof that holds (400, as
``docs/spec/relay-api.md`` states). A schema-valid body with no proof is not
"positive data" for this operation, any more than random bytes are a batch;
with the proof computed it is, and ``positive_data_acceptance`` then checks
that every cell, bucket and nonce the schema allows is taken (201 or 200,
else a refusal schemathesis counts as one: 404 for a closed intake, 429).

Only the bucket and the nonce change, to values the schema allows, so the case
stays positive (schemathesis revalidates a case a ``before_call`` hook edits).
Negative cases are left as generated. The relay must use :data:`POW_BITS`.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import schemathesis

from backchannel.protocol import intake as proto
from backchannel.relay.intake import POW_BUCKET_SECONDS
from backchannel.relay.requests import is_tenant_id

#: The relay's default ``intake_pow_bits``: about 16,000 hashes a case.
POW_BITS = 14
SUBMIT = ("POST", "/v1/intake/{tenant_id}/requests")


def prove(case: schemathesis.Case, bits: int = POW_BITS) -> bool:
    """Give a positive intake request a proof of work for the current bucket;
    whether the case was one."""
    if (case.method.upper(), case.operation.path) != SUBMIT:
        return False
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return False
    body = case.body
    tenant_id = (case.path_parameters or {}).get("tenant_id")
    if not isinstance(body, dict) or not isinstance(tenant_id, str) or not is_tenant_id(tenant_id):
        return False
    try:
        cell = base64.b64decode(str(body.get("cell")), validate=True)
    except (binascii.Error, ValueError):
        return False
    bucket = int(time.time()) // POW_BUCKET_SECONDS
    body["bucket"] = bucket
    body["nonce"] = proto.solve_pow(proto.pow_prefix(tenant_id, bucket, cell), bits)
    return True


@schemathesis.hook
def before_call(context: Any, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    prove(case)
