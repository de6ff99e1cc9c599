"""Fuzz every decoder at length, then minimize its corpus: the body of ``make fuzz``.

    python -m tests.fuzz.campaign [--runs N] [--jobs J] [--no-merge] [TARGET ...]

For each target (all by default): N executions under atheris
(``tests/fuzz/run.py``) from its seeds (``tests/fuzz/seeds/<target>/``, valid
encodings) and corpus (``tests/fuzz/corpus/<target>/``), new inputs in a
scratch folder; then libFuzzer's ``-merge=1`` rewrites the corpus folder as
the smallest set of inputs that keeps the coverage of seeds, old and new
together, less the seeds themselves, and at most :data:`BUDGET` bytes (the
largest inputs go first when over).
Prints one line per target (executions, seconds, corpus files and bytes) and
exits non-zero if any target found a crash or a hang (the input is in
``tests/fuzz/crashes/``).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.fuzz.targets import TARGETS

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"
SEEDS = HERE / "seeds"
#: Most bytes kept in one target's corpus folder.
BUDGET = 24 * 1024
CRASHES = HERE / "crashes"
LOGS = HERE / "logs"


def _runner(name: str, flags: list[str], dirs: list[Path], log: Path, self_exe: Path) -> int:
    cmd = [sys.executable, "-m", "tests.fuzz.run", name, *flags, *map(str, dirs)]
    env = {**os.environ, "FUZZ_SELF": str(self_exe), "PYTHONPATH": str(ROOT)}
    with log.open("a") as out:
        return subprocess.run(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        ).returncode


def _self_exe(folder: Path, name: str) -> Path:
    """An executable that runs this target's fuzzer (libFuzzer's merge re-runs argv[0])."""
    exe = folder / "fuzz-target"
    exe.write_text(
        f"#!/bin/sh\ncd {shlex.quote(str(ROOT))} && "
        f'exec {shlex.quote(sys.executable)} -m tests.fuzz.run {shlex.quote(name)} "$@"\n'
    )
    exe.chmod(0o755)
    return exe


def fuzz_one(name: str, runs: int, merge: bool) -> tuple[str, int, int, float, int, int]:
    """(target, exit status, executions, seconds, corpus files, corpus bytes)."""
    target = TARGETS[name]
    corpus = CORPUS / name
    corpus.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    log.write_text("")
    scratch = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    merged = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-merged-"))
    tools = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-exe-"))
    exe = _self_exe(tools, name)
    common = [f"-max_len={target.max_len}", "-rss_limit_mb=4096"]
    try:
        start = time.monotonic()
        status = _runner(
            name,
            [
                *common,
                f"-runs={runs}",
                "-timeout=10",
                "-print_final_stats=1",
                f"-artifact_prefix={CRASHES}/{name}-",
            ],
            [scratch, corpus, SEEDS / name],
            log,
            exe,
        )
        seconds = time.monotonic() - start
        done = re.findall(r"stat::number_of_executed_units: (\d+)", log.read_text())
        executions = int(done[-1]) if done else 0
        if merge and status == 0:
            dirs = [merged, SEEDS / name, corpus, scratch]
            if _runner(name, [*common, "-merge=1"], dirs, log, exe) == 0:
                _keep(merged, corpus, SEEDS / name)
        files = list(corpus.iterdir())
        return name, status, executions, seconds, len(files), sum(f.stat().st_size for f in files)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(merged, ignore_errors=True)
        shutil.rmtree(tools, ignore_errors=True)


def _keep(merged: Path, corpus: Path, seeds: Path) -> None:
    """Replace ``corpus`` by ``merged`` less the seeds, smallest inputs first, within BUDGET."""
    known = {f.read_bytes() for f in seeds.iterdir()}
    for old in corpus.iterdir():
        old.unlink()
    used = 0
    for new in sorted(merged.iterdir(), key=lambda f: (f.stat().st_size, f.name)):
        data = new.read_bytes()
        if data in known or used + len(data) > BUDGET:
            continue
        used += len(data)
        shutil.move(str(new), corpus / new.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=sorted(TARGETS))
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--no-merge", dest="merge", action="store_false")
    args = parser.parse_args()
    CRASHES.mkdir(exist_ok=True)
    LOGS.mkdir(exist_ok=True)
    failed = 0
    header = ("target", "status", "executions", "seconds", "files", "bytes")
    print("{:<16} {:>6} {:>11} {:>8} {:>6} {:>8}".format(*header))
    with ThreadPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(fuzz_one, t, args.runs, args.merge) for t in args.targets]
        for job in jobs:
            name, status, executions, seconds, files, size = job.result()
            failed += status != 0 or executions < args.runs
            print(f"{name:<16} {status:>6} {executions:>11} {seconds:>8.0f} {files:>6} {size:>8}")
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
