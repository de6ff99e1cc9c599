"""Every metric is documented with what it can reveal; the dashboard asks only for real series."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from backchannel.relay.app import create_app
from backchannel.relay.config import env_name
from backchannel.relay.metrics import RelayMetrics
from backchannel.relay.settings import RelaySettings
from backchannel.store.memory import MemoryRelayStore
from tests.relay.conftest import OPERATOR_TOKEN, Clock, deposit, new_cell, new_slot, register
from tests.relay.procs import REPO
from tests.relay.test_isolation_attacks import POW_BITS, _intake_body

DOC = (REPO / "docs" / "operations.md").read_text()
DASHBOARD = REPO / "deploy" / "grafana" / "backchannel-relay.json"


def exported_series() -> dict[str, str]:
    """Every series name the relay's /metrics can show, with its family's type."""
    m = RelayMetrics()
    # One sample of each labelled family, so that its series appear in the text.
    m.request_done("fetch", 200, 0.01)
    m.deposit_outcome("created")
    m.batch_cells.labels("deposit").observe(3)
    m.rate_limited.labels("ip").inc()
    m.intake_outcome("stored")
    m.credential_rotation("rotated")
    series: dict[str, str] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            series[sample.name] = family.type
    return series


def test_every_metric_is_in_the_table_with_what_it_can_reveal() -> None:
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in DOC.splitlines()
        if line.startswith("| `backchannel_relay_")
    }
    families = {f.name for f in RelayMetrics().registry.collect()}
    for family in families:
        documented = [n for n in rows if n in (family, family + "_total")]
        assert documented, f"{family} is not in docs/operations.md"
        cells = [c.strip() for c in rows[documented[0]].split("|")]
        assert len(cells) == 6 and all(cells[1:5]), rows[documented[0]]  # every column filled
    assert len(rows) == len(families)


def test_every_setting_and_its_variable_are_documented() -> None:
    for f in dataclasses.fields(RelaySettings):
        assert f"`{f.name}`" in DOC, f.name
        assert env_name(f.name) in DOC, env_name(f.name)


def test_the_dashboard_asks_only_for_series_the_relay_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"backchannel_relay_\w+", e)}
    series = exported_series()
    assert used <= set(series), used - set(series)
    # Every family is shown somewhere.
    for family in RelayMetrics().registry.collect():
        assert any(name.startswith(family.name) for name in used), family.name
    # Nothing in a panel groups or filters by anything but the documented labels.
    labels = {lab for e in exprs for lab in re.findall(r"by \(([^)]*)\)", e)}
    allowed = {"route", "status", "outcome", "op", "scope", "le"}
    assert {x.strip() for group in labels for x in group.split(",")} <= allowed
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "backchannel-relay"


def test_operations_page_names_files_that_exist() -> None:
    for path in re.findall(r"`((?:deploy|tests|src)/[\w./@-]+)`", DOC):
        if "<" in path:
            continue
        assert (REPO / path).exists() or list(REPO.glob(path)), path
    assert Path(REPO / "deploy" / "systemd" / "backchannel-relay.service").is_file()


def test_metrics_publish_no_instant_of_any_first_event(tmp_path: Path) -> None:
    # prometheus_client's default *_created series would give, to the
    # microsecond, when the first intake request, refusal over quota or rate
    # limit of each kind happened since start: /metrics holds counts only.
    import httpx

    settings = RelaySettings(
        data_dir=tmp_path,
        operator_token=OPERATOR_TOKEN,
        ip_rate=0,
        tenant_rate=0,
        intake_pow_bits=POW_BITS,
        intake_ip_rate=0.001,
        intake_ip_burst=1,
    )
    clock = Clock()
    app = create_app(settings, MemoryRelayStore(), clock=clock)

    async def exercise() -> str:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
                small = await register(http, "mission-small", quota=1)
                statuses = [
                    (await deposit(http, small.tenant_id, new_slot(), new_cell())).status_code
                    for _ in range(2)
                ]
                assert statuses == [201, 507]  # the second is over quota
                opening = {"after": 0, "open": True}
                r = await http.post(small.path("intake/fetch"), json=opening, headers=small.auth)
                assert r.status_code == 200
                submit = f"/v1/intake/{small.tenant_id}/requests"
                r = await http.post(submit, json=_intake_body(small.tenant_id, clock.now))
                assert r.status_code == 201
                r = await http.post(submit, json=_intake_body(small.tenant_id, clock.now))
                assert r.status_code == 429  # the address's intake burst is spent
                return (await http.get("/metrics")).text

    text = asyncio.run(exercise())
    # The events were counted...
    assert 'backchannel_relay_deposits_total{outcome="quota"} 1.0' in text
    assert 'backchannel_relay_intake_total{outcome="stored"} 1.0' in text
    assert 'backchannel_relay_rate_limited_total{scope="intake_ip"} 1.0' in text
    # ...and no series says when.
    assert "_created" not in text
    for family in text_string_to_metric_families(text):
        assert not any(sample.name.endswith("_created") for sample in family.samples)


def test_metrics_of_several_workers_publish_no_instant_either(tmp_path: Path) -> None:
    # Under --workers each process keeps its values in PROMETHEUS_MULTIPROC_DIR
    # (read when prometheus_client is imported, hence a process of its own).
    script = (
        "from backchannel.relay.metrics import RelayMetrics\n"
        "m = RelayMetrics()\n"
        "m.request_done('deposit', 201, 0.01)\n"
        "m.deposit_outcome('quota')\n"
        "m.intake_outcome('stored')\n"
        "m.rate_limited.labels('intake_ip').inc()\n"
        "m.credential_rotation('rotated')\n"
        "print(m.render().decode())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert 'backchannel_relay_intake_total{outcome="stored"} 1.0' in out
    assert "_created" not in out
