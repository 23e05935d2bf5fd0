"""The log entries the sandbox's Cloud Logging holds, kept in Logging's order: timestamp, then insertId."""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sandbox.logfilter import compile_filter, timestamp_nanos

DEFAULT_WINDOW_NANOS = 24 * 3600 * 1_000_000_000
_LOG_NAME = re.compile(r"projects/([^/]+)/logs/[^/]+")

SortKey = tuple[int, str]


def sort_key(entry: dict[str, Any]) -> SortKey:
    """Where an entry sits in Logging's order: its timestamp (to the nanosecond), ties broken by insertId."""
    nanos = timestamp_nanos(str(entry.get("timestamp", "")))
    if nanos is None:
        raise ValueError(f"a LogEntry needs an RFC 3339 timestamp, got {entry.get('timestamp')!r}")
    insert_id = entry.get("insertId")
    if not isinstance(insert_id, str) or not insert_id:
        raise ValueError(f"a LogEntry needs an insertId, got {insert_id!r}")
    return nanos, insert_id


class LogStore:
    """Entries sorted on arrival, so a query reads them in order and starts, by binary search, at the
    oldest time its filter (or the default 24-hour window) allows."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._keys: list[SortKey] = []
        self._entries: list[tuple[str, dict[str, Any]]] = []  # (project, entry), parallel to _keys

    def append(self, entry: dict[str, Any]) -> None:
        """Keep a LogEntry exactly as Cloud Logging's JSON returns it; beyond capacity the oldest goes."""
        self._insert(entry)
        self._trim()

    def extend(self, entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:
            self._insert(entry)
        self._trim()

    def __len__(self) -> int:
        return len(self._entries)

    def select(
        self, resource_names: Sequence[str], filter_text: str, order_desc: bool
    ) -> list[dict[str, Any]]:
        """The entries of the named projects that match the filter, in timestamp order.

        Like Cloud Logging, a filter that says nothing about `timestamp` only searches the last 24 hours.
        Raises logfilter.FilterError for a filter Logging would refuse.
        """
        matches = compile_filter(filter_text)
        projects = {name.split("/")[1] for name in resource_names if name.startswith("projects/")}
        earliest = matches.earliest
        if "timestamp" not in matches.fields:
            earliest = time.time_ns() - DEFAULT_WINDOW_NANOS
        start = 0 if earliest is None else bisect.bisect_left(self._keys, (earliest, ""))
        found = [entry for project, entry in self._entries[start:] if project in projects and matches(entry)]
        if order_desc:
            found.reverse()
        return found

    def _insert(self, entry: dict[str, Any]) -> None:
        key = sort_key(entry)
        log_name = _LOG_NAME.fullmatch(str(entry.get("logName", "")))
        if log_name is None:
            raise ValueError(f"a LogEntry needs a logName projects/P/logs/L, got {entry.get('logName')!r}")
        at = bisect.bisect_right(self._keys, key)
        self._keys.insert(at, key)
        self._entries.insert(at, (log_name.group(1), entry))

    def _trim(self) -> None:
        excess = len(self._entries) - self.capacity
        if excess > 0:
            del self._keys[:excess]
            del self._entries[:excess]
