"""The published figures each emulator enforces (quotas, delays, minimum periods, rate tiers), in one place.

Each emulator owns a group: a mutable dataclass whose defaults are Google's or Slack's published
figures, each field's docstring-comment naming its source. The world registers the groups, and the
control API reads and changes them (`GET /limits`, `PATCH /limits/<group>`), so a test or a bench can
say "Logging allows 5 reads a minute now" without the emulator knowing who asked.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class LimitError(ValueError):
    """A change the control API refuses; the message names the group and field."""


class Limits:
    """Named groups of figures; an emulator keeps a reference to its group and reads it on every request."""

    def __init__(self) -> None:
        self._groups: dict[str, Any] = {}

    def register(self, name: str, group: Any) -> None:
        if not dataclasses.is_dataclass(group) or isinstance(group, type):
            raise TypeError(f"limit group {name!r} must be a dataclass instance")
        self._groups[name] = group

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(group) for name, group in sorted(self._groups.items())}

    def patch(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some figures of one group; all or nothing. Returns the group as it is now."""
        group = self._groups.get(name)
        if group is None:
            raise LimitError(f"no limit group {name!r}; known: {', '.join(sorted(self._groups))}")
        fields = {f.name: f for f in dataclasses.fields(group)}
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in fields:
                raise LimitError(f"{name} has no figure {key!r}; known: {', '.join(sorted(fields))}")
            current = getattr(group, key)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise LimitError(f"{name}.{key} is true or false")
            elif isinstance(current, int | float):
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise LimitError(f"{name}.{key} is a number >= 0")
                value = float(value) if isinstance(current, float) else int(value)
            checked[key] = value
        for key, value in checked.items():
            setattr(group, key, value)
        return dataclasses.asdict(group)
