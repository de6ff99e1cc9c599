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
from typing import Any, TypeVar

from backchannel.errors import CorruptKeystore

T = TypeVar("T")


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (int, str, bool, float)):
        return value
    raise TypeError(f"cannot persist {type(value).__name__}")


def from_jsonable(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return from_jsonable(inner[0], data)
    if tp is bytes:
        return bytes.fromhex(data)
    if tp in (int, str, bool, float):
        if not isinstance(data, tp):
            raise CorruptKeystore("a stored record does not have the expected shape")
        return data
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(args[0], v) for v in data)
        return tuple(from_jsonable(a, v) for a, v in zip(args, data, strict=True))
    if origin is list:
        return [from_jsonable(args[0], v) for v in data]
    if origin is dict:
        return {k: from_jsonable(args[1], v) for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        kwargs = {
            name: from_jsonable(hint, data[name])
            for name, hint in _fields(typing.cast(type, tp))
            if name in data
        }
        return typing.cast(Any, tp)(**kwargs)
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
