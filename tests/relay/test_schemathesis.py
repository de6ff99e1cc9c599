"""Property tests of the relay against its own OpenAPI document (schemathesis).

Every generated request, valid or not, must get an answer that is not a 5xx
and that matches the document: a documented status, a documented media type
and a body that fits the schema. Requests the schema calls invalid must be
refused with a 4xx.
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from backchannel.relay.app import create_app
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore

_settings = RelaySettings(
    data_dir=Path("/nonexistent"),
    operator_token="schemathesis-operator",
    ip_rate=0,
    tenant_rate=0,
    expire_interval_seconds=3600,
)
app = create_app(_settings, MemoryRelayStore())
schema = schemathesis.openapi.from_asgi("/openapi.json", app)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_relay_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


# The batch bodies are binary layouts (docs/spec/relay-api.md) that no JSON
# Schema can state, so random bytes the document allows are refused there.
_DESCRIBED_EXACTLY = schema.exclude(path_regex="/batch/")


@_DESCRIBED_EXACTLY.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_request_the_document_allows_is_not_refused_as_bad(
    case: schemathesis.Case,
) -> None:
    # Any size, index, quota or cell body the document allows gets an answer
    # other than 400 (a size the log has not reached is 404, not "bad request").
    case.call_and_validate(checks=[positive_data_acceptance])


def test_the_batch_bodies_documented_examples_are_accepted() -> None:
    # The one positive check the batch operations get (the layout is prose).
    from starlette.testclient import TestClient

    with TestClient(app) as http:
        credential = "A" * 43
        r = http.post(
            "/v1/tenants",
            json={"tenant_id": "mission-examples", "credential": credential},
            headers={"Authorization": "Bearer schemathesis-operator"},
        )
        assert r.status_code in (201, 409), r.text
        paths = schema.raw_schema["paths"]
        for path, auth in (
            ("/v1/batch/deposit", {}),
            ("/v1/tenants/mission-examples/batch/fetch", {"Authorization": f"Bearer {credential}"}),
        ):
            doc_path = path.replace("mission-examples", "{tenant_id}")
            body = paths[doc_path]["post"]["requestBody"]["content"]["application/octet-stream"]
            answer = http.post(
                path,
                content=body["example"].encode("ascii"),
                headers={"Content-Type": "application/octet-stream", **auth},
            )
            assert answer.status_code == 200, (path, answer.status_code)


def test_the_document_covers_every_route() -> None:
    from starlette.routing import Route

    paths = schema.raw_schema["paths"]
    for route in app.router.routes:
        assert isinstance(route, Route)
        assert route.path in paths, route.path
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in paths[route.path], (method, route.path)
