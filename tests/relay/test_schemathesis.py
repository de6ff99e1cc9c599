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


def test_the_document_covers_every_route() -> None:
    from starlette.routing import Route

    paths = schema.raw_schema["paths"]
    for route in app.router.routes:
        assert isinstance(route, Route)
        assert route.path in paths, route.path
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in paths[route.path], (method, route.path)
