"""Cloud Logging v2 `entries:list` over REST, as google-cloud-logging's HTTP transport calls it.

The client POSTs `{"resourceNames", "filter", "orderBy", "pageSize", "pageToken"}` to /v2/entries:list
(it sends pageToken only from the second page on); the answer is `{"entries", "nextPageToken"}` with
empty fields left out, as Google's JSON does.

Before a call is answered it is charged to the consumer project's read quota (LoggingLimits.reads_per_minute),
and the caller must hold logging.logEntries.list on every parent it names ("Authorization requires one or
more of the following IAM permissions on the specified resource resourceNames",
https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox.access_tokens import AccessTokens, authenticated
from sandbox.faults import Faults
from sandbox.google_errors import GoogleError, google_errors
from sandbox.iam import Authorize, allow_all
from sandbox.logfilter import FilterError
from sandbox.logstore import LoggingLimits, LogStore, SortKey, sort_key

METHODS = ("ListLogEntries",)
"""LoggingServiceV2's RPC name for `entries.list`, as `POST /faults` takes it."""
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_RESOURCES = 100
MAX_FILTER_LENGTH = 20_000
_ORDERS = {"timestamp asc": False, "timestamp desc": True}
_RESOURCE_NAME = re.compile(
    r"(projects|organizations|folders|billingAccounts)/[^/]+(/locations/[^/]+/buckets/[^/]+/views/[^/]+)?"
)
# Proto3 JSON accepts a field by its JSON name or its proto name.
_FIELDS = {
    "resourceNames": "resource_names",
    "projectIds": "project_ids",
    "filter": "filter",
    "orderBy": "order_by",
    "pageSize": "page_size",
    "pageToken": "page_token",
}
_PROTO_NAMES = set(_FIELDS.values())


def _invalid(message: str) -> GoogleError:
    return GoogleError("INVALID_ARGUMENT", message)


@dataclass(frozen=True)
class ListRequest:
    resource_names: list[str]
    filter: str
    order_desc: bool
    page_size: int
    page_token: str

    @classmethod
    def from_json(cls, body: Any) -> ListRequest:
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received. Expected an object.")
        fields: dict[str, Any] = {}
        for name, value in body.items():
            if value is None:  # proto3 JSON: null is the default value
                continue
            proto_name = _FIELDS.get(name, name)
            if proto_name not in _PROTO_NAMES:
                raise _invalid(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
            fields[proto_name] = value
        projects = [f"projects/{project}" for project in _strings(fields, "project_ids")]
        names = _strings(fields, "resource_names") + projects
        if not names:
            raise _invalid("resource_names is required: name at least one parent, e.g. projects/my-project")
        if len(names) > MAX_RESOURCES:
            raise _invalid(f"At most {MAX_RESOURCES} resource_names may be given; got {len(names)}")
        for name in names:
            if not _RESOURCE_NAME.fullmatch(name):
                raise _invalid(f'Invalid resource name "{name}": expected projects/[PROJECT_ID], '
                               "organizations/[ID], folders/[ID] or billingAccounts/[ID]")
        filter_text = _string(fields, "filter")
        if len(filter_text) > MAX_FILTER_LENGTH:
            raise _invalid(f"The filter is {len(filter_text)} characters; the limit is {MAX_FILTER_LENGTH}")
        order = " ".join(_string(fields, "order_by").lower().split()) or "timestamp asc"
        if order not in _ORDERS:
            raise _invalid(f'Invalid order_by "{fields["order_by"]}": use one of {", ".join(_ORDERS)}')
        page_size = _int32(fields, "page_size") or DEFAULT_PAGE_SIZE
        if page_size < 0:
            raise _invalid(f"page_size must not be negative; got {page_size}")
        if page_size > MAX_PAGE_SIZE:
            raise _invalid(f"page_size must be at most {MAX_PAGE_SIZE}; got {page_size}")
        return cls(names, filter_text, _ORDERS[order], page_size, _string(fields, "page_token"))

    def query_digest(self) -> str:
        """What a page token is bound to: the same parents, filter and order as the call that issued it."""
        query = json.dumps([self.resource_names, self.filter, self.order_desc])
        return hashlib.sha256(query.encode()).hexdigest()[:24]


def _string(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name, "")
    if not isinstance(value, str):
        raise _invalid(f"Invalid value at '{name}' (TYPE_STRING), {json.dumps(value)}")
    return value


def _strings(fields: dict[str, Any], name: str) -> list[str]:
    value = fields.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(f"Invalid value at '{name}' (TYPE_STRING), {json.dumps(value)}")
    return value


def _int32(fields: dict[str, Any], name: str) -> int:
    """Proto3 JSON carries an int32 as a number or as a decimal string."""
    value = fields.get(name, 0)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not -(2**31) <= value < 2**31:
        raise _invalid(f"Invalid value at '{name}' (TYPE_INT32), {json.dumps(value)}")
    return value


def _page_token(request: ListRequest, last: SortKey) -> str:
    """Opaque to the caller: the query it belongs to and the last entry served, so a page resumes after
    that entry even if newer entries arrived meanwhile."""
    payload = json.dumps({"query": request.query_digest(), "after": list(last)})
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _resume_after(request: ListRequest) -> SortKey | None:
    if not request.page_token:
        return None
    try:
        padded = request.page_token + "=" * (-len(request.page_token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded))
        query, (nanos, insert_id) = payload["query"], payload["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise _invalid(f'Invalid page_token "{request.page_token}"') from None
    if query != request.query_digest() or not isinstance(nanos, int) or not isinstance(insert_id, str):
        raise _invalid("page_token doesn't match arguments from the request: resource_names, filter and "
                       "order_by must be those of the call that returned it")
    return nanos, insert_id


def _first_after(entries: list[dict[str, Any]], last: SortKey, order_desc: bool) -> int:
    """Index of the first entry past `last`; the list is sorted, so only log2(n) timestamps are parsed."""
    low, high = 0, len(entries)
    while low < high:
        middle = (low + high) // 2
        key = sort_key(entries[middle])
        if (key < last) if order_desc else (key > last):
            high = middle
        else:
            low = middle + 1
    return low


QUOTA_WINDOW_S = 60.0
REQUEST_INCREASE_URL = "https://cloud.google.com/docs/quotas/help/request_increase"


class ReadQuota:
    """Logging's per-project read quota (https://cloud.google.com/logging/quotas#api-limits), counted over a
    sliding 60 s window of the calls it let through.

    Google does not say whether a per-minute quota is a calendar minute or a sliding window; the sliding
    window is the stricter (a calendar minute lets 2x the limit through across a minute boundary) and is
    what Google documents for the per-minute quotas it does describe ("Quotas are calculated per minute
    using a sliding window", https://developers.google.com/calendar/api/guides/quota). Refused calls are not
    counted, so a client that backs off gets through once the window has moved on.
    """

    def __init__(self, limits: LoggingLimits, consumer_number: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.consumer_number = consumer_number
        self.clock = clock
        self._calls: deque[float] = deque()
        self.served = 0  # calls let through, since the start: what benches and `GET /state` count
        self.refused = 0  # calls answered 429

    def charge(self) -> None:
        now = self.clock()
        while self._calls and self._calls[0] <= now - QUOTA_WINDOW_S:
            self._calls.popleft()
        if len(self._calls) >= self.limits.reads_per_minute:
            self.refused += 1
            raise self.exceeded()
        self._calls.append(now)
        self.served += 1

    def exceeded(self) -> GoogleError:
        """Google's words and details for this quota, from the errors users have posted:
        DefangLabs/defang#1268 and #2020 (ErrorInfo metadata, Help link), snarfed/bridgy-fed#620."""
        consumer = self.consumer_number
        return GoogleError(
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service "
            f"'logging.googleapis.com' for consumer 'project_number:{consumer}'.",
            [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                 "domain": "googleapis.com", "metadata": {
                     "consumer": f"projects/{consumer}", "quota_limit": "ReadRequestsPerMinutePerProject",
                     "quota_limit_value": str(self.limits.reads_per_minute), "quota_location": "global",
                     "quota_metric": "logging.googleapis.com/read_requests", "quota_unit": "1/min/{project}",
                     "service": "logging.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [
                    {"description": "Request a higher quota limit.", "url": REQUEST_INCREASE_URL}]},
            ],
        )


def logging_app(store: LogStore, *, consumer_number: str, authorize: Authorize = allow_all,
                clock: Callable[[], float] = time.monotonic, quota: ReadQuota | None = None,
                faults: Faults | None = None, tokens: AccessTokens | None = None) -> web.Application:
    """`consumer_number` is the project number the calls are billed to, the one quota errors name; `quota`, when
    given, is the world's, so its counts can be read."""
    quota = quota or ReadQuota(store.limits, consumer_number, clock)
    injected = faults or Faults()

    async def list_entries(request: web.Request) -> web.Response:
        await injected.google("ListLogEntries")  # before the quota: a call that fails in front is not charged
        quota.charge()  # every call that reaches the API counts, even one it then refuses (an assumption)
        try:
            body = await request.json() if await request.read() else {}
        except ValueError:
            raise _invalid("Invalid JSON payload received. Unexpected token.") from None
        query = ListRequest.from_json(body)
        for parent in query.resource_names:
            authorize("logging.logEntries.list", parent)
        after = _resume_after(query)
        try:
            found = store.select(query.resource_names, query.filter, query.order_desc)
        except FilterError as exc:
            raise _invalid(str(exc)) from None
        start = 0 if after is None else _first_after(found, after, query.order_desc)
        page = found[start : start + query.page_size]
        response: dict[str, Any] = {}
        if page:
            response["entries"] = page
        if start + len(page) < len(found):
            response["nextPageToken"] = _page_token(query, sort_key(page[-1]))
        return web.json_response(response)

    checks = [authenticated(tokens, "logging.googleapis.com",
                            lambda request: "google.logging.v2.LoggingServiceV2.ListLogEntries")
              ] if tokens is not None else []
    app = web.Application(middlewares=[google_errors, *checks])
    app.router.add_post("/v2/entries:list", list_entries)
    return app
