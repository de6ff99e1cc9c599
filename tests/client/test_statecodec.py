"""The vault's record codec: what it stores comes back equal, and a wrong shape is refused."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pytest

from backchannel.client import statecodec
from backchannel.client.records import NetOut, dump_out, load_out
from backchannel.errors import CorruptKeystore


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True, slots=True)
class Leaf:
    name: str
    data: bytes
    level: Level = Level.LOW


@dataclass(frozen=True, slots=True)
class Tree:
    leaf: Leaf
    children: tuple[Tree, ...] = ()
    pair: tuple[int, bytes] = (0, b"")
    maybe: bytes | None = None
    colours: list[Colour] = field(default_factory=list)
    table: dict[str, int] = field(default_factory=dict)
    flag: bool = False
    ratio: float = 0.5
    derived: int = field(default=7, init=False)


def _sample() -> Tree:
    return Tree(
        Leaf("root", b"\x00\xff", Level.HIGH),
        children=(Tree(Leaf("a", b"")), Tree(Leaf("b", b"\x01"), maybe=b"\x02")),
        pair=(3, b"\x10\x20"),
        maybe=None,
        colours=[Colour.BLUE, Colour.RED],
        table={"x": 1, "y": 2},
        flag=True,
        ratio=0.25,
    )


def test_a_record_comes_back_equal() -> None:
    tree = _sample()
    raw = statecodec.dumps(tree)
    back = statecodec.loads(Tree, raw)
    assert back == tree
    assert type(back.leaf.level) is Level and back.colours[0] is Colour.BLUE
    assert statecodec.dumps(back) == raw


def test_the_stored_form_is_plain_json_of_the_init_fields() -> None:
    raw = statecodec.dumps(Leaf("n", b"\xab", Level.HIGH))
    assert raw == b'{"name":"n","data":"ab","level":2}'
    assert b"derived" not in statecodec.dumps(_sample())


def test_a_missing_field_with_a_default_takes_it() -> None:
    assert statecodec.loads(Leaf, b'{"name":"n","data":""}') == Leaf("n", b"")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name":1,"data":""}',  # a number where a string belongs
        b'{"name":"n","data":"zz"}',  # not hex
        b'{"name":"n","data":3}',  # not a string at all
        b'{"data":""}',  # a required field missing
        b'{"name":"n","data":"","level":9}',  # no such level
        b"[1, 2]",  # not an object
        b"{",  # not JSON
    ],
)
def test_a_wrong_shape_is_refused(raw: bytes) -> None:
    with pytest.raises(CorruptKeystore):
        statecodec.loads(Leaf, raw)


def test_a_fixed_tuple_of_the_wrong_length_is_refused() -> None:
    good = statecodec.dumps(_sample()).decode()
    bad = good.replace('"pair":[3,"1020"]', '"pair":[3,"1020",4]')
    assert bad != good
    with pytest.raises(CorruptKeystore):
        statecodec.loads(Tree, bad.encode())


def test_a_value_it_cannot_persist_is_refused() -> None:
    with pytest.raises(TypeError):
        statecodec.dumps(object())


@dataclass(slots=True)
class Loose:
    name: str


@dataclass(frozen=True, slots=True)
class WithList:
    names: list[str]


@dataclass(frozen=True, slots=True)
class Nested:
    inner: WithList | None = None


def test_only_records_that_cannot_change_count_as_immutable() -> None:
    assert statecodec.immutable(Leaf)
    assert not statecodec.immutable(Tree)  # a list and a dict among its fields
    assert not statecodec.immutable(Loose)  # not frozen
    assert not statecodec.immutable(WithList)
    assert not statecodec.immutable(Nested)  # a list one level down
    assert statecodec.immutable(tuple[bytes, ...]) and not statecodec.immutable(list[bytes])


def test_bytes_kept_beside_come_back_raw_and_a_record_from_before_still_reads() -> None:
    cell = bytes(range(256)) * 16
    out = NetOut("https://relay.example", "mission-a", b"\x01" * 32, cell, b"\x02" * 32, 7, b"ch")
    raw = dump_out(out)
    # The cell raw, beside a short JSON of the rest: not twice its size in hex.
    assert raw[0] == statecodec.BESIDE and raw.endswith(cell)
    assert len(raw) < len(cell) + 300 < len(statecodec.dumps(out)) // 2 + 300
    assert load_out(NetOut, raw) == out
    # A record written before (JSON, the cell in hex) reads the same.
    assert load_out(NetOut, statecodec.dumps(out)) == out
    # Cut short, or with a length past its end, it is refused, not misread.
    for broken in (raw[:3], raw[:1] + (10**6).to_bytes(4, "big") + raw[5:]):
        with pytest.raises(CorruptKeystore):
            load_out(NetOut, broken)
