"""Property tests of the relay against its own OpenAPI document (schemathesis).

The short form of ``make schemathesis`` (``tests/relay/st_campaign.py``), with
the same configuration: an in-process app over the memory store, one
registered tenant whose credential goes with every request (the operator's
token with registrations), so the authenticated operations are reached with
a valid credential as well as probed without one, and every check
schemathesis has, on every operation, in its examples, coverage and fuzzing
phases. Every request, valid or not, must get an answer that is not a 5xx,
with a documented status, media type, headers and body; a request the
document calls valid must be taken, one it calls invalid refused.

What is left out, and why:

- ``positive_data_acceptance`` on the two batch operations' generated bodies:
  their length-prefixed layout is beyond JSON Schema (``docs/spec/relay-api.md``),
  so the document admits any bytes and random bytes are not a batch. Their
  documented examples (valid bodies) get every check; the decoders are fuzzed
  with random bytes by ``make fuzz``.
- ``max_response_time``: a limit on time, not on agreement with the document,
  and it takes a limit of ours to mean anything.
- The stateful phase: the document declares no links between operations, so
  it has no sequence to follow (``use_after_free`` and
  ``ensure_resource_availability`` run, and find nothing to judge).

``object_level_authorization`` runs too, but judges only with several
identities configured; with one tenant it has none to compare (one tenant's
credential on another's paths: ``test_api.py::test_tenant_isolation``).
``ignored_auth`` does judge: each authenticated operation is asked again
without the credential and with a wrong one, and must answer 401.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckFunction
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.meta import TestPhase
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore

from . import st_hooks  # the proof of work of valid intake requests (a global hook)
from .st_campaign import BATCH, TENANT, config_toml

OPERATOR = "schemathesis-operator"
CREDENTIAL = secrets.token_urlsafe(32)

_settings = RelaySettings(
    data_dir=Path("/nonexistent"),
    operator_token=OPERATOR,
    # No rate limit: every generated request is judged on its content (a 429
    # would pass every check and test nothing).
    ip_rate=0,
    tenant_rate=0,
    intake_ip_rate=0,
    intake_tenant_rate=0,
    intake_rate=0,
    intake_pow_bits=st_hooks.POW_BITS,
    expire_interval_seconds=3600,
)
app = create_app(_settings, MemoryRelayStore())
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", app, config=SchemathesisConfig.from_str(config_toml(CREDENTIAL, OPERATOR))
)


@pytest.fixture(scope="module", autouse=True)
def _tenant() -> None:
    """The tenant every case names, with its intake open (so that a valid intake
    request is stored, not refused as sent to a closed intake)."""
    with asgi.get_client(app) as http:
        r = http.post(
            "/v1/tenants",
            json={"tenant_id": TENANT, "credential": CREDENTIAL},
            headers={"Authorization": f"Bearer {OPERATOR}"},
        )
        assert r.status_code == 201, r.text
        r = http.post(
            f"/v1/tenants/{TENANT}/intake/fetch",
            json={"after": 0, "open": True},
            headers={"Authorization": f"Bearer {CREDENTIAL}"},
        )
        assert r.status_code == 200, r.text


def _left_out(case: schemathesis.Case) -> list[CheckFunction]:
    phase = case.meta.phase.name if case.meta is not None else None
    if BATCH in case.operation.path and phase != TestPhase.EXAMPLES:
        # Generated batch bodies are random bytes, not batches (module docstring).
        return [positive_data_acceptance]
    return []


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_relay_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    if case.operation.path == "/v1/tenants":
        # The configuration gives registrations the operator's token; schemathesis's
        # pytest runner applies it in the coverage phase but sends the tenant's
        # credential in the fuzzing phase (its CLI does not), which would make
        # every generated registration a 401.
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {OPERATOR}"}
    case.call_and_validate(excluded_checks=_left_out(case))


def test_the_document_covers_every_route() -> None:
    from starlette.routing import Route

    paths = schema.raw_schema["paths"]
    for route in app.router.routes:
        assert isinstance(route, Route)
        assert route.path in paths, route.path
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in paths[route.path], (method, route.path)
