"""google-cloud-logging (HTTP) for a revision's evidence: its newest ERROR entries, and counts of entries
matching a service's log-based checks.

The client is synchronous; every listing runs in a worker thread, and stops as soon as it has what was
asked for (`max_results`), so a noisy revision costs one page, not its whole history.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError

from bot.environment import Environment

MAX_PAGE_SIZE = 1000  # Logging's limit per entries.list call
NEWEST_FIRST = "timestamp desc"
T = TypeVar("T")


@dataclass(frozen=True)
class LogLine:
    at: datetime
    severity: str
    text: str  # textPayload, jsonPayload.message, or a summary of httpRequest


class LogsUnavailable(Exception):
    """Cloud Logging could not be read or refused the query; the message is one line fit for Slack."""


def _quoted(value: str) -> str:
    """A string literal of the Logging query language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rfc3339(moment: datetime) -> str:
    """UTC with microseconds; a naive datetime is taken to be UTC already."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LogsGateway:
    def __init__(self, project: str, region: str, env: Environment) -> None:
        self.project = project
        self.region = region
        self.env = env
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """Built on first use: the library's import costs start-up time and memory no command needs."""
        with self._lock:
            if self._client is None:
                from google.cloud import logging

                anonymous = AnonymousCredentials() if self.env.anonymous_google else None  # type: ignore[no-untyped-call]
                options = {"api_endpoint": self.env.logging_endpoint} if self.env.logging_endpoint else None
                self._client = logging.Client(  # type: ignore[no-untyped-call]
                    project=self.project, credentials=anonymous, _use_grpc=False, client_options=options)
            return self._client

    def _revision_filter(self, service: str, revision: str, start: datetime, end: datetime) -> str:
        return (f'resource.type="cloud_run_revision" AND resource.labels.service_name={_quoted(service)} AND '
                f"resource.labels.revision_name={_quoted(revision)} AND "
                f"resource.labels.location={_quoted(self.region)} AND "
                f'timestamp>="{_rfc3339(start)}" AND timestamp<"{_rfc3339(end)}"')

    async def errors(self, service: str, revision: str, start: datetime, end: datetime, limit: int) -> list[LogLine]:
        """The revision's entries at ERROR or above in [start, end), newest first, at most `limit`."""
        if limit <= 0:
            return []
        query = f"{self._revision_filter(service, revision, start, end)} AND severity>=ERROR"

        def fetch() -> list[LogLine]:
            entries = self.client.list_entries(filter_=query, order_by=NEWEST_FIRST,
                                               page_size=min(limit, MAX_PAGE_SIZE), max_results=limit)
            return [_line(entry) for entry in entries]

        return await self._listed(fetch, query=None)

    async def count(self, service: str, revision: str, query: str, start: datetime, end: datetime, cap: int) -> int:
        """Entries of the revision in [start, end) that match the user's `query`, counted up to `cap`."""
        if cap <= 0:
            return 0
        combined = self._revision_filter(service, revision, start, end)
        if query.strip():  # on lines of its own, so a trailing `-- comment` cannot swallow what follows
            combined = f"(\n{query}\n) AND {combined}"

        def fetch() -> int:
            entries = self.client.list_entries(filter_=combined, page_size=min(cap, MAX_PAGE_SIZE), max_results=cap)
            return sum(1 for _ in entries)

        return await self._listed(fetch, query=query)

    async def _listed(self, fetch: Callable[[], T], *, query: str | None) -> T:
        try:
            result = await asyncio.to_thread(fetch)
        except exceptions.GoogleAPICallError as exc:
            subject = f"the query {query!r}" if query is not None else "the query"
            raise LogsUnavailable(f"Cloud Logging refused {subject}: {_message(exc)}") from None
        except (requests.RequestException, GoogleAuthError) as exc:
            raise LogsUnavailable(f"Cloud Logging did not answer ({_reason(exc)})") from None
        return result


def _line(entry: Any) -> LogLine:
    payload = entry.payload
    if isinstance(payload, str):
        text = payload
    elif isinstance(payload, Mapping):
        message = payload.get("message")
        text = message if isinstance(message, str) else json.dumps(payload, sort_keys=True, default=str)
    elif isinstance(entry.http_request, Mapping):
        text = _request_summary(entry.http_request)
    else:
        text = ""
    return LogLine(entry.timestamp, entry.severity or "DEFAULT", text)


def _request_summary(request: Mapping[str, Any]) -> str:
    """How Logs Explorer summarises a request log: method, status, latency, URL."""
    parts = [request.get("requestMethod"), request.get("status"), request.get("latency"), request.get("requestUrl")]
    return " ".join(str(part) for part in parts if part not in (None, ""))


def _message(error: Any) -> str:
    """Google's own message, without the method and URL google-api-core prefixes it with."""
    try:
        return str(error.response.json()["error"]["message"]).splitlines()[0][:300]
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return _reason(error)


def _reason(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
