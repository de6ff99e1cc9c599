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
from the schema. The run is therefore three runs of the CLI, whose counts are
added up: every operation but those two with every check; those two with
every check on the document's examples (valid bodies); those two with every
check but ``positive_data_acceptance`` on generated bodies (random bytes:
no server error, a documented status, content type and schema). Their
decoders are fuzzed with random bytes by atheris (``make fuzz``).
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
"""


BATCH = "/batch/"
#: (what the run covers, extra CLI arguments)
RUNS = (
    ("every operation but the batch bodies, every check", ["--exclude-path-regex", BATCH]),
    (
        "the batch bodies' documented examples, every check",
        ["--include-path-regex", BATCH, "--phases", "examples"],
    ),
    (
        "generated batch bodies, every check but positive_data_acceptance",
        [
            *("--include-path-regex", BATCH, "--phases", "coverage,fuzzing,stateful"),
            *("--exclude-checks", "positive_data_acceptance"),
        ],
    ),
)


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
            runs = []
            for i, (what, extra) in enumerate(RUNS):
                report = Path(tmp) / f"report-{i}.json"
                out = subprocess.run(
                    [
                        str(Path(sys.executable).with_name("st")),
                        "--config-file",
                        str(config),
                        "run",
                        relay.base_url + "/openapi.json",
                        "--checks",
                        "all",
                        *extra,
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
                data = json.loads(report.read_text()) if report.exists() else {}
                runs.append(
                    {
                        "what": what,
                        "exit_status": out.returncode,
                        "cases": data.get("test_cases", {}).get("generated", 0),
                        "failures": data.get("failures", []),
                        "errors": data.get("errors", []),
                        "operations": data.get("operations", {}).get("tested", 0),
                        "seconds": round(data.get("running_time", 0.0), 1),
                        "tail": out.stdout.strip().splitlines()[-6:],
                    }
                )
            total = sum(r["cases"] for r in runs)
            return {
                "cases": total,
                "enough_cases": total >= cases,
                "failures": [f for r in runs for f in r["failures"]],
                "errors": [e for r in runs for e in r["errors"]],
                "examples_per_operation": per_operation,
                "runs": runs,
                "exit_status": max(r["exit_status"] for r in runs) or int(total < cases),
            }


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
