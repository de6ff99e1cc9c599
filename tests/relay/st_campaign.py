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

The relay runs without rate limits (a 429 passes every check and tests
nothing), the tenant's intake is open, and the hook of ``st_hooks.py`` gives
each intake request schemathesis generates as valid a proof of work, which no
JSON Schema can state; ``negative_data_rejection`` counts 413 as a refusal
(:func:`config_toml`). ``tests/relay/test_schemathesis.py`` runs the same
configuration in ``make test``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.relay.procs import OPERATOR, REPO, RelayProcess
from tests.relay.st_hooks import POW_BITS

TENANT = "mission-schemathesis"


#: The relay process's settings beyond procs.py's (which turn off the general
#: rate limits): no intake rate limit either, and the proof of work the hook makes.
RELAY_ENV = {
    "BACKCHANNEL_RELAY_INTAKE_IP_RATE": "0",
    "BACKCHANNEL_RELAY_INTAKE_TENANT_RATE": "0",
    "BACKCHANNEL_RELAY_INTAKE_RATE": "0",
    "BACKCHANNEL_RELAY_INTAKE_POW_BITS": str(POW_BITS),
}


#: What ``negative_data_rejection`` counts as a refusal unless told otherwise
#: (schemathesis 4's default).
SCHEMATHESIS_REFUSALS = [
    *("400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx")
]


def config_toml(credential: str, operator: str) -> str:
    """The schemathesis configuration: the tenant's credential on every request
    and its id in every path, the operator's token on registrations.

    ``negative_data_rejection`` takes schemathesis's refusals (its default
    list) and 413: the relay answers a body over an endpoint's limit with 413,
    before reading it when Content-Length says so (docs/spec/relay-api.md;
    every operation with a body documents 413). That refuses an invalid body
    as 400 would. A valid body answered with 413 still fails
    ``positive_data_acceptance``, whose statuses are left as they are.
    """
    return f"""
headers = {{ Authorization = "Bearer {credential}" }}

[parameters]
tenant_id = "{TENANT}"

[checks.negative_data_rejection]
expected-statuses = {json.dumps([*SCHEMATHESIS_REFUSALS, "413"])}

[[operations]]
include-path = "/v1/tenants"
headers = {{ Authorization = "Bearer {operator}" }}
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


def _failure_lines(stdout: str) -> list[str]:
    """The CLI's account of its failures (each line cut short: bodies can be long)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if " FAILURES " in line]
    if not starts:
        return []
    end = next((i for i, line in enumerate(lines) if " SUMMARY " in line), len(lines))
    return [line[:240] for line in lines[starts[0] + 1 : end] if line.strip()]


def _operations(base_url: str) -> int:
    document = httpx.get(base_url + "/openapi.json").json()
    methods = {"get", "put", "post", "delete", "patch"}
    return sum(len(set(item) & methods) for item in document["paths"].values())


def run(cases: int, seed: int, db: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="st-") as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'relay.db'}"
        with RelayProcess(url, RELAY_ENV) as relay:
            credential = secrets.token_urlsafe(32)
            r = httpx.post(
                relay.base_url + "/v1/tenants",
                json={"tenant_id": TENANT, "credential": credential},
                headers={"Authorization": f"Bearer {OPERATOR}"},
            )
            r.raise_for_status()
            r = httpx.post(
                relay.base_url + f"/v1/tenants/{TENANT}/intake/fetch",
                json={"after": 0, "open": True},
                headers={"Authorization": f"Bearer {credential}"},
            )
            r.raise_for_status()
            config = Path(tmp) / "schemathesis.toml"
            config.write_text(config_toml(credential, OPERATOR))
            env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.relay.st_hooks"}
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
                    cwd=REPO,
                    env=env,
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
                        "details": _failure_lines(out.stdout),
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
