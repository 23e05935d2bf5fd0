"""google-cloud-logging (HTTP) for the candidates' evidence: their request logs and error lines, read for
every rollout due in a tick in one query, and counts of entries matching a service's log-based checks.

Cloud Logging allows a project few `entries.list` calls a minute (https://cloud.google.com/logging/quotas),
and a busy revision writes a request log per request: so one query covers every window, request logs are
thinned with the query language's `sample(insertId, f)` when there are many, and a read stops after a few
pages and says how far it got. Past the quota Google answers 429 RESOURCE_EXHAUSTED: `LogsQuotaExceeded`.

The client is synchronous; every listing runs in a worker thread, and stops as soon as it has what was
asked for, so a noisy revision costs one page, not its whole history. The listing is cut with `islice`
rather than `max_results`: google-cloud-logging's pager fetches the next page before it looks at
`max_results`, one wasted read of the quota whenever a page is exactly full.

A log line is whatever the revision wrote: it is quoted in Slack as evidence, so it leaves here escaped for
mrkdwn (bot/render/mrkdwn.py), as do Google's messages; a line holding `<!channel>` must not ping anyone.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar
from urllib.parse import unquote

import requests
from google.api_core import exceptions
from google.auth.exceptions import GoogleAuthError

from bot.adapters.google_clients import credentials
from bot.environment import Environment
from bot.render.mrkdwn import escape

MAX_PAGE_SIZE = 1000  # Logging's limit per entries.list call
NEWEST_FIRST = "timestamp desc"
T = TypeVar("T")


@dataclass(frozen=True)
class LogLine:
    at: datetime
    severity: str
    text: str  # textPayload, jsonPayload.message, or a summary of httpRequest; escaped for mrkdwn


class LogsUnavailable(Exception):
    """Cloud Logging could not be read or refused the query; the message is one line fit for Slack."""


class LogsQuotaExceeded(LogsUnavailable):
    """429 RESOURCE_EXHAUSTED: the project's read quota is spent for now; reading again soon only spends more."""


REQUEST_LOG = "run.googleapis.com/requests"
DEFAULT_ERRORS = "severity>=ERROR"


@dataclass(frozen=True)
class EvidenceWindow:
    """One candidate's part of a batched read: its entries in [since, until), and what counts as its errors."""

    service: str
    revision: str
    since: datetime
    until: datetime
    errors: str = DEFAULT_ERRORS


@dataclass(frozen=True)
class Evidence:
    """What one batched read found, by revision. `read_until` is how far the read got in time: `until`, unless
    the page limit stopped it earlier (entries are read oldest first, so everything before it was seen)."""

    requests: dict[str, list[tuple[int, float]]]  # revision -> (status, latency ms) of each sampled request
    errors: dict[str, list[str]]  # revision -> error lines, newest first
    read_until: datetime | None
    pages: int


def _quoted(value: str) -> str:
    """A string literal of the Logging query language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rfc3339(moment: datetime) -> str:
    """UTC with microseconds; a naive datetime is taken to be UTC already."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LogsGateway:
    def __init__(self, project: str, region: str, env: Environment, *, timeout: float = 10.0) -> None:
        self.project = project
        self.region = region
        self.env = env
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """Built on first use: the library's import costs start-up time and memory no command needs."""
        with self._lock:
            if self._client is None:
                from google.cloud import logging

                options = {"api_endpoint": self.env.logging_endpoint} if self.env.logging_endpoint else None
                self._client = logging.Client(  # type: ignore[no-untyped-call]
                    project=self.project, credentials=credentials(self.env), _use_grpc=False, client_options=options)
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
                                               page_size=min(limit, MAX_PAGE_SIZE))
            return [_line(entry) for entry in islice(entries, limit)]

        return await self._listed(fetch, query=None)

    async def count(self, service: str, revision: str, query: str, start: datetime, end: datetime, cap: int) -> int:
        """Entries of the revision in [start, end) that match the user's `query`, counted up to `cap`."""
        if cap <= 0:
            return 0
        combined = self._revision_filter(service, revision, start, end)
        if query.strip():  # on lines of its own, so a trailing `-- comment` cannot swallow what follows
            combined = f"(\n{query}\n) AND {combined}"

        def fetch() -> int:
            entries = self.client.list_entries(filter_=combined, page_size=min(cap, MAX_PAGE_SIZE))
            return sum(1 for _ in islice(entries, cap))

        return await self._listed(fetch, query=query)

    async def served(self, service: str, revision: str, since: datetime, until: datetime) -> bool:
        """Whether Cloud Run logged a request answered by the revision in [since, until): it has served traffic."""
        return await self.count(service, revision, f"log_id({_quoted(REQUEST_LOG)})", since, until, 1) > 0

    def evidence_filter(self, windows: Sequence[EvidenceWindow], fraction: float) -> str:
        """One query for every window: each candidate's request logs (sampled) and its error lines."""
        sampled = f" AND sample(insertId, {fraction:.4g})" if fraction < 1 else ""
        branches = []
        for window in windows:
            branches.append(
                f"(resource.labels.service_name={_quoted(window.service)} AND "
                f"resource.labels.revision_name={_quoted(window.revision)} AND "
                f'timestamp>="{_rfc3339(window.since)}" AND timestamp<"{_rfc3339(window.until)}" AND '
                f"((log_id({_quoted(REQUEST_LOG)}){sampled}) OR (NOT log_id({_quoted(REQUEST_LOG)}) AND (\n"
                f"{window.errors}\n))))")
        earliest = min(w.since for w in windows)
        latest = max(w.until for w in windows)
        return (f'resource.type="cloud_run_revision" AND resource.labels.location={_quoted(self.region)} AND '
                f'timestamp>="{_rfc3339(earliest)}" AND timestamp<"{_rfc3339(latest)}" AND (\n'
                + "\nOR ".join(branches) + "\n)")

    async def evidence(self, windows: Sequence[EvidenceWindow], *, fraction: float, max_pages: int) -> Evidence:
        """Read every window in one query, oldest first, at most `max_pages` pages of 1,000 entries."""
        query = self.evidence_filter(windows, fraction)
        limit = max_pages * MAX_PAGE_SIZE

        def fetch() -> Evidence:
            entries = list(islice(self.client.list_entries(filter_=query, order_by="timestamp asc",
                                                           page_size=MAX_PAGE_SIZE), limit))
            pages = max(1, math.ceil(len(entries) / MAX_PAGE_SIZE))
            read_until = None
            if len(entries) >= limit:  # stopped by the page limit: keep whole timestamps for the next read
                read_until = entries[-1].timestamp
                entries = [entry for entry in entries if entry.timestamp < read_until]
            requests: dict[str, list[tuple[int, float]]] = {}
            errors: dict[str, list[str]] = {}
            for entry in entries:
                revision = (entry.resource.labels or {}).get("revision_name", "") if entry.resource else ""
                if unquote(entry.log_name).endswith(f"/logs/{REQUEST_LOG}") and isinstance(entry.http_request,
                                                                                           Mapping):
                    requests.setdefault(revision, []).append(_status_and_latency(entry.http_request))
                else:
                    errors.setdefault(revision, []).insert(0, _line(entry).text)
            return Evidence(requests, errors, read_until, pages)

        return await self._listed(fetch, query=None)

    async def _listed(self, fetch: Callable[[], T], *, query: str | None) -> T:
        """Run a listing in a thread, bounded by `timeout`: google-cloud-logging's own HTTP timeout is a minute,
        longer than a rollout's lease. A listing cut short finishes in its thread and is thrown away."""
        try:
            result = await asyncio.wait_for(asyncio.to_thread(fetch), self.timeout)
        except TimeoutError:
            raise LogsUnavailable(f"Cloud Logging did not answer within {self.timeout:g} s") from None
        except exceptions.TooManyRequests as exc:
            raise LogsQuotaExceeded(f"Cloud Logging's read quota is spent for now: {_message(exc)}") from None
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
    return LogLine(entry.timestamp, entry.severity or "DEFAULT", escape(text))


def _status_and_latency(request: Mapping[str, Any]) -> tuple[int, float]:
    """httpRequest.status and httpRequest.latency ("0.123s", a Duration in JSON) in milliseconds."""
    try:
        status = int(request.get("status", 0))
    except (TypeError, ValueError):
        status = 0
    latency = str(request.get("latency", "0s")).removesuffix("s")
    try:
        return status, float(latency) * 1000
    except ValueError:
        return status, 0.0


def _request_summary(request: Mapping[str, Any]) -> str:
    """How Logs Explorer summarises a request log: method, status, latency, URL."""
    parts = [request.get("requestMethod"), request.get("status"), request.get("latency"), request.get("requestUrl")]
    return " ".join(str(part) for part in parts if part not in (None, ""))


def _message(error: Any) -> str:
    """Google's own message, without the method and URL google-api-core prefixes it with."""
    try:
        return escape(str(error.response.json()["error"]["message"]).splitlines()[0][:300])
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return _reason(error)


def _reason(exc: BaseException) -> str:
    return escape((str(exc).splitlines() or [type(exc).__name__])[0][:200])
