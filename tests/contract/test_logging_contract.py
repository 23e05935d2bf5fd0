"""The Cloud Logging emulator, driven by google-cloud-logging's HTTP transport and by raw REST calls whose
JSON is checked against the logging.v2 discovery document (https://cloud.google.com/logging/docs/reference/v2/
rest/v2/entries/list).

Most of this module is about queries, so its emulator allows more reads than Google's 60 a minute; the quota,
the ingestion delay and IAM have tests of their own, each on an emulator of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import logging

from sandbox.google_errors import GoogleError
from sandbox.logging_api import logging_app
from sandbox.logstore import LoggingLimits, LogStore
from sandbox.serving import Listener, start, stop
from sandbox.world import World
from tests.conftest import google_credentials
from tests.contract.schemas import assert_google

PROJECT = "nba-props-platform"
NUMBER = "123456789012"
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(minutes=30)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cloud_run(service: str, revision: str, second: int, log: str, project: str = PROJECT,
              **fields: Any) -> dict[str, Any]:
    """An entry shaped like the ones Cloud Run writes, `second` seconds after START."""
    return {
        "logName": f"projects/{project}/logs/run.googleapis.com%2F{log}",
        "resource": {"type": "cloud_run_revision", "labels": {
            "project_id": project, "service_name": service, "revision_name": revision,
            "location": "us-west2", "configuration_name": service}},
        "timestamp": rfc3339(START + timedelta(seconds=second)),
        "receiveTimestamp": rfc3339(START + timedelta(seconds=second, milliseconds=50)),
        "insertId": f"{log[:3]}{second:05d}{service[:4]}",
        "trace": f"projects/{project}/traces/{second:032x}",
        "labels": {"instanceId": f"00bf4d2a{revision[-3:]}"},
        **fields,
    }


def request_log(service: str, revision: str, second: int, status: int,
                project: str = PROJECT) -> dict[str, Any]:
    return cloud_run(service, revision, second, "requests", project,
                     severity="ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO",
                     httpRequest={"requestMethod": "POST", "requestUrl": f"https://{service}.run.app/predict",
                                  "status": status, "latency": f"{0.02 + status / 10_000:.6f}s",
                                  "responseSize": "211", "userAgent": "Google-Cloud-Scheduler",
                                  "remoteIp": "10.8.0.3", "protocol": "HTTP/1.1"})


def fleet_logs() -> list[dict[str, Any]]:
    """Half an hour of two services: a worker whose new revision fails a third of its requests, and a
    coordinator that logs JSON. Each failed request also writes a plain-text stderr line, which Cloud Run
    gives no severity however it starts (https://cloud.google.com/functions/docs/monitoring/logging)."""
    entries: list[dict[str, Any]] = []
    for second in range(0, 1200, 10):
        worker = "prediction-worker-00008-xyz" if second >= 600 else "prediction-worker-00007-abc"
        status = 503 if worker.endswith("xyz") and second % 30 == 0 else 404 if second % 100 == 0 else 200
        entries.append(request_log("prediction-worker", worker, second, status))
        if status == 503:
            entries.append(cloud_run("prediction-worker", worker, second, "stderr",
                                     textPayload=f"ERROR prediction failed for player_lookup={second}: NaN"))
        if second % 60 == 0:
            payload = {"message": "batch dispatched", "players": 412}
            entries.append(cloud_run("prediction-coordinator", "prediction-coordinator-00002-qrs", second,
                                     "stdout", severity="INFO", jsonPayload=payload))
    return entries


LOGS = fleet_logs()
STALE = request_log("prediction-worker", "prediction-worker-00001-old", -2 * 86_400, 200)  # two days old
ELSEWHERE = request_log("prediction-worker", "prediction-worker-00008-xyz", 5, 503, project="someone-else")


def severity(entry: dict[str, Any]) -> str:
    """Logging's JSON leaves out a DEFAULT severity."""
    value: str = entry.get("severity", "DEFAULT")
    return value


@pytest.fixture(scope="module")
async def endpoint() -> AsyncIterator[str]:
    store = LogStore(limits=LoggingLimits(reads_per_minute=10_000))
    store.extend([*LOGS, STALE, ELSEWHERE])
    listener = await start(Listener("logging", logging_app(store, consumer_number=NUMBER)))
    yield listener.url
    await stop(listener)


@pytest.fixture(scope="module")
def client(endpoint: str) -> logging.Client:
    return logging.Client(project=PROJECT, credentials=AnonymousCredentials(), _use_grpc=False,
                          client_options={"api_endpoint": endpoint})


async def listed(client: logging.Client, **kwargs: Any) -> list[Any]:
    """The real client is synchronous and the server runs in this event loop, hence the thread."""
    return await asyncio.to_thread(lambda: list(client.list_entries(**kwargs)))


async def post(endpoint: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=endpoint) as http:
        return await http.post("/v2/entries:list", json=body)


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["insertId"] for entry in entries]


def insert_ids(found: list[Any]) -> list[str]:
    """The same, for the client's LogEntry objects."""
    return [entry.insert_id for entry in found]


def service(entry: dict[str, Any]) -> str:
    name: str = entry["resource"]["labels"]["service_name"]
    return name


async def test_entries_of_a_service_at_or_above_a_severity(client: logging.Client) -> None:
    """Only the 503 request logs are ERROR: the worker's plain-text "ERROR ..." lines have no severity."""
    found = await listed(client, filter_='resource.labels.service_name="prediction-worker" severity>=ERROR')
    expected = [e for e in LOGS if service(e) == "prediction-worker" and severity(e) == "ERROR"]
    assert insert_ids(found) == ids(expected)
    assert {type(entry).__name__ for entry in found} == {"LogEntry"}
    assert all(entry.severity == "ERROR" and entry.http_request["status"] == 503 for entry in found)
    text = await listed(client, filter_='resource.labels.service_name="prediction-worker" textPayload:"ERROR"')
    assert text and all(isinstance(entry, logging.TextEntry) and entry.severity is None for entry in text)
    assert len(await listed(client, filter_='textPayload:"ERROR" severity=DEFAULT')) == len(text)


async def test_failed_requests_of_one_revision(client: logging.Client) -> None:
    found = await listed(client, filter_='resource.labels.revision_name="prediction-worker-00008-xyz"\n'
                                         "httpRequest.status>=500")
    expected = [e for e in LOGS if e["resource"]["labels"]["revision_name"] == "prediction-worker-00008-xyz"
                and e.get("httpRequest", {}).get("status", 0) >= 500]
    assert insert_ids(found) == ids(expected)
    assert all(entry.http_request["status"] == 503 for entry in found)
    assert {entry.resource.labels["revision_name"] for entry in found} == {"prediction-worker-00008-xyz"}
    assert all(entry.log_name == f"projects/{PROJECT}/logs/run.googleapis.com%2Frequests" for entry in found)


async def test_a_time_window_selects_exactly_the_entries_inside_it(client: logging.Client) -> None:
    since, until = START + timedelta(minutes=5), START + timedelta(minutes=6)
    found = await listed(client, filter_=f'timestamp>="{rfc3339(since)}" AND timestamp<"{rfc3339(until)}" '
                                         'logName="projects/nba-props-platform/logs/run.googleapis.com/requests"')
    assert [entry.timestamp for entry in found] == [since + timedelta(seconds=s) for s in range(0, 60, 10)]


async def test_entries_come_oldest_first_unless_asked_newest_first(client: logging.Client) -> None:
    text = "jsonPayload.players>400"
    oldest_first = await listed(client, filter_=text)
    newest_first = await listed(client, filter_=text, order_by=logging.DESCENDING)
    assert len(oldest_first) == 20
    assert [entry.timestamp for entry in oldest_first] == sorted(entry.timestamp for entry in oldest_first)
    assert insert_ids(newest_first) == insert_ids(oldest_first)[::-1]
    assert isinstance(newest_first[0], logging.StructEntry)
    assert newest_first[0].payload == {"message": "batch dispatched", "players": 412}


async def test_small_pages_add_up_to_the_whole_answer(client: logging.Client, endpoint: str) -> None:
    text = 'resource.labels.service_name="prediction-worker" severity>=WARNING'
    expected = [e for e in LOGS if service(e) == "prediction-worker" and severity(e) not in ("INFO", "DEFAULT")]
    assert insert_ids(await listed(client, filter_=text, page_size=7, max_results=1000)) == ids(expected)
    assert insert_ids(await listed(client, filter_=text, page_size=7, max_results=10)) == ids(expected[:10])

    sizes, token = [], ""
    while True:
        body = {"resourceNames": [f"projects/{PROJECT}"], "filter": text, "pageSize": 7, "pageToken": token}
        page = (await post(endpoint, body)).json()
        sizes.append(len(page["entries"]))
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert sum(sizes) == len(expected)
    assert len(sizes) > 2
    assert sizes[:-1] == [7] * (len(sizes) - 1) and 0 < sizes[-1] <= 7


async def test_a_bad_filter_is_a_bad_request_that_says_why(client: logging.Client) -> None:
    with pytest.raises(exceptions.BadRequest, match=r"invalid severity 'LOUD'.*line 1, column 39"):
        await listed(client, filter_="httpRequest.status>=500 AND severity>=LOUD")
    with pytest.raises(exceptions.BadRequest, match=r"expected '\)'"):
        await listed(client, filter_="(severity>=ERROR OR textPayload:NaN")


async def test_log_names_match_with_or_without_url_encoding(client: logging.Client) -> None:
    encoded = await listed(client, filter_=f'logName="projects/{PROJECT}/logs/run.googleapis.com%2Fstderr"')
    plain = await listed(client, filter_=f'logName="projects/{PROJECT}/logs/run.googleapis.com/stderr"')
    stderr = [e for e in LOGS if e["logName"].endswith("stderr")]
    assert insert_ids(encoded) == insert_ids(plain) == ids(stderr)


async def test_raw_pages_match_the_discovery_document(endpoint: str) -> None:
    body = {"resourceNames": [f"projects/{PROJECT}"], "orderBy": "timestamp desc", "pageSize": 40,
            "filter": "httpRequest.status>=500 OR textPayload:* OR jsonPayload:*"}
    response = await post(endpoint, body)
    assert response.status_code == 200
    page = response.json()
    assert_google("logging.v2", "ListLogEntriesResponse", page)
    payloads = {"httpRequest", "textPayload", "jsonPayload"}
    assert {key for entry in page["entries"] for key in payloads if key in entry} == payloads
    assert page["nextPageToken"]
    selected = [e for e in LOGS if e.get("httpRequest", {}).get("status", 0) >= 500 or "httpRequest" not in e]
    # newest first; a failed request and its stderr line share a timestamp, so insertId breaks the tie
    assert page["entries"][0] == max(selected, key=lambda e: (e["timestamp"], e["insertId"]))
    assert page["entries"][0]["logName"].endswith("stderr")


async def test_an_empty_answer_has_no_fields(endpoint: str) -> None:
    for parent in (f"projects/{PROJECT}", "organizations/123456789", "folders/42", "billingAccounts/0X-1"):
        response = await post(endpoint, {"resourceNames": [parent], "filter": "textPayload:no-such-text"})
        assert (response.status_code, response.json()) == (200, {})
        assert_google("logging.v2", "ListLogEntriesResponse", response.json())


async def test_only_the_named_projects_entries_are_returned(endpoint: str) -> None:
    text = 'resource.labels.revision_name="prediction-worker-00008-xyz" httpRequest.status=503'
    ours = (await post(endpoint, {"resourceNames": [f"projects/{PROJECT}"], "filter": text})).json()
    theirs = (await post(endpoint, {"projectIds": ["someone-else"], "filter": text})).json()
    both = (await post(endpoint, {"resourceNames": [f"projects/{PROJECT}", "projects/someone-else"],
                                  "filter": text, "pageSize": 1000})).json()
    assert ids(theirs["entries"]) == [ELSEWHERE["insertId"]]
    assert ELSEWHERE["insertId"] not in ids(ours["entries"])
    assert len(both["entries"]) == 21


async def test_without_a_timestamp_restriction_only_the_last_day_is_searched(endpoint: str) -> None:
    text = 'resource.labels.revision_name="prediction-worker-00001-old"'
    recent = (await post(endpoint, {"resourceNames": [f"projects/{PROJECT}"], "filter": text})).json()
    since = rfc3339(NOW - timedelta(days=3))
    older = (await post(endpoint, {"resourceNames": [f"projects/{PROJECT}"],
                                   "filter": f'{text} timestamp>="{since}"'})).json()
    assert recent == {}
    assert ids(older["entries"]) == [STALE["insertId"]]


async def test_a_page_token_belongs_to_its_query(endpoint: str) -> None:
    first = (await post(endpoint, {"resourceNames": [f"projects/{PROJECT}"], "filter": "severity>=ERROR",
                                   "pageSize": 3})).json()
    other = await post(endpoint, {"resourceNames": [f"projects/{PROJECT}"], "filter": "severity>=WARNING",
                                  "pageSize": 3, "pageToken": first["nextPageToken"]})
    forged = await post(endpoint, {"resourceNames": [f"projects/{PROJECT}"], "filter": "severity>=ERROR",
                                   "pageToken": "not-a-token"})
    for response in (other, forged):
        assert response.status_code == 400
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "page_token" in other.json()["error"]["message"]


async def test_a_page_resumes_after_its_last_entry_even_when_newer_entries_arrive() -> None:
    store = LogStore()
    revision = "nba-admin-dashboard-00001-aaa"
    store.extend(request_log("nba-admin-dashboard", revision, second, 200) for second in range(5))
    listener = await start(Listener("logging", logging_app(store, consumer_number=NUMBER)))
    try:
        body: dict[str, Any] = {"resourceNames": [f"projects/{PROJECT}"], "orderBy": "timestamp desc",
                                "pageSize": 2}
        first = (await post(listener.url, body)).json()
        store.append(request_log("nba-admin-dashboard", revision, 60, 200))
        second = (await post(listener.url, {**body, "pageToken": first["nextPageToken"]})).json()
    finally:
        await stop(listener)
    seconds = [datetime.fromisoformat(e["timestamp"]) - START for e in first["entries"] + second["entries"]]
    assert seconds == [timedelta(seconds=s) for s in (4, 3, 2, 1)]


@pytest.mark.parametrize(("body", "message"), [
    ({"filter": "severity>=ERROR"}, "resource_names"),
    ({"resourceNames": ["projects"]}, 'Invalid resource name "projects"'),
    ({"resourceNames": ["projects/p/logs/x"]}, "Invalid resource name"),
    ({"resourceNames": ["projects/p"], "pageSize": 1001}, "at most 1000"),
    ({"resourceNames": ["projects/p"], "pageSize": -1}, "negative"),
    ({"resourceNames": ["projects/p"], "pageSize": "ten"}, "page_size"),
    ({"resourceNames": ["projects/p"], "orderBy": "severity desc"}, "order_by"),
    ({"resourceNames": ["projects/p"], "maxResults": 5}, 'Unknown name "maxResults"'),
    ({"resourceNames": ["projects/p"], "filter": "x" * 20_001}, "20000"),
])
async def test_invalid_requests_are_refused_like_google_does(
    endpoint: str, body: dict[str, Any], message: str
) -> None:
    response = await post(endpoint, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert message in error["message"]


async def test_proto_field_names_and_string_page_sizes_are_accepted(endpoint: str) -> None:
    response = await post(endpoint, {"resource_names": [f"projects/{PROJECT}"], "page_size": "2",
                                     "order_by": "timestamp desc", "filter": "jsonPayload:*"})
    assert len(response.json()["entries"]) == 2


def test_the_store_keeps_logging_order_and_drops_the_oldest_beyond_capacity() -> None:
    store = LogStore(capacity=3)
    late, early, tie_b, tie_a = (request_log("svc", "svc-1", s, 200) for s in (30, 10, 20, 20))
    tie_a["insertId"], tie_b["insertId"] = "a", "b"
    store.extend([late, early, tie_b])
    store.append(tie_a)
    assert len(store) == 3
    assert ids(store.select([f"projects/{PROJECT}"], "", order_desc=False)) == ["a", "b", late["insertId"]]


# --- quota, ingestion delay, IAM ----------------------------------------------------------------------


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_defaults_are_the_published_figures() -> None:
    """https://cloud.google.com/logging/quotas#api-limits: "Number of entries.list requests: 60 per minute, per
    Google Cloud project". The ingestion delay has no published figure: 2 s, TailLogEntries' default buffer
    for late arriving entries, is the sandbox's assumption."""
    assert LoggingLimits() == LoggingLimits(reads_per_minute=60, ingestion_delay_s=2.0)


async def test_reads_past_the_quota_are_refused_with_googles_quota_error() -> None:
    """Past the per-minute read quota (https://cloud.google.com/logging/quotas#api-limits) Google answers 429
    RESOURCE_EXHAUSTED, "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute'",
    with ErrorInfo and Help details (as posted in DefangLabs/defang#1268, snarfed/bridgy-fed#620). The window
    slides: a call is let through again 60 s after the oldest one counted."""
    clock = Clock(1000.0)
    store = LogStore(limits=LoggingLimits(reads_per_minute=3))
    store.extend(LOGS)
    listener = await start(Listener("logging", logging_app(store, consumer_number=NUMBER, clock=clock)))
    try:
        client = logging.Client(project=PROJECT, credentials=AnonymousCredentials(), _use_grpc=False,
                                client_options={"api_endpoint": listener.url})
        def one_entry() -> Any:  # one call: the pager reads a second page only once the first is used up
            return listed(client, filter_="jsonPayload:*", page_size=5, max_results=1)

        for moment in (1000.0, 1030.0, 1059.0):
            clock.now = moment
            assert await one_entry()
        clock.now = 1059.9
        with pytest.raises(exceptions.TooManyRequests) as refused:
            await one_entry()
        clock.now = 1060.0  # the call at 1000.0 has left the window
        assert await one_entry()
        clock.now = 1061.0
        raw = await post(listener.url, {"resourceNames": [f"projects/{PROJECT}"]})
    finally:
        await stop(listener)
    assert refused.value.message.endswith(  # after the method and URL google-api-core puts first
        ": Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service "
        f"'logging.googleapis.com' for consumer 'project_number:{NUMBER}'.")
    assert refused.value.reason == "RATE_LIMIT_EXCEEDED" and refused.value.domain == "googleapis.com"
    assert refused.value.metadata == {
        "consumer": f"projects/{NUMBER}", "quota_limit": "ReadRequestsPerMinutePerProject",
        "quota_limit_value": "3", "quota_location": "global", "quota_metric": "logging.googleapis.com/read_requests",
        "quota_unit": "1/min/{project}", "service": "logging.googleapis.com"}
    assert (raw.status_code, raw.json()["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")
    help_link = raw.json()["error"]["details"][1]
    assert help_link == {"@type": "type.googleapis.com/google.rpc.Help", "links": [
        {"description": "Request a higher quota limit.", "url": "https://cloud.google.com/docs/quotas/help/request_increase"}]}


async def test_an_entry_is_listed_only_once_the_ingestion_delay_has_passed() -> None:
    """Logging stamps receiveTimestamp ("The time the log entry was received by Logging",
    https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry) and an entry is not searchable at once."""
    clock = Clock(datetime(2026, 11, 25, 8, 0, tzinfo=UTC).timestamp())
    store = LogStore(limits=LoggingLimits(ingestion_delay_s=2.0), clock=clock)
    listener = await start(Listener("logging", logging_app(store, consumer_number=NUMBER)))
    written = {**request_log("nba-grading-service", "nba-grading-service-00003-grd", 0, 200),
               "timestamp": "2026-11-25T07:59:59.500000Z"}
    del written["receiveTimestamp"]
    body = {"resourceNames": [f"projects/{PROJECT}"], "filter": 'timestamp>="2026-11-25T07:00:00Z"'}
    try:
        store.append(written)
        clock.now += 1.9
        early = (await post(listener.url, body)).json()
        clock.now += 0.1
        late = (await post(listener.url, body)).json()
    finally:
        await stop(listener)
    assert early == {}
    [entry] = late["entries"]
    assert entry["receiveTimestamp"] == "2026-11-25T08:00:00.000000Z"
    assert entry["timestamp"] == written["timestamp"]


async def test_a_caller_without_logging_log_entries_list_is_refused() -> None:
    """entries.list needs logging.logEntries.list on each parent in resourceNames
    (https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list); the refusal reaches the client."""
    asked: list[tuple[str, str]] = []

    def only_our_project(permission: str, resource: str) -> None:
        asked.append((permission, resource))
        if resource != f"projects/{PROJECT}":
            raise GoogleError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource '{resource}' "
                                                   "(or it may not exist).")

    store = LogStore()
    store.extend(LOGS)
    listener = await start(Listener("logging", logging_app(store, consumer_number=NUMBER,
                                                            authorize=only_our_project)))
    try:
        ours = logging.Client(project=PROJECT, credentials=AnonymousCredentials(), _use_grpc=False,
                              client_options={"api_endpoint": listener.url})
        theirs = logging.Client(project="someone-else", credentials=AnonymousCredentials(), _use_grpc=False,
                                client_options={"api_endpoint": listener.url})
        assert await listed(ours, filter_="jsonPayload:*")
        with pytest.raises(exceptions.Forbidden, match=r"logging\.logEntries\.list' denied on resource "
                                                       r"'projects/someone-else'") as refused:
            await listed(theirs, filter_="jsonPayload:*")
    finally:
        await stop(listener)
    assert refused.value.code == 403 and refused.value.response.json()["error"]["status"] == "PERMISSION_DENIED"
    assert asked == [("logging.logEntries.list", f"projects/{PROJECT}"),
                     ("logging.logEntries.list", "projects/someone-else")]


async def test_the_bot_reading_another_projects_logs_is_refused_not_answered_empty(world: World) -> None:
    """The bot's logging.viewer is granted on its own project; a role granted on a project is inherited by what
    is in it and nowhere else (https://cloud.google.com/iam/docs/resource-hierarchy-access-control), and entries.list
    needs logging.logEntries.list on every parent it names
    (https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list): Google answers PERMISSION_DENIED,
    never an empty page that reads as "no errors"."""
    theirs = logging.Client(project="someone-else", credentials=google_credentials(world), _use_grpc=False,
                            client_options={"api_endpoint": world.url("logging")})
    with pytest.raises(exceptions.Forbidden) as refused:
        await listed(theirs, filter_="severity>=ERROR")
    assert (refused.value.reason, refused.value.domain) == ("IAM_PERMISSION_DENIED", "logging.googleapis.com")
    assert refused.value.metadata == {"permission": "logging.logEntries.list", "resource": "projects/someone-else"}
    ours = logging.Client(project=world.config.project, credentials=google_credentials(world), _use_grpc=False,
                          client_options={"api_endpoint": world.url("logging")})
    assert isinstance(await listed(ours, filter_="severity>=ERROR", max_results=1), list)
