"""Dataclasses back from the plain JSON that ``to_plain`` made (for recordings and replay).

The inverse of :func:`infermon.probes.snapshot.to_plain`, driven by the dataclasses' own type
hints: nested dataclasses, tuples, optional fields. Unknown keys are ignored and missing ones take
their defaults, so an older or newer recording still loads; a wrong type raises PlainError.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import lru_cache
from typing import Any, Union


class PlainError(ValueError):
    """Data that does not fit the dataclass it should become."""


@lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_plain(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from JSON-ready ``data``."""
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        errors = []
        for option in options:
            try:
                return from_plain(option, data)
            except (PlainError, TypeError, ValueError) as exc:
                errors.append(exc)
        raise PlainError(f"no type of {tp} fits {type(data).__name__}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise PlainError(f"{tp.__name__} needs an object, not {type(data).__name__}")
        hints = _hints(tp)
        values = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                values[f.name] = from_plain(hints[f.name], data[f.name])
        try:
            return tp(**values)
        except TypeError as exc:
            raise PlainError(f"{tp.__name__}: {exc}") from None
    if origin is tuple:
        if not isinstance(data, list):
            raise PlainError(f"a tuple needs a list, not {type(data).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v) for v in data)
        if args and len(args) != len(data):
            raise PlainError("tuple of the wrong length")
        return tuple(from_plain(a, v) for a, v in zip(args, data)) if args else tuple(data)
    if origin is dict:
        if not isinstance(data, dict):
            raise PlainError(f"a mapping needs an object, not {type(data).__name__}")
        key_type, value_type = (typing.get_args(tp) + (Any, Any))[:2]
        return {k: from_plain(value_type, v) for k, v in data.items()}
    if origin is list:
        return [from_plain(typing.get_args(tp)[0], v) for v in data]
    if tp is Any:
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise PlainError(f"expected a number, not {type(data).__name__}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, (int, float)) or int(data) != data:
            raise PlainError(f"expected an integer, not {data!r}")
        return int(data)
    if tp is bool:
        if not isinstance(data, bool):
            raise PlainError(f"expected true/false, not {data!r}")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise PlainError(f"expected text, not {type(data).__name__}")
        return data
    if tp is dict or tp is type(None):
        return data
    return data
