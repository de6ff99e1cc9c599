"""Prometheus metrics of one relay app.

Each app owns its registry (no process-wide globals, so two apps in one test
do not share counters). Labels are route names, status codes and outcomes
only: never a tenant id, a slot address or anything derived from a cell.

Under ``relay serve --workers N`` the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` for its workers: prometheus_client then keeps
every worker's values in files there, and ``/metrics`` on any worker answers
for the whole relay (counters and histograms summed over workers, living and
dead; the stored-cells gauge as last set, by the worker that runs expiry).

No family has a ``*_created`` series: prometheus_client would publish, for
each counter and histogram child, the instant (to the microsecond) it was
first used, i.e. of the first intake submission, the first refusal over
quota, the first credential rotation. ``/metrics`` holds aggregate counts
only (docs/relay.md); the multiprocess collector writes no such series either.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE_LATEST", "RelayMetrics"]

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Process-wide in prometheus_client (read when a family is collected); every
# relay process, each worker included, imports this module before it serves.
disable_created_metrics()  # type: ignore[no-untyped-call]


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "backchannel_relay_requests", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "backchannel_relay_request_seconds",
            "Time to answer a request",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.deposits = Counter(
            "backchannel_relay_deposits", "Deposits by outcome", ["outcome"], registry=r
        )
        self.batch_cells = Histogram(
            "backchannel_relay_batch_cells",
            "Cells in a batch deposit, slots in a batch fetch",
            ["op"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.cells_fetched = Counter(
            "backchannel_relay_cells_fetched", "Cells returned by fetch and get", registry=r
        )
        self.cells_acked = Counter(
            "backchannel_relay_cells_acked", "Cells removed by ack", registry=r
        )
        self.cells_expired = Counter(
            "backchannel_relay_cells_expired", "Cells removed by expiry", registry=r
        )
        self.rate_limited = Counter(
            "backchannel_relay_rate_limited",
            "Requests refused by a rate limit",
            ["scope"],
            registry=r,
        )
        self.tenants_registered = Counter(
            "backchannel_relay_tenants_registered", "Tenants registered", registry=r
        )
        self.credential_rotations = Counter(
            "backchannel_relay_credential_rotations",
            "Signed credential rotations by outcome (all tenants together)",
            ["outcome"],
            registry=r,
        )
        self.intake = Counter(
            "backchannel_relay_intake",
            "Public intake requests by outcome (all missions together)",
            ["outcome"],
            registry=r,
        )
        self.cells_stored = Gauge(
            "backchannel_relay_cells_stored",
            "Cells held, as of the last expiry run",
            registry=r,
            multiprocess_mode="mostrecent",
        )

        # labels() costs a lock and a dict lookup on tuples; the hot path keeps
        # the children it has already resolved.
        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._outcomes: dict[str, Any] = {}

    def request_done(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(route, str(status)), self.latency.labels(route))
            if len(self._request_children) < 1024:  # routes x statuses is small; stay bounded
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def deposit_outcome(self, outcome: str) -> None:
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = self.deposits.labels(outcome)
        child.inc()

    def credential_rotation(self, outcome: str) -> None:
        self.credential_rotations.labels(outcome).inc()

    def intake_outcome(self, outcome: str) -> None:
        self.intake.labels(outcome).inc()

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Workers of one relay: the values of all of them, from their files.
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
