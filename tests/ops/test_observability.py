"""Every metric is documented with what it can reveal; the dashboard asks only for real series."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from backchannel.relay.config import env_name
from backchannel.relay.metrics import RelayMetrics
from backchannel.relay.settings import RelaySettings
from tests.relay.procs import REPO

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
