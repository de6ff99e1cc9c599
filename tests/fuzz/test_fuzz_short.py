"""The short form of ``make fuzz``, run by ``make test``: every decoder's seeds and
kept corpus replayed, then a few hundred deterministic mutations of them.

No atheris needed: the same targets (``tests/fuzz/targets.py``) run in plain
Python. A decoder that raises anything but its documented error, or whose
accepted input does not re-encode to the same bytes, fails here.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from backchannel.errors import DecodeError, RemoteProtocolError
from tests.fuzz.targets import TARGETS, Target, _canonical

HERE = Path(__file__).parent
MUTATIONS = 3000


def _inputs(folder: Path) -> list[bytes]:
    return [f.read_bytes() for f in sorted(folder.iterdir())] if folder.is_dir() else []


def _mutate(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(6)
        pos = rnd.randint(0, len(b))
        if op == 0 and b:
            b[min(pos, len(b) - 1)] ^= 1 << rnd.randrange(8)
        elif op == 1:
            del b[pos : pos + rnd.randint(1, 16)]
        elif op == 2:
            b[pos:pos] = rnd.randbytes(rnd.randint(1, 8))
        elif op == 3:
            del b[pos:]
        elif op == 4 and len(b) >= 4:
            # an interesting integer over a length or count field
            value = rnd.choice([0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFFFF])
            width = rnd.choice([1, 2, 4])
            at = min(pos, len(b) - width)
            b[at : at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
        else:
            b += bytes(rnd.randint(1, 8))
    return bytes(b)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_are_accepted_and_round_trip(name: str) -> None:
    """Every seed is a valid encoding: the target's deep path (and round trip) runs on it."""
    seeds = _inputs(HERE / "seeds" / name)
    assert seeds, f"no seeds for {name}: run python -m tests.fuzz.seeds"
    for seed in seeds:
        TARGETS[name].run(seed)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_corpus_and_mutations_keep_the_contract(name: str) -> None:
    target = TARGETS[name]
    known = [
        *_inputs(HERE / "seeds" / name),
        *_inputs(HERE / "corpus" / name),
        *_inputs(HERE / "regressions" / name),
    ]
    for data in known:
        target.check(data)
    rnd = random.Random(f"short-fuzz/{name}")
    for _ in range(MUTATIONS):
        target.check(_mutate(rnd, rnd.choice(known)))
    for _ in range(25):
        target.check(rnd.randbytes(rnd.randint(0, 300)))


# -- the harness itself can fail ----------------------------------------------------------


def test_a_stray_exception_escapes_the_check() -> None:
    def decoder(data: bytes) -> None:
        if data == b"boom":
            raise IndexError("index out of range")
        raise DecodeError("malformed")

    target = Target("stray", decoder, (DecodeError,))
    target.check(b"other")
    with pytest.raises(IndexError):
        target.check(b"boom")


def test_a_wider_family_is_not_allowed_where_decode_error_is_documented() -> None:
    def decoder(data: bytes) -> None:
        raise RemoteProtocolError("not a DecodeError")

    with pytest.raises(RemoteProtocolError):
        Target("narrow", decoder, (DecodeError,)).check(b"x")


def test_a_non_canonical_decoder_is_caught() -> None:
    """A decoder that accepts trailing bytes its encoder never writes breaks the round trip."""
    run = _canonical(lambda raw: raw[:1], lambda value: value, "lenient")
    run(b"a")
    with pytest.raises(AssertionError, match="re-encoding differs"):
        run(b"ab")


def test_inputs_are_cut_at_the_target_limit() -> None:
    seen: list[int] = []
    Target("limit", lambda d: seen.append(len(d)), (DecodeError,), max_len=10).check(bytes(50))
    assert seen == [10]
