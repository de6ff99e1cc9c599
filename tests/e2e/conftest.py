"""End-to-end helpers: the ``backchannel`` command as a subprocess, real relay processes.

Every officer home is driven through ``python -m backchannel.cli.main`` with
``BACKCHANNEL_KDF=fast`` (cheap Argon2, taken only with ``BACKCHANNEL_TEST=1``,
which marks a test suite's run) and the passphrase in
``BACKCHANNEL_PASSPHRASE``. Relays are ``python -m backchannel.relay serve``
processes on 127.0.0.1 (``tests.relay.procs``). Some tests set homes up with
the client library directly, where the CLI path is not what they test, to stay
fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from backchannel.client.home import Home
from backchannel.client.keystore import KdfParams
from backchannel.client.policy import POLICY_NOTICE, POLICY_PENDING
from backchannel.client.service import Client
from backchannel.protocol.channel import Policy
from tests.relay.procs import REPO, RelayProcess, fresh_pg_schema, postgres_reachable

_T = TypeVar("_T")
_R = TypeVar("_R")

PASSPHRASE = "correct horse battery staple"
FAST_KDF = KdfParams(memory_kib=1024, time_cost=1, parallelism=1)
OPEN_REGISTRATION = {"BACKCHANNEL_RELAY_OPEN_REGISTRATION": "true"}
#: The CLI's long fault trials (every relay failure, a kill at every commit of
#: every officer's round, a full disk, a hanging relay) run under ``make
#: faults`` (BACKCHANNEL_FULL_SWEEP=1); ``make test`` runs their short forms at
#: the client's level (tests/client/test_vault_faults.py, test_round_faults.py).
FULL_SWEEP = os.environ.get("BACKCHANNEL_FULL_SWEEP") == "1"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env.update(
        {"BACKCHANNEL_TEST": "1", "BACKCHANNEL_KDF": "fast", "BACKCHANNEL_PASSPHRASE": PASSPHRASE}
    )
    env.update(extra)
    return env


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def backchannel(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 60
) -> Result:
    cmd = [sys.executable, "-m", "backchannel.cli.main", *map(str, args)]
    p = subprocess.run(
        cmd,
        env=env or base_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Result(p.returncode, p.stdout, p.stderr)


class Officer:
    """One officer's home, driven through the CLI."""

    def __init__(self, home: Path, name: str = "") -> None:
        self.home = home
        self.name = name

    def run(self, *args: str | Path, env: dict[str, str] | None = None) -> Result:
        return backchannel("--home", self.home, *args, env=env)

    def ok(self, *args: str | Path) -> Result:
        r = self.run(*args)
        assert r.code == 0, f"{self.name} {args}: exit {r.code}\n{r.err}"
        return r

    def json(self, *args: str | Path) -> Any:
        """Run with --json; exit 0 expected; the parsed document."""
        return self.ok("--json", *args).json

    def sync(self, rounds: int | None = None) -> dict[str, Any]:
        """``sync --rounds N``; without N, rounds until nothing waits (``sync``)."""
        args = ("--rounds", str(rounds)) if rounds is not None else ()
        report: dict[str, Any] = self.json("sync", *args)
        assert report["relay_error"] is None, report
        return report

    def settle(self) -> dict[str, Any]:
        return self.sync()


def found_by_cli(tmp: Path, relay_url: str, founder: Officer, colleague: Officer) -> None:
    """Two officers (homes created) found "New York", two signatures of two, through
    the CLI: the colleague's card, the founder's proposal, signed, adopted by both."""
    colleague.ok("officer", "card", "--out", tmp / "colleague.officer")
    proposal = tmp / "ny.proposal"
    founder.ok("mission", "create", "--name", "New York", "--threshold", "2", "--officer",
               tmp / "colleague.officer", "--relay", relay_url, "--out", proposal)  # fmt: skip
    colleague.ok("mission", "sign", proposal)
    founder.ok("mission", "adopt", proposal)
    colleague.ok("mission", "adopt", proposal)


def in_parallel(fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """``fn`` over independent items at once (each runs its own subprocesses); results in order."""
    with ThreadPoolExecutor() as pool:
        return list(pool.map(fn, items))


def assert_one_line_error(r: Result, *hints: str) -> None:
    """Non-zero exit, exactly one line on stderr, saying what to do; no traceback."""
    assert r.code != 0, r
    assert len(r.err_lines) == 1, r.err
    line = r.err_lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in r.err
    assert any(h in line for h in hints), f"{line!r} names none of {hints}"


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (hidden ones included), by relative path."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# --- relays -----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RelayProcess]:
    """A relay process with open registration, on SQLite or on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        with RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", OPEN_REGISTRATION) as r:
            yield r
        return
    reason = postgres_reachable()
    if reason is not None:
        pytest.skip(reason)
    with fresh_pg_schema() as url, RelayProcess(url, OPEN_REGISTRATION) as r:
        yield r


# --- missions set up through the library ------------------------------------------------


@dataclass(frozen=True)
class Missions:
    ri: Officer  # New York, founder and runner
    han: Officer
    smith: Officer  # Washington, founder and runner
    jones: Officer
    ny_card: str
    dc_card: str


async def _found(
    workdir: Path, mission: str, names: tuple[str, str], relay_url: str, register: bool
) -> tuple[Client, Client]:
    slug = mission.lower().replace(" ", "-")
    a, b = (
        Client(Home.create(workdir / f"{slug}-{i + 1}", n, PASSPHRASE, FAST_KDF))
        for i, n in enumerate(names)
    )
    proposal = b.sign_proposal(a.propose_mission(mission, 2, [b.officer_card()], relay_url))
    a.adopt_mission(proposal)
    b.adopt_mission(proposal)
    if register:
        await a.register_tenant()
    return a, b


def adopt_policy_by_hand(officers: tuple[Client, Client], official: Iterable[Policy]) -> None:
    """A 2-of-2 mission's officers change its policy, the signed change handed from
    one device to the other as the mission mailbox would carry it (no relay here)."""
    a, b = officers
    proposed = a.policy_propose(official, 0)
    raw = a.vault.get(POLICY_PENDING, proposed.policy.hash)
    assert raw is not None
    assert b._on_policy_notice(a.officer.officer_id, POLICY_NOTICE + raw) is None
    assert b.policy_sign(proposed.ref).adopted
    adopted = b.mission().policies[-1]
    assert a._on_policy_notice(b.officer.officer_id, POLICY_NOTICE + adopted) is None
    assert a.mission_policy() == b.mission_policy() == proposed.policy


async def _setup(
    workdir: Path, ny_url: str, dc_url: str, register: bool, pair: bool,
    official: Iterable[Policy] | None = None,
) -> Missions:  # fmt: skip
    ny = await _found(workdir, "New York", ("Officer Ri", "Officer Han"), ny_url, register)
    dc = await _found(workdir, "Washington", ("Officer Smith", "Officer Jones"), dc_url, register)
    if official is not None:
        for mission in (ny, dc):
            adopt_policy_by_hand(mission, official)
    cards = (ny[0].mission_card().encode(), dc[0].mission_card().encode())
    if pair:
        offers = {}
        for mine, theirs, card in ((ny, dc, cards[1]), (dc, ny, cards[0])):
            for c in mine:
                rec = c.add_peer(card)
                c.confirm_peer(rec.mission_id, rec.safety_number)
            offer = mine[0].make_offer(theirs[0].mission().mission_id)
            offers[mine[0].mission().name] = mine[1].sign_offer(offer)
        for c in (*ny, *dc):
            c.accept_channel(offers["New York"], offers["Washington"])
    officers = [Officer(c.home.path, c.officer.name) for c in (*ny, *dc)]
    for c in (*ny, *dc):
        c.home.close()
    return Missions(*officers, *cards)


def set_up_missions(
    workdir: Path, ny_url: str, dc_url: str, *, register: bool = True, pair: bool = True,
    official: Iterable[Policy] | None = None,
) -> Missions:  # fmt: skip
    """Found New York (Ri, Han) and Washington (Smith, Jones), 2-of-2 each; pair them.
    ``official``: the kinds of official channel both missions' policies allow."""
    return asyncio.run(_setup(workdir, ny_url, dc_url, register, pair, official))
