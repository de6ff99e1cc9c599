# Every target builds .venv by itself: on a fresh machine `make demo` and
# `make test` are the only set-up commands.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
FUZZ_STAMP := $(VENV)/.fuzz-installed

.PHONY: demo test lint bench bench-quick clean vectors dist
.PHONY: fuzz mutation schemathesis soak faults
.PHONY: docs

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# What only the benchmarks need (scikit-learn for bench/observer.py).
$(BENCH_STAMP): $(STAMP) requirements-bench.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.lock
	touch $(BENCH_STAMP)

# Where the environment forbids writing bytecode (PYTHONDONTWRITEBYTECODE), every
# process the demo or the tests start (the CLI, the relay) would compile the whole
# package again, about a second each: compile it once (compileall skips what is
# up to date, and writes whatever that variable says).
COMPILE := $(BIN)/python -m compileall -q src/backchannel tests bench

demo: $(STAMP)
	$(COMPILE)
	$(BIN)/backchannel demo

# The suite on two processes (pytest-xdist), each test file whole on one of them;
# then the relay's schemathesis property test alone, whose operations xdist does
# not split.
ALONE := tests/relay/test_schemathesis.py
test: $(STAMP)
	$(COMPILE)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --ignore=$(ALONE)
	$(BIN)/python -m pytest -q $(ALONE)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict src/backchannel
	$(BIN)/lint-imports

bench: $(BENCH_STAMP)
	$(COMPILE)
	$(BIN)/python -m bench

bench-quick: $(BENCH_STAMP)
	$(COMPILE)
	$(BIN)/python -m bench --quick

# The sdist and the wheel in dist/, built with the setuptools pinned in
# requirements.lock (--no-isolation: nothing is downloaded at build time).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist

# What only fuzzing and mutation testing need (atheris, mutmut).
$(FUZZ_STAMP): $(STAMP) requirements-fuzz.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-fuzz.lock
	touch $(FUZZ_STAMP)

# Every decoder under atheris for FUZZ_RUNS executions each, the corpus kept
# minimized in tests/fuzz/corpus/ (about an hour), then mutation testing.
# The short form is tests/fuzz/, run by `make test`.
FUZZ_RUNS ?= 1000000
fuzz: $(FUZZ_STAMP)
	$(BIN)/python -m tests.fuzz.campaign --runs $(FUZZ_RUNS)
	$(MAKE) schemathesis
	$(MAKE) mutation

# Schemathesis against a real relay process, every check, at least ST_CASES
# cases, with a tenant's credential (docs/reliability.md). The short form is
# tests/relay/test_schemathesis.py, run by `make test`.
ST_CASES ?= 10000
schemathesis: $(STAMP)
	$(BIN)/python -m tests.relay.st_campaign --cases $(ST_CASES)

# One hour (SOAK_SECONDS) of rounds for 1,000 channels against one relay:
# per-minute memory, latency and database size into docs/img/soak.{csv,png}
# and a verdict on flatness (docs/reliability.md). The short form is
# tests/bench/test_soak.py, run by `make test`.
SOAK_SECONDS ?= 3600
soak: $(BENCH_STAMP)
	$(COMPILE)
	$(BIN)/python -m bench.soak --seconds $(SOAK_SECONDS) --csv docs/img/soak.csv --plot docs/img/soak.png

# The fault harness (docs/reliability.md): FAULT_TRIALS trials of each fault on
# SQLite and on PostgreSQL (a private cluster made with initdb; skipped, and
# said so, where none can be made), every trial's row into docs/img/faults.csv
# and the table on stdout. FAULTS=relay-kill,net-cut and FAULT_STORES=sqlite
# narrow it. The short form is tests/faults/test_faults.py, run by `make test`.
# Then the CLI's long fault trials (BACKCHANNEL_FULL_SWEEP=1; their short
# forms in `make test` are tests/client/test_vault_faults.py and test_round_faults.py).
FAULT_TRIALS ?= 100
FAULTS ?= all
FAULT_STORES ?= sqlite,postgres
faults: $(STAMP)
	$(COMPILE)
	$(BIN)/python -m tests.faults.harness --trials $(FAULT_TRIALS) --faults $(FAULTS) \
		--stores $(FAULT_STORES) --csv docs/img/faults.csv
	BACKCHANNEL_FULL_SWEEP=1 $(BIN)/python -m pytest -q tests/e2e/test_cli_relay_faults.py \
		tests/e2e/test_cli_vault_faults.py

# mutmut over src/backchannel/protocol and crypto, against the core's fast tests;
# MUTATE=protocol/merkle.py limits it to some modules.
MUTATE ?=
mutation: $(FUZZ_STAMP)
	$(BIN)/python -m tests.fuzz.mutation $(MUTATE)

# The documentation site: MkDocs and the Material theme at the versions of
# requirements-docs.lock, in an environment of their own (.venv/docs), built
# from docs/ into build/site/ with --strict (a broken link fails the build).
DOCS_VENV := $(VENV)/docs
DOCS_STAMP := $(DOCS_VENV)/.installed
$(DOCS_STAMP): requirements-docs.lock
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-docs.lock
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict

vectors: $(STAMP)
	$(BIN)/python tests/vectors/generate.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
