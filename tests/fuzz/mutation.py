"""Mutation testing of the protocol core with mutmut: the body of ``make mutation``.

    python -m tests.fuzz.mutation [--jobs J] [MODULE ...]

MODULE is a path under ``src/backchannel`` (``protocol/merkle.py``); by
default every module of ``protocol/`` and ``crypto/``, the most important
first. The run happens in a scratch copy of the checkout (or, with ``--rev``,
of a commit) (mutmut writes a ``mutants/`` folder next to the
sources), against the fast tests that cover the core: tests/protocol,
tests/merkle, tests/vectors, tests/attacks (less the relay-driven
test_malicious_relay.py), tests/fuzz and the intake's protocol tests. It prints, per
module, the mutants killed, survived, timed out and not covered, the score
(killed and timed out over all mutants), and every surviving mutant's name,
then the total. ``mutmut show NAME`` in the scratch folder shows a mutant.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TESTS = [
    "tests/protocol",
    "tests/merkle",
    "tests/vectors",
    "tests/attacks",
    "tests/fuzz",
    "tests/intake/test_protocol.py",
]
#: Left out: runs a relay and whole clients (25 s), so that every mutant of a
#: sealing function would cost that much; the core's own tests cover the same code.
IGNORE = ["tests/attacks/test_malicious_relay.py"]
#: The modules mutated first: what matters most when the core is wrong.
FIRST = [
    "protocol/merkle.py",
    "protocol/sealing.py",
    "protocol/cells.py",
    "protocol/transcript.py",
    "protocol/joint.py",
    "crypto/sharing.py",
]


def _all_modules() -> list[str]:
    core = ROOT / "src" / "backchannel"
    found = [
        str(p.relative_to(core))
        for folder in ("protocol", "crypto")
        for p in sorted((core / folder).glob("*.py"))
        if p.name != "__init__.py"
    ]
    return FIRST + [m for m in found if m not in FIRST]


def _config(modules: list[str]) -> str:
    globs = ", ".join(f'"src/backchannel/{m}"' for m in modules)
    tests = ", ".join(f'"{t}"' for t in TESTS)
    ignore = "".join(f'"--ignore={t}", ' for t in IGNORE)
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        'also_copy = ["docs"]\n'
        f"only_mutate = [{globs}]\n"
        f"pytest_add_cli_args_test_selection = [{tests}]\n"
        f'pytest_add_cli_args = [{ignore}"-p", "no:cacheprovider", "-q"]\n'
        "use_git_change_detection = false\n"
    )


def _scratch(modules: list[str], rev: str | None) -> Path:
    work = Path(tempfile.mkdtemp(prefix="backchannel-mutation-"))
    if rev is not None:
        # A committed tree, e.g. HEAD: what others are editing in the checkout stays out.
        archive = subprocess.run(
            ["git", "archive", rev, "src", "tests", "docs", "pyproject.toml"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
        with (work / "pyproject.toml").open("a") as f:
            f.write(_config(modules))
        return work
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "tests",
        work / "tests",
        ignore=shutil.ignore_patterns("__pycache__", "logs", "crashes", "*.db"),
    )
    shutil.copytree(ROOT / "docs", work / "docs")
    pyproject = (ROOT / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(pyproject + _config(modules))
    return work


def _results(work: Path) -> dict[str, str]:
    mutmut = [sys.executable, "-m", "mutmut"]
    out = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=work, capture_output=True, text=True
    ).stdout
    status: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+):\s*(\S.*)$", line)
        if m and "__mutmut_" in m.group(1):
            status[m.group(1)] = m.group(2).strip()
    return status


def _module_of(mutant: str) -> str:
    # backchannel.protocol.merkle.x_verify_inclusion__mutmut_3 -> protocol/merkle.py
    parts = mutant.split(".")
    return "/".join(parts[1:-1]) + ".py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rev", help="mutate this commit (git archive) instead of the checkout")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--report", metavar="DIR", help="only report on the run kept in DIR")
    args = parser.parse_args()
    if args.report:
        return _report(_results(Path(args.report)))
    modules = args.modules or _all_modules()
    work = _scratch(modules, args.rev)
    print(f"mutating {len(modules)} modules in {work}", flush=True)
    try:
        with (work / "mutmut.log").open("w") as log:
            run = subprocess.run(
                [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.jobs)],
                cwd=work,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        status = _results(work)
        if run.returncode or not status or "not checked" in status.values():
            tail = (work / "mutmut.log").read_text(errors="replace").replace("\r", "\n")
            print("mutmut did not finish; the end of its output:", flush=True)
            print("\n".join(tail.splitlines()[-40:]))
            return run.returncode or 1
        return _report(status)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _report(status: dict[str, str]) -> int:
    by_module: dict[str, Counter[str]] = {}
    survivors: dict[str, list[str]] = {}
    for mutant, st in sorted(status.items()):
        module = _module_of(mutant)
        by_module.setdefault(module, Counter())[st] += 1
        if st == "survived":
            survivors.setdefault(module, []).append(mutant)
    total: Counter[str] = Counter()
    print(
        f"{'module':<28} {'mutants':>7} {'killed':>6} {'survived':>8} {'timeout':>7} "
        f"{'no tests':>8} {'score':>6}"
    )
    for module in sorted(by_module):
        c = by_module[module]
        total.update(c)
        print(_row(module, c))
    print(_row("total", total))
    for module in sorted(survivors):
        print(f"\nsurvived in {module}:")
        for name in survivors[module]:
            print(f"  {name}")
    return 1 if not status or "not checked" in status.values() else 0


def _row(name: str, c: Counter[str]) -> str:
    n = sum(c.values())
    killed = c["killed"] + c["timeout"]
    score = f"{100 * killed / n:.1f}%" if n else "-"
    return (
        f"{name:<28} {n:>7} {c['killed']:>6} {c['survived']:>8} {c['timeout']:>7} "
        f"{c['no tests']:>8} {score:>6}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
