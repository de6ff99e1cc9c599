"""Persist frozen protocol dataclasses as JSON inside the encrypted vault.

Type-directed: the dataclass field annotations say how each value is encoded
(bytes as hex, enums by value, tuples and lists element-wise), so decoding a
record rebuilds exactly the objects that were stored. The vault authenticates
every record, so this never parses untrusted input; it still refuses anything
that does not match the annotations.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from backchannel.errors import CorruptKeystore

T = TypeVar("T")


def to_jsonable(value: Any) -> Any:
    t: Any = type(value)
    if t is bytes:
        return value.hex()
    if t is str or t is int or t is bool or t is float or value is None:
        return value
    if t is tuple or t is list:
        return [to_jsonable(v) for v in value]
    names = _init_names(t)
    if names is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (int, str, bool, float)):
        return value
    raise TypeError(f"cannot persist {type(value).__name__}")


@functools.cache
def _init_names(tp: Any) -> tuple[str, ...] | None:
    """A dataclass's init field names, or None for any other type."""
    if not dataclasses.is_dataclass(tp):
        return None
    return tuple(f.name for f in dataclasses.fields(tp) if f.init)


def from_jsonable(tp: Any, data: Any) -> Any:
    return _decoder(tp)(data)


Decoder = Callable[[Any], Any]


@functools.cache
def _decoder(tp: Any) -> Decoder:
    """The function that rebuilds a ``tp`` from its JSON form, built once per type.

    Walking the annotations for every value (``typing.get_origin`` at each
    node) cost more than the JSON parse; the walk is done once here instead.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = _decoder(next(a for a in args if a is not type(None)))
        if type(None) not in args:
            return inner
        return lambda data: None if data is None else inner(data)
    if tp is bytes:
        return bytes.fromhex
    if tp in (int, str, bool, float):
        return functools.partial(_scalar, tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return typing.cast(Decoder, tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0])
            return lambda data: tuple(item(v) for v in data)
        items = tuple(_decoder(a) for a in args)
        return lambda data: tuple(f(v) for f, v in zip(items, data, strict=True))
    if origin is list:
        item = _decoder(args[0])
        return lambda data: [item(v) for v in data]
    if origin is dict:
        value = _decoder(args[1])
        return lambda data: {k: value(v) for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        return functools.partial(_dataclass, typing.cast(type, tp))
    return functools.partial(_unknown, tp)


def _scalar(tp: type, data: Any) -> Any:
    if not isinstance(data, tp):
        raise CorruptKeystore("a stored record does not have the expected shape")
    return data


def _dataclass(tp: type, data: Any) -> Any:
    kwargs = {name: f(data[name]) for name, f in _field_decoders(tp) if name in data}
    return typing.cast(Any, tp)(**kwargs)


@functools.cache
def _field_decoders(tp: type) -> tuple[tuple[str, Decoder], ...]:
    # Built at the first value, not with the dataclass's decoder, so that a
    # dataclass may name itself among its fields' types.
    return tuple((name, _decoder(hint)) for name, hint in _fields(tp))


def _unknown(tp: Any, data: Any) -> Any:
    raise TypeError(f"cannot restore {tp!r}")


@functools.cache
def _fields(tp: type) -> tuple[tuple[str, Any], ...]:
    """A dataclass's init fields with their resolved types (resolving them is slow)."""
    hints = typing.get_type_hints(tp)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(tp) if f.init)


def dumps(value: Any) -> bytes:
    return json.dumps(to_jsonable(value), separators=(",", ":")).encode()


def loads(tp: type[T], raw: bytes) -> T:
    try:
        return typing.cast(T, from_jsonable(tp, json.loads(raw)))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptKeystore(
            f"a stored record cannot be read ({type(exc).__name__}); restore the home from backup"
        ) from None


#: The first byte of a record with bytes kept raw after its JSON
#: (:func:`dumps_beside`); a record of :func:`dumps` begins with ``{``.
BESIDE = 0x01


def dumps_beside(value: Any, raw: bytes) -> bytes:
    """``value`` as :func:`dumps` writes it, and ``raw`` after it as it is.

    For the bytes that make most of a record (a 4 KiB cell): as hex in the
    JSON they would take twice their size on disk, and twice the work.
    """
    meta = dumps(value)
    return bytes([BESIDE]) + len(meta).to_bytes(4, "big") + meta + raw


def loads_beside(tp: type[T], raw: bytes) -> tuple[T, bytes | None]:
    """A record of :func:`dumps_beside`: the value and the bytes after it; a
    record of :func:`dumps` (one kept before): the value and None."""
    if raw[:1] != bytes([BESIDE]):
        return loads(tp, raw), None
    size = int.from_bytes(raw[1:5], "big")
    if len(raw) < 5 + size:
        raise CorruptKeystore("a stored record is cut short; restore the home from backup")
    return loads(tp, raw[5 : 5 + size]), raw[5 + size :]


def immutable(tp: Any) -> bool:
    """Whether every value :func:`loads` makes of ``tp`` is immutable: frozen
    dataclasses, tuples, bytes, numbers, strings and enums, no list or dict."""
    return _is_immutable(tp)


@functools.cache
def _is_immutable(tp: Any) -> bool:
    return _immutable(tp, frozenset())


def _immutable(tp: Any, seen: frozenset[Any]) -> bool:
    if tp in seen:
        return True
    origin = typing.get_origin(tp)
    if origin in (list, dict):
        return False
    if origin is not None:
        return all(_immutable(a, seen) for a in typing.get_args(tp) if a is not Ellipsis)
    if dataclasses.is_dataclass(tp):
        params = getattr(tp, "__dataclass_params__", None)
        if params is None or not params.frozen:
            return False
        return all(_immutable(h, seen | {tp}) for _, h in _fields(typing.cast(type, tp)))
    return tp in (bytes, int, str, bool, float, type(None)) or (
        isinstance(tp, type) and issubclass(tp, enum.Enum)
    )
