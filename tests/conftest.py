"""Shared fixtures: deterministic randomness and paired missions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import settings

from backchannel.client.harness import MissionKit, Pair

# No per-example deadline: speed is measured in bench/, never in tests, and on a
# shared, loaded machine (or under mutmut's trampolines) a 200 ms deadline fails
# examples that are merely slow.
settings.register_profile("backchannel", deadline=None)
settings.load_profile("backchannel")


class DetRng:
    """Deterministic bytes from a seed (SHAKE-256 in counter mode), for tests only."""

    def __init__(self, seed: bytes | str = b"backchannel-tests") -> None:
        self.seed = seed.encode() if isinstance(seed, str) else seed
        self.counter = 0

    def __call__(self, n: int) -> bytes:
        self.counter += 1
        return hashlib.shake_256(self.seed + self.counter.to_bytes(8, "big")).digest(n)


@pytest.fixture
def rng() -> DetRng:
    return DetRng()


def make_pair(rng: Callable[[int], bytes], k: int = 2, n: int = 2, **kw: int) -> Pair:
    ny = MissionKit.create("New York", [f"NY officer {i}" for i in range(n)], k, rng)
    dc = MissionKit.create("Washington", [f"DC officer {i}" for i in range(n)], k, rng)
    return Pair(ny, dc, rng=rng, **kw)


@pytest.fixture
def pair(rng: DetRng) -> Pair:
    return make_pair(rng)


@pytest.fixture
def pair23(rng: DetRng) -> Pair:
    return make_pair(rng, k=2, n=3)
