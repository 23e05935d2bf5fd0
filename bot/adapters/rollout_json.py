"""Domain dataclasses <-> JSON, so a rollout row holds the whole rollout and the domain stays plain Python.

Generic over the dataclasses the rollout is made of (field types read from their annotations), so adding
a field to the domain needs no change here; an old row missing a field gets the field's default.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from datetime import datetime
from typing import Any, TypeVar

from bot.domain.rollout import Rollout

T = TypeVar("T")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(kind: Any, value: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _build(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], item) for item in value)
        return tuple(_build(arg, item) for arg, item in zip(args, value, strict=True))
    if origin is dict:
        key_type, value_type = typing.get_args(kind)
        return {_build(key_type, k): _build(value_type, v) for k, v in value.items()}
    if origin is typing.Literal:
        return value
    if isinstance(kind, type):
        if dataclasses.is_dataclass(kind):
            hints = _hints(kind)
            known = {f.name for f in dataclasses.fields(kind)}
            return kind(**{name: _build(hints[name], item) for name, item in value.items() if name in known})
        if issubclass(kind, enum.Enum):
            return kind(value)
        if kind is datetime:
            return datetime.fromisoformat(value)
        if kind is float:
            return float(value)
    return value


def dumps(rollout: Rollout) -> str:
    return json.dumps(_plain(rollout), sort_keys=True)


def loads(text: str) -> Rollout:
    built: Rollout = _build(Rollout, json.loads(text))
    return built


def encode(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True)


def decode(kind: type[T], text: str) -> T:
    built: T = _build(kind, json.loads(text))
    return built
