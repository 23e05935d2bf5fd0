"""What each person's App Home tab shows: the view views.publish last published for them (slack_home.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


@dataclass
class HomeTabs:
    """Each person's published Home tab, and a count of publishes per person that callers can wait on."""

    tabs: dict[str, Json] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    _next: dict[str, asyncio.Event] = field(default_factory=dict)

    def version(self, user_id: str) -> int:
        return self.versions.get(user_id, 0)

    def external_ids(self, but: str) -> set[str]:
        return {str(tab["external_id"]) for user, tab in self.tabs.items() if user != but and tab["external_id"]}

    def next_publish(self, user_id: str) -> asyncio.Event:
        """Set by the next publish of the person's tab."""
        return self._next.setdefault(user_id, asyncio.Event())

    def publish(self, user_id: str, view: Json) -> None:
        self.tabs[user_id] = view
        self.versions[user_id] = self.version(user_id) + 1
        waiting = self._next.pop(user_id, None)
        if waiting is not None:
            waiting.set()
