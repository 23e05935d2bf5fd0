"""The log entries the sandbox's Cloud Logging holds, kept in Logging's order: timestamp, then insertId.

An entry is stamped with `receiveTimestamp` when it arrives (unless it already carries one, as a test's
history does) and becomes visible to queries only `ingestion_delay_s` after that, as in Logging, where an
entry is not searchable the instant it is written.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.cloudrun import rfc3339
from sandbox.logfilter import compile_filter, timestamp_nanos

DEFAULT_WINDOW_NANOS = 24 * 3600 * 1_000_000_000
_LOG_NAME = re.compile(r"projects/([^/]+)/logs/[^/]+")

SortKey = tuple[int, str]


@dataclass
class LoggingLimits:
    """Cloud Logging's figures, registered by the world as the limit group `logging`."""

    # https://cloud.google.com/logging/quotas#api-limits: "Number of entries.list requests: 60 per minute,
    # per Google Cloud project". Also the quota_limit_value Google returns in its quota errors
    # (snarfed/bridgy-fed#620: ReadRequestsPerMinutePerProject, "60").
    reads_per_minute: int = 60
    # Seconds between Logging receiving an entry and entries.list returning it. Google publishes no figure;
    # the nearest is TailLogEntriesRequest.buffer_window, which buffers "to prevent out of order results due
    # to late arriving log entries" and "Defaults to 2000 milliseconds" (https://cloud.google.com/dotnet/docs/
    # reference/Google.Cloud.Logging.V2/4.3.0/Google.Cloud.Logging.V2.TailLogEntriesRequest). An assumption.
    ingestion_delay_s: float = 2.0


def sort_key(entry: dict[str, Any]) -> SortKey:
    """Where an entry sits in Logging's order: its timestamp (to the nanosecond), ties broken by insertId."""
    nanos = timestamp_nanos(str(entry.get("timestamp", "")))
    if nanos is None:
        raise ValueError(f"a LogEntry needs an RFC 3339 timestamp, got {entry.get('timestamp')!r}")
    insert_id = entry.get("insertId")
    if not isinstance(insert_id, str) or not insert_id:
        raise ValueError(f"a LogEntry needs an insertId, got {insert_id!r}")
    return nanos, insert_id


@dataclass(frozen=True)
class _Stored:
    project: str
    received: int  # nanoseconds since the epoch
    entry: dict[str, Any]


class LogStore:
    """Entries sorted on arrival, so a query reads them in order and starts, by binary search, at the
    oldest time its filter (or the default 24-hour window) allows."""

    def __init__(self, capacity: int = 200_000, limits: LoggingLimits | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self.limits = limits or LoggingLimits()
        self.clock = clock
        self._keys: list[SortKey] = []
        self._stored: list[_Stored] = []  # parallel to _keys

    def append(self, entry: dict[str, Any]) -> None:
        """Keep a LogEntry exactly as Cloud Logging's JSON returns it; beyond capacity the oldest goes."""
        self._insert(entry)
        self._trim()

    def extend(self, entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:
            self._insert(entry)
        self._trim()

    def __len__(self) -> int:
        return len(self._stored)

    def select(
        self, resource_names: Sequence[str], filter_text: str, order_desc: bool
    ) -> list[dict[str, Any]]:
        """The visible entries of the named projects that match the filter, in timestamp order.

        Like Cloud Logging, a filter that says nothing about `timestamp` only searches the last 24 hours.
        Raises logfilter.FilterError for a filter Logging would refuse.
        """
        matches = compile_filter(filter_text)
        projects = {name.split("/")[1] for name in resource_names if name.startswith("projects/")}
        now = round(self.clock() * 1e9)
        earliest = matches.earliest
        if "timestamp" not in matches.fields:
            earliest = now - DEFAULT_WINDOW_NANOS
        received_by = now - round(self.limits.ingestion_delay_s * 1e9)
        start = 0 if earliest is None else bisect.bisect_left(self._keys, (earliest, ""))
        found = [stored.entry for stored in self._stored[start:]
                 if stored.project in projects and stored.received <= received_by and matches(stored.entry)]
        if order_desc:
            found.reverse()
        return found

    def _insert(self, entry: dict[str, Any]) -> None:
        key = sort_key(entry)
        log_name = _LOG_NAME.fullmatch(str(entry.get("logName", "")))
        if log_name is None:
            raise ValueError(f"a LogEntry needs a logName projects/P/logs/L, got {entry.get('logName')!r}")
        if "receiveTimestamp" not in entry:  # output only: Logging stamps it when the entry arrives
            entry = {**entry, "receiveTimestamp": rfc3339(self.clock())}
        received = timestamp_nanos(str(entry["receiveTimestamp"]))
        if received is None:
            raise ValueError(f"receiveTimestamp must be RFC 3339, got {entry['receiveTimestamp']!r}")
        at = bisect.bisect_right(self._keys, key)
        self._keys.insert(at, key)
        self._stored.insert(at, _Stored(log_name.group(1), received, entry))

    def _trim(self) -> None:
        excess = len(self._stored) - self.capacity
        if excess > 0:
            del self._keys[:excess]
            del self._stored[:excess]
