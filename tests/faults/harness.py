"""The fault harness: two missions exchange messages while the relay, its database,
the network and the devices fail; a checker counts what was lost.

Each trial starts from the same founded and paired missions (New York: Ri and
Han; Washington: Smith and Jones, each 2-of-2), copied afresh, and a relay
process on a copy of the same database (SQLite, or PostgreSQL in a private
cluster made with initdb). Every device is a process of its own
(:mod:`tests.faults.device`) that reaches the relay through a proxy of the
harness's own (:mod:`tests.faults.proxy`). For ``ROUNDS`` rounds the officers
work (Ri and Smith compose, Han and Jones co-sign) while one fault strikes at
random moments; then the faults stop and the rounds go on until every message
is receipted and every outbox empty, or ``HEAL_ROUNDS`` pass.

The checker reads every device's drafts, inbox and outbox. A message is
*acknowledged* once both officers co-signed it and the sending device queued
it (the system's promise to deliver it). For each receiving device it counts

* **lost**: an acknowledged message that is not in the inbox;
* **duplicated**: a sequence number held twice, or a message nobody sent;
* **out of order**: a message received in an earlier round than one sent before it;

and beside them the messages not yet receipted and the cells still in outboxes
when the trial ended.

    python -m tests.faults.harness --trials 100            # the table (make faults)
    python -m tests.faults.harness --trials 2 --faults relay-kill --stores sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.faults import pgcluster
from tests.faults.proxy import FaultProxy
from tests.relay.procs import REPO, RelayProcess

#: The address in the missions' cards; each device's relay factory sends it to the proxy.
RELAY_URL = "http://relay.faults.test"
PASSPHRASE = "fault harness"
NAMES = (("ri", "han"), ("smith", "jones"))
#: Rounds of work under the fault, then at most this many rounds to heal.
ROUNDS = 8
HEAL_ROUNDS = 30
#: Messages a sender keeps in flight at most (composed, not yet receipted).
IN_FLIGHT = 3

FAULTS = (
    "relay-kill",
    "db-restart",
    "net-cut",
    "net-reset",
    "clock-skew",
    "device-kill",
    "relay-pause",
    "net-delay",
    "disk-full",
    "mixed",
)
STORES = ("sqlite", "postgres")


@dataclass
class Outcome:
    fault: str
    store: str
    seed: int
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unreceipted: int = 0
    outbox_left: int = 0
    stuck_drafts: int = 0
    events: int = 0
    relay_errors: int = 0
    http_5xx: int = 0
    store_refusals: int = 0
    rounds: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.error)


# -- the devices -------------------------------------------------------------------


class DeviceProc:
    """One device process; ``call`` sends a command and waits for its answer."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.device"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.opened: dict[str, Any] | None = None
        self.deaths = 0

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def receive(self) -> dict[str, Any] | None:
        """The answer, or None when the device died (it killed itself)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            return None
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"device: {answer.get('error')}")
        return answer

    def call(self, cmd: dict[str, Any]) -> dict[str, Any] | None:
        self.send(cmd)
        return self.receive()

    def open(self, cmd: dict[str, Any]) -> None:
        self.opened = cmd
        if self.call(cmd) is None:
            raise RuntimeError("device died while opening its home")

    def restart(self) -> DeviceProc:
        """A new process on the same home (after the old one was killed)."""
        fresh = DeviceProc()
        fresh.deaths = self.deaths + 1
        assert self.opened is not None
        fresh.open({**self.opened, "seed": self.opened["seed"] + 1000 * fresh.deaths})
        return fresh

    def close(self) -> None:
        """Close the home; the process stays for the next trial's."""
        if self.proc.poll() is None and self.opened is not None:
            self.opened = None
            self.call({"op": "close"})

    def exit(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the relay and its database ----------------------------------------------------


class Store:
    """Where a trial's relay keeps its database, made afresh from a template."""

    name = ""

    def __init__(self, root: Path) -> None:
        self.root = root

    def template_url(self) -> str:
        raise NotImplementedError

    def trial_url(self, n: int) -> str:
        raise NotImplementedError

    def drop(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class SqliteStore(Store):
    name = "sqlite"

    def template_url(self) -> str:
        (self.root / "template").mkdir(parents=True, exist_ok=True)
        return str(self.root / "template" / "relay.db")

    def trial_url(self, n: int) -> str:
        shutil.copytree(self.root / "template", self.root / f"db-{n}")
        return str(self.root / f"db-{n}" / "relay.db")

    def drop(self, n: int) -> None:
        shutil.rmtree(self.root / f"db-{n}", ignore_errors=True)


class PostgresStore(Store):
    name = "postgres"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.cluster = pgcluster.PrivateCluster(root / "pg").init()
        self.cluster.start()

    def template_url(self) -> str:
        self.cluster.sql("CREATE DATABASE template_relay")
        return self.cluster.url("template_relay")

    def trial_url(self, n: int) -> str:
        try:
            self.cluster.sql(f"CREATE DATABASE trial_{n} TEMPLATE template_relay")
        except Exception:
            # The last trial left the server down or recovering: start it afresh.
            self.cluster.stop("immediate")
            self.cluster.start()
            self.cluster.sql(f"CREATE DATABASE trial_{n} TEMPLATE template_relay")
        return self.cluster.url(f"trial_{n}")

    def drop(self, n: int) -> None:
        with contextlib.suppress(Exception):
            self.cluster.sql(f"DROP DATABASE IF EXISTS trial_{n} WITH (FORCE)")

    def close(self) -> None:
        self.cluster.destroy()


def _relay(url: str, log: Path) -> RelayProcess:
    relay = RelayProcess(url, {"BACKCHANNEL_RELAY_OPEN_REGISTRATION": "true"})
    relay.log_path = log
    return relay


async def _found(homes: Path, relay_url: str) -> None:
    """Found and pair the two missions once; every trial starts from a copy."""
    from backchannel.client import demo
    from backchannel.client.relay_client import RelayClient
    from tests.client.conftest import FAST_KDF

    def factory(url: str, tenant: str | None, credential: str | None) -> RelayClient:
        return RelayClient(relay_url, tenant, credential)

    ny = await demo.found(
        homes,
        "New York",
        NAMES[0],
        RELAY_URL,
        factory,
        PASSPHRASE,
        FAST_KDF,  # type: ignore[arg-type]
    )
    dc = await demo.found(
        homes,
        "Washington",
        NAMES[1],
        RELAY_URL,
        factory,
        PASSPHRASE,
        FAST_KDF,  # type: ignore[arg-type]
    )
    await demo.pair(ny, dc)
    await demo.lockstep((*ny, *dc), lambda: False, 2)  # every device pins the log
    for d in (*ny, *dc):
        d.home.close()


HOMES = {
    "ri": "new-york-1",
    "han": "new-york-2",
    "smith": "washington-1",
    "jones": "washington-2",
}


class Fixture:
    """The founded missions and the relay database they were founded on, for one store."""

    def __init__(self, root: Path, store: str) -> None:
        self.root = root
        self.store: Store = SqliteStore(root) if store == "sqlite" else PostgresStore(root)
        url = self.store.template_url()
        relay = _relay(url, root / "relay-template.log").start()
        try:
            asyncio.run(_found(root / "homes", relay.base_url))
        finally:
            relay.stop()
        self.trials = 0
        #: Device processes, kept from one trial to the next (each opens the trial's home).
        self.devices: dict[str, DeviceProc] = {}

    def close(self) -> None:
        for d in self.devices.values():
            d.exit()
        self.store.close()


# -- faults ------------------------------------------------------------------------


@dataclass
class Scene:
    """What a fault acts on during one trial."""

    relay: RelayProcess
    proxy: FaultProxy
    store: Store
    rng: random.Random
    devices: dict[str, DeviceProc]
    events: int = 0
    #: Set when the faults stop: a kill still on its way does nothing.
    healed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    timers: list[threading.Timer] = field(default_factory=list)

    def later(self, delay: float, action: Callable[[], None]) -> None:
        def run() -> None:
            with self.lock:
                action()

        t = threading.Timer(delay, run)
        t.daemon = True
        self.timers.append(t)
        t.start()

    def strike(self, delay: float, action: Callable[[], None]) -> None:
        """``action`` after ``delay`` seconds, counted as one fault event."""

        def counted() -> None:
            action()
            self.events += 1

        self.later(delay, counted)

    def settle_timers(self) -> None:
        for t in self.timers:
            t.join(30)
        self.timers.clear()

    def calm_devices(self) -> None:
        """No more device deaths while the trial heals."""
        for d in self.devices.values():
            d.call({"op": "calm"})

    def kill_relay(self) -> None:
        if self.healed:
            return
        if self.relay.proc is not None and self.relay.proc.poll() is None:
            self.relay.proc.send_signal(signal.SIGKILL)
            self.events += 1

    def relay_up(self) -> None:
        """Start the relay again if a fault left it dead.

        On a full disk a relay killed mid-write may not start at all (SQLite
        cannot replay its WAL into a file that may not grow): it stays down, as
        it would for the operator, until the space comes back.
        """
        with self.lock:
            if self.relay.proc is None or self.relay.proc.poll() is not None:
                # While faults strike, a relay whose disk is full or whose database
                # is down or still recovering may not start: it stays down until
                # the next round. Once they stop, it must start within a minute.
                deadline = time.monotonic() + (60 if self.healed else 0)
                while True:
                    try:
                        self.relay.start(timeout=60)
                        return
                    except RuntimeError:
                        if self.healed and self.relay.file_limit is None:
                            if time.monotonic() > deadline:
                                raise
                            time.sleep(1)
                            continue
                        return


class Fault:
    """One kind of fault: ``round(r)`` strikes before round ``r``'s phases; ``heal`` ends it."""

    def __init__(self, scene: Scene) -> None:
        self.s = scene

    def skew(self) -> float:
        return 0.0

    def device_kill(self) -> float:
        return 0.0

    def round(self, r: int) -> None:
        pass

    def heal(self) -> None:
        pass


class RelayKill(Fault):
    """SIGKILL the relay: once right after a batch deposit reached it (mid-batch), once
    at a random moment of a random round; it is started again a round later."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(scene)
        self.mid_batch = scene.rng.randrange(1, ROUNDS - 2)
        self.anytime = scene.rng.randrange(1, ROUNDS - 1)

    def _arm(self) -> None:
        s = self.s
        wait = s.rng.uniform(0.0, 0.02)

        def hook() -> None:
            s.proxy.on_deposit = None
            with s.lock:
                time.sleep(wait)  # the relay is somewhere inside the batch
                s.kill_relay()

        s.proxy.on_deposit = hook

    def round(self, r: int) -> None:
        self.s.relay_up()
        if r == self.mid_batch:
            self._arm()
        if r == self.anytime:
            self.s.later(self.s.rng.uniform(0.0, 0.3), self.s.kill_relay)

    def heal(self) -> None:
        self.s.proxy.on_deposit = None
        self.s.settle_timers()
        self.s.relay_up()


class RelayPause(Fault):
    """SIGSTOP the relay for 0.5 to 8 s (at times longer than a device waits), then SIGCONT."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(scene)
        self.at = {scene.rng.randrange(1, ROUNDS - 1) for _ in range(2)}

    def round(self, r: int) -> None:
        s = self.s
        if r in self.at and s.relay.proc is not None:
            proc = s.relay.proc
            pause = s.rng.uniform(0.5, 8.0)

            def stop() -> None:
                proc.send_signal(signal.SIGSTOP)
                s.later(pause, lambda: proc.send_signal(signal.SIGCONT))

            s.strike(s.rng.uniform(0.0, 0.2), stop)

    def heal(self) -> None:
        self.s.settle_timers()
        if self.s.relay.proc is not None:
            self.s.relay.proc.send_signal(signal.SIGCONT)


class DbRestart(Fault):
    """Restart PostgreSQL under load (fast or immediate shutdown, at a random moment)."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(scene)
        self.at = {scene.rng.randrange(1, ROUNDS - 1) for _ in range(2)}

    def round(self, r: int) -> None:
        s = self.s
        assert isinstance(s.store, PostgresStore)
        cluster = s.store.cluster
        if r in self.at:
            mode = s.rng.choice(("fast", "immediate"))
            s.strike(s.rng.uniform(0.0, 0.2), lambda: cluster.restart(mode))

    def heal(self) -> None:
        self.s.settle_timers()


class _NetFault(Fault):
    """A fault of the proxy's: healed by waiting for its timers and passing bytes again."""

    def heal(self) -> None:
        self.s.settle_timers()
        self.s.proxy.set_mode("pass")


class NetCut(_NetFault):
    """The cable pulled at a random moment of a round, and put back at a random
    moment one to three rounds later."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(scene)
        self.start = scene.rng.randrange(1, ROUNDS - 3)
        self.end = self.start + scene.rng.randrange(1, 4)

    def round(self, r: int) -> None:
        s = self.s
        if r == self.start:
            s.strike(s.rng.uniform(0.0, 0.2), lambda: s.proxy.set_mode("cut"))
        elif r == self.end:
            s.later(s.rng.uniform(0.0, 0.2), lambda: s.proxy.set_mode("pass"))


class NetReset(_NetFault):
    """Connections reset (TCP RST) at random moments in several rounds."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(scene)
        self.at = {scene.rng.randrange(1, ROUNDS) for _ in range(4)}

    def round(self, r: int) -> None:
        self.heal()  # the last reset is over: connections are made again
        if r in self.at:
            s = self.s
            s.strike(s.rng.uniform(0.0, 0.15), lambda: s.proxy.set_mode("reset"))


class NetDelay(Fault):
    """Every chunk delayed 0.05 to 1.5 s for two rounds (at times beyond a device's patience)."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(scene)
        self.start = scene.rng.randrange(1, ROUNDS - 3)
        self.end = self.start + 2

    def round(self, r: int) -> None:
        s = self.s
        if self.start <= r < self.end:
            s.proxy.set_mode("delay", s.rng.uniform(0.05, 1.5))
            s.events += 1
        else:
            s.proxy.set_mode("pass")

    def heal(self) -> None:
        self.s.proxy.set_mode("pass")


class ClockSkew(Fault):
    """Each device's clock off by one to nine minutes, either way, for the whole trial."""

    def skew(self) -> float:
        self.s.events += 1
        return self.s.rng.choice((-1, 1)) * self.s.rng.uniform(60, 540)


class DiskFull(Fault):
    """The relay's disk fills: a file-size limit just above what its database holds
    (SQLite), or PostgreSQL restarted under one (a WAL segment cannot grow), for
    two rounds; then the space comes back."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(scene)
        self.start = scene.rng.randrange(1, ROUNDS - 3)
        self.end = self.start + 2

    def round(self, r: int) -> None:
        s = self.s
        if r == self.start:
            s.events += 1
            if isinstance(s.store, PostgresStore):
                # No file of the server may pass a few MB: the WAL segment in use
                # (16 MB) soon cannot be written on, and the server stops.
                s.store.cluster.stop("fast")
                with contextlib.suppress(RuntimeError):
                    s.store.cluster.start(file_limit_kib=s.rng.choice((4096, 8192, 12288)), wait=5)
            else:
                # No file may pass 8 to 64 KiB: the database file (larger already)
                # cannot grow, and the WAL fills after a few commits.
                s.relay.stop()
                s.relay.file_limit = s.rng.randrange(8, 65) * 1024
                s.relay.proc = None
                s.relay_up()
        elif r == self.end:
            self.heal()

    def heal(self) -> None:
        s = self.s
        if isinstance(s.store, PostgresStore):
            s.store.cluster.stop("immediate")
            s.store.cluster.start()
        elif s.relay.file_limit is not None:
            with s.lock:
                s.relay.kill()
                s.relay.file_limit = None
                s.relay.start(timeout=60)


class DeviceKill(Fault):
    """Every device kills itself around some batch deposits (after persisting, before
    sending; or after the relay stored, before the answer is taken)."""

    def device_kill(self) -> float:
        return 0.2

    def heal(self) -> None:
        self.s.calm_devices()


class Mixed(Fault):
    """All of the above at once, each round one chosen at random (clock skew throughout)."""

    def __init__(self, scene: Scene, pg: bool) -> None:
        super().__init__(scene)
        kinds: list[type[Fault]] = [RelayKill, RelayPause, NetCut, NetReset, NetDelay, DiskFull]
        if pg:
            kinds.append(DbRestart)
        self.faults = [k(scene) for k in kinds]
        self.skewed = ClockSkew(scene)

    def skew(self) -> float:
        return self.skewed.skew()

    def device_kill(self) -> float:
        return 0.1

    def round(self, r: int) -> None:
        self.s.relay_up()
        for f in self.faults:
            f.round(r)

    def heal(self) -> None:
        self.s.settle_timers()  # no fault still on its way while the others heal
        for f in self.faults:
            f.heal()
        self.s.calm_devices()
        self.s.relay_up()


def make_fault(name: str, scene: Scene, pg: bool) -> Fault:
    kinds: dict[str, Callable[[Scene], Fault]] = {
        "relay-kill": RelayKill,
        "relay-pause": RelayPause,
        "db-restart": DbRestart,
        "net-cut": NetCut,
        "net-reset": NetReset,
        "net-delay": NetDelay,
        "clock-skew": ClockSkew,
        "disk-full": DiskFull,
        "device-kill": DeviceKill,
        "mixed": lambda s: Mixed(s, pg),
    }
    return kinds[name](scene)


def applies(fault: str, store: str) -> bool:
    """A database restart is PostgreSQL's alone (SQLite lives and dies with the relay)."""
    return not (fault == "db-restart" and store != "postgres")


# -- one trial ---------------------------------------------------------------------


class Trial:
    def __init__(self, fixture: Fixture, fault: str, seed: int) -> None:
        self.fixture = fixture
        self.fault_name = fault
        self.seed = seed
        self.rng = random.Random(seed)
        self.outcome = Outcome(fault, fixture.store.name, seed)

    def run(self) -> Outcome:
        t0 = time.monotonic()
        fx = self.fixture
        fx.trials += 1
        n = fx.trials
        root = fx.root / f"trial-{n}"
        shutil.copytree(fx.root / "homes", root / "homes")
        devices = fx.devices
        deaths = {k: d.deaths for k, d in devices.items()}  # devices outlive trials
        proxy: FaultProxy | None = None
        relay = _relay("", fx.root / f"relay-{n}.log")
        try:
            relay.db_url = fx.store.trial_url(n)
            relay.start(timeout=60)
            proxy = FaultProxy(relay.port).start()
            scene = Scene(relay, proxy, fx.store, self.rng, devices)
            fault = make_fault(self.fault_name, scene, fx.store.name == "postgres")
            for name, home in HOMES.items():
                if name not in devices or devices[name].proc.poll() is not None:
                    devices[name] = DeviceProc()
                devices[name].open(
                    {
                        "op": "open",
                        "home": str(root / "homes" / home),
                        "passphrase": PASSPHRASE,
                        "target": proxy.url,
                        "skew": fault.skew(),
                        "kill": fault.device_kill(),
                        "seed": self.rng.randrange(2**31),
                    }
                )
            self._work(scene, fault)
            self._check(devices)
            self.outcome.events = scene.events + sum(
                d.deaths - deaths.get(k, 0) for k, d in devices.items()
            )
            self.outcome.http_5xx = proxy.server_errors
        except Exception as exc:
            self.outcome.error = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            for key, d in list(devices.items()):
                try:
                    d.close()
                except Exception:
                    d.exit()
                    del devices[key]
            if proxy is not None:
                proxy.stop()
            with contextlib.suppress(Exception):
                relay.proc is not None and relay.proc.send_signal(signal.SIGCONT)
            relay.kill()
            with contextlib.suppress(OSError):
                log = (fx.root / f"relay-{n}.log").read_text(errors="replace")
                self.outcome.store_refusals = log.count("store unavailable")
            fx.store.drop(n)
            shutil.rmtree(root, ignore_errors=True)
            self.outcome.seconds = round(time.monotonic() - t0, 2)
        return self.outcome

    # -- rounds -------------------------------------------------------------------

    def _phase(self, devices: dict[str, DeviceProc], name: str) -> None:
        """One phase on every device at once; a device that died is started again."""
        for d in devices.values():
            d.send({"op": "phase", "name": name})
        for key, d in list(devices.items()):
            answer = d.receive()
            if answer is None:
                devices[key] = d.restart()
            elif answer["error"]:
                self.outcome.relay_errors += 1

    def _call(self, devices: dict[str, DeviceProc], key: str, cmd: dict[str, Any]) -> Any:
        answer = devices[key].call(cmd)
        if answer is None:  # died on a command that deposits nothing: cannot happen
            raise RuntimeError(f"{key}'s device died outside a deposit")
        return answer

    def _round(self, scene: Scene, fault: Fault | None, r: int, work: bool) -> None:
        devices = scene.devices
        if fault is not None:
            fault.round(r)
        for sender, cosigner, peer in (("ri", "han", "Washington"), ("smith", "jones", "New York")):
            if work and self.rng.random() < 0.6:
                drafts = self._call(devices, sender, {"op": "state"})["drafts"]
                open_ = [d for d in drafts if d["state"] != "delivered"]
                # One draft at a time waits for its co-signature (the client's rule).
                signing = [d for d in open_ if d["state"] not in ("queued", "delivered")]
                if len(open_) < IN_FLIGHT and not signing:
                    text = f"{sender} round {r} {self.rng.randrange(10**6)}"
                    self._call(devices, sender, {"op": "compose", "peer": peer, "text": text})
            self._call(devices, cosigner, {"op": "approve"})
        for phase in ("deposit", "fetch"):
            self._phase(devices, phase)
        self.outcome.rounds += 1

    def _work(self, scene: Scene, fault: Fault) -> None:
        for r in range(ROUNDS):
            self._round(scene, fault, r, work=True)
        with scene.lock:
            scene.healed = True
        fault.heal()
        for r in range(HEAL_ROUNDS):
            scene.relay_up()
            self._round(scene, None, ROUNDS + r, work=False)
            if self._quiet(scene.devices):
                break

    def _states(self, devices: dict[str, DeviceProc]) -> dict[str, Any]:
        return {k: self._call(devices, k, {"op": "state"}) for k in devices}

    def _quiet(self, devices: dict[str, DeviceProc]) -> bool:
        states = self._states(devices)
        return all(s["outbox"] == 0 for s in states.values()) and all(
            d["state"] == "delivered" for s in states.values() for d in s["drafts"]
        )

    # -- the checker ----------------------------------------------------------------

    def _check(self, devices: dict[str, DeviceProc]) -> None:
        states = self._states(devices)
        o = self.outcome
        sides = ((("ri", "han"), ("smith", "jones")), (("smith", "jones"), ("ri", "han")))
        for senders, receivers in sides:
            acked: set[tuple[str, int]] = set()
            receipted: set[tuple[str, int]] = set()
            for k in senders:
                for d in states[k]["drafts"]:
                    if d["state"] in ("queued", "delivered"):
                        acked.add((d["channel"], d["seq"]))
                        if d["state"] == "delivered":
                            receipted.add((d["channel"], d["seq"]))
                    else:
                        o.stuck_drafts += 1
            o.acknowledged += len(acked)
            o.unreceipted += len(acked - receipted)
            for k in receivers:
                inbox = states[k]["inbox"]
                held = [(i["channel"], i["seq"]) for i in inbox]
                o.lost += len(acked - set(held))
                o.duplicated += len(held) - len(set(held)) + len(set(held) - acked)
                # Receipts the sender holds for messages this receiver never got
                # would be counted as lost above; the order, per channel:
                by_channel: dict[str, list[tuple[int, int]]] = {}
                for i in inbox:
                    by_channel.setdefault(i["channel"], []).append((i["seq"], i["round"]))
                for rows in by_channel.values():
                    rows.sort()
                    o.out_of_order += sum(1 for (_, a), (_, b) in itertools.pairwise(rows) if b < a)
        o.outbox_left = sum(s["outbox"] for s in states.values())


# -- the table ---------------------------------------------------------------------


@contextlib.contextmanager
def fixtures(root: Path, stores: list[str]) -> Iterator[dict[str, Fixture]]:
    made: dict[str, Fixture] = {}
    try:
        for store in stores:
            made[store] = Fixture(root / store, store)
        yield made
    finally:
        for f in made.values():
            f.close()


def run(
    trials: int, faults: list[str], stores: list[str], seed: int, out: Path | None
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="bc-faults-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # a private cluster may run as another user (postgres)
        why = pgcluster.unavailable() if "postgres" in stores else None
        if why:
            print(f"postgres: skipped ({why})", file=sys.stderr)
            stores = [s for s in stores if s != "postgres"]
        with fixtures(root, stores) as made:
            for fault in faults:
                for store in stores:
                    if not applies(fault, store):
                        continue
                    for i in range(trials):
                        o = Trial(made[store], fault, seed * 100_000 + i).run()
                        outcomes.append(o)
                        mark = "ok" if o.ok else "FAIL"
                        print(
                            f"{fault:12} {store:8} #{i:3} {mark} acked={o.acknowledged} "
                            f"lost={o.lost} dup={o.duplicated} ooo={o.out_of_order} "
                            f"unreceipted={o.unreceipted} events={o.events} "
                            f"errors={o.relay_errors} 5xx={o.http_5xx} store={o.store_refusals} "
                            f"{o.seconds}s {o.error}",
                            file=sys.stderr,
                            flush=True,
                        )
                        if out is not None:
                            write_csv(out, outcomes)
    return outcomes


def write_csv(path: Path, outcomes: list[Outcome]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        names = [*asdict(outcomes[0]).keys(), "ok"]
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        for o in outcomes:
            w.writerow({**asdict(o), "ok": o.ok})


def table(outcomes: list[Outcome]) -> str:
    """The Markdown table of docs/reliability.md: one row per fault and store."""
    rows = [
        "| fault | store | trials | acknowledged | lost | duplicated | out of order "
        "| unreceipted at end | fault events | device requests that failed | 5xx answers "
        "| store refusals | failed trials | s per trial |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.fault, o.store), []).append(o)
    for (fault, store), os_ in groups.items():
        n = len(os_)
        rows.append(
            f"| {fault} | {store} | {n} | {sum(o.acknowledged for o in os_):,} "
            f"| {sum(o.lost for o in os_)} | {sum(o.duplicated for o in os_)} "
            f"| {sum(o.out_of_order for o in os_)} | {sum(o.unreceipted for o in os_)} "
            f"| {sum(o.events for o in os_):,} | {sum(o.relay_errors for o in os_):,} "
            f"| {sum(o.http_5xx for o in os_):,} | {sum(o.store_refusals for o in os_):,} "
            f"| {sum(1 for o in os_ if not o.ok)} "
            f"| {sum(o.seconds for o in os_) / n:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--faults", default="all", help="comma-separated, or 'all'")
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--csv", type=Path, default=None, help="every trial's row")
    args = p.parse_args(argv)
    # A stopped run still stops its private cluster and removes its files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    faults = list(FAULTS) if args.faults == "all" else args.faults.split(",")
    unknown = set(faults) - set(FAULTS)
    if unknown:
        p.error(f"unknown faults: {', '.join(sorted(unknown))}")
    outcomes = run(args.trials, faults, args.stores.split(","), args.seed, args.csv)
    print(table(outcomes))
    return 0 if outcomes and all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
