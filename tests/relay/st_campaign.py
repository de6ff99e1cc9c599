"""Schemathesis at length against a real relay: ``make schemathesis``.

    python -m tests.relay.st_campaign [--cases N] [--seed S] [--db URL]

Starts a relay process (SQLite in a temporary directory unless ``--db``),
registers a tenant, and runs the schemathesis CLI with every check
(``st run --checks all``) against the relay's own OpenAPI document, with the
tenant's credential in every request (the operator's token for registration)
so that the authenticated operations are reached as a client reaches them.
Enough examples per operation are asked for to make at least ``N`` cases
(default 10,000). Prints cases, failures by check and server errors, and
exits non-zero on any failure.

One exception, stated in the document itself and here: the two batch
operations take binary bodies whose length-prefixed layout no JSON Schema can
state (``docs/spec/relay-api.md``), so schemathesis cannot make a valid body
from the schema; for them ``positive_data_acceptance`` is checked on the
document's examples only (``tests/relay/test_schemathesis.py`` checks that
the relay accepts them), and random bytes are checked by every other check (no
server error, a documented status, content type and schema). Their decoders
are fuzzed with random bytes by atheris (``make fuzz``).
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.relay.procs import OPERATOR, RelayProcess

TENANT = "mission-schemathesis"


def _config(credential: str) -> str:
    return f"""
headers = {{ Authorization = "Bearer {credential}" }}

[parameters]
tenant_id = "{TENANT}"

[[operations]]
include-path = "/v1/tenants"
headers = {{ Authorization = "Bearer {OPERATOR}" }}

[[operations]]
include-path-regex = "/batch/"
checks.positive_data_acceptance.enabled = false
"""


def _operations(base_url: str) -> int:
    document = httpx.get(base_url + "/openapi.json").json()
    methods = {"get", "put", "post", "delete", "patch"}
    return sum(len(set(item) & methods) for item in document["paths"].values())


def run(cases: int, seed: int, db: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="st-") as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'relay.db'}"
        with RelayProcess(url) as relay:
            credential = secrets.token_urlsafe(32)
            r = httpx.post(
                relay.base_url + "/v1/tenants",
                json={"tenant_id": TENANT, "credential": credential},
                headers={"Authorization": f"Bearer {OPERATOR}"},
            )
            r.raise_for_status()
            config = Path(tmp) / "schemathesis.toml"
            config.write_text(_config(credential))
            # Operations with few distinct inputs stop short of the maximum, so
            # ask for more than an even share; the count is checked below.
            per_operation = math.ceil(3 * cases / _operations(relay.base_url))
            report = Path(tmp) / "report.json"
            out = subprocess.run(
                [
                    str(Path(sys.executable).with_name("st")),
                    "--config-file",
                    str(config),
                    "run",
                    relay.base_url + "/openapi.json",
                    "--checks",
                    "all",
                    "--max-examples",
                    str(per_operation),
                    "--seed",
                    str(seed),
                    "--report",
                    "json",
                    "--report-json-path",
                    str(report),
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=6 * 3600,
            )
            summary = _summary(report, out.stdout)
            generated = summary["report"].get("test_cases", {}).get("generated", 0)
            summary["enough_cases"] = generated >= cases
            summary["exit_status"] = out.returncode if generated >= cases else 1
            summary["examples_per_operation"] = per_operation
            summary["tail"] = out.stdout.strip().splitlines()[-12:]
            return summary


def _summary(report: Path, stdout: str) -> dict[str, Any]:
    data = json.loads(report.read_text()) if report.exists() else {}
    return {"report": data.get("summary", data) if isinstance(data, dict) else data}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    summary = run(args.cases, args.seed, args.db)
    print(json.dumps(summary, indent=2))
    return 0 if summary["exit_status"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
