"""A second witness: Google's and Slack's own Node clients, which this project does not use, drive the sandbox.

Each test runs a script from tests/contract/witness (pinned versions in its package-lock.json) as a subprocess
against the session world and asserts on the JSON it prints. Where a Node client and the sandbox disagree, the
sandbox is wrong until a documentation page says otherwise. Google's clients reach the sandbox through their
documented endpoint options and google-auth-library's Compute client, with the access tokens of the sandbox's
metadata server (the APIs answer 401 without one); Slack's client gets the
bot token through its environment only, and the token never appears in what the scripts print.

The install (`npm ci` from the lock, into tests/contract/witness/node_modules) runs once and is reused while the
lock is unchanged; without node and npm, or when the install fails, every test here is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.cloud import run_v2

from bot.checksum import crc32c
from sandbox.world import World
from tests.conftest import also_granted, google_auth

WITNESS = Path(__file__).resolve().parent / "witness"
LOCK = WITNESS / "package-lock.json"
STAMP = WITNESS / "node_modules" / ".installed-lock-sha256"
NODE_MAJOR = 20
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 60
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def _install() -> str:
    """Install the pinned clients unless the lock's install is already there; returns why not, or ""."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "the second witness needs node and npm on PATH (Node 20+), so npm ci was not run"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < NODE_MAJOR:
        return f"the second witness needs Node {NODE_MAJOR}+, found {version}"
    digest = _lock_digest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return ""
    try:
        done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=WITNESS,
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"npm ci in {WITNESS.name}/ took longer than {INSTALL_TIMEOUT_S} s"
    if done.returncode != 0:
        said = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        return f"npm ci in {WITNESS.name}/ failed (exit {done.returncode}): {' | '.join(said[:4])}"
    STAMP.write_text(digest + "\n")
    return ""


@dataclass
class Witness:
    world: World

    def google_env(self) -> dict[str, str]:
        return {
            "WITNESS_PROJECT": self.world.config.project,
            "WITNESS_REGION": self.world.config.region,
            "WITNESS_CLOUD_RUN": self.world.url("cloud_run"),
            "WITNESS_SECRET_MANAGER": self.world.url("secret_manager"),
            "WITNESS_LOGGING": self.world.url("logging"),
            "GCE_METADATA_HOST": self.world.url("metadata").removeprefix("http://"),
        }

    def slack_env(self) -> dict[str, str]:
        return {"WITNESS_SLACK_API": f"{self.world.url('slack_api')}/api/",
                "WITNESS_SLACK_BOT_TOKEN": self.world.bot_token}

    async def run(self, script: str, scenario: str, inputs: Mapping[str, Any] | None = None,
                  *, slack: bool = False) -> dict[str, Any]:
        """Run one scenario of a witness script; the world keeps serving on this event loop meanwhile."""
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", str(WITNESS)),
               "WITNESS_INPUT": json.dumps(dict(inputs or {})),
               **(self.slack_env() if slack else self.google_env())}
        process = await asyncio.create_subprocess_exec(
            "node", script, scenario, cwd=WITNESS, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"{script} {scenario} ran longer than {RUN_TIMEOUT_S} s") from None
        stdout, stderr = self._redacted(out), self._redacted(err)
        assert process.returncode == 0, f"{script} {scenario} failed (exit {process.returncode}):\n{stderr}"
        lines = stdout.strip().splitlines()
        assert lines, f"{script} {scenario} printed nothing:\n{stderr}"
        outcome: dict[str, Any] = json.loads(lines[-1])
        return outcome

    def _redacted(self, raw: bytes) -> str:
        return raw.decode(errors="replace").replace(self.world.bot_token, "[bot token]")


@pytest.fixture(scope="session")
async def node_clients() -> None:
    reason = await asyncio.to_thread(_install)
    if reason:
        print(f"second witness skipped: {reason}")
        pytest.skip(reason)


@pytest.fixture
def witness(node_clients: None, world: World) -> Witness:
    return Witness(world)


def seeded(world: World, prefix: str) -> tuple[str, str, str]:
    """A service of this test's own, deployed twice by gcloud: (name, older revision, newer revision)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    world.run.seed_service(name, [f"us-west2-docker.pkg.dev/{world.config.project}/cloud-run/{name}:v{n}"
                                  for n in (1, 2)])
    newer, older = (r.name for r in world.run.revisions_of(name))
    return name, older, newer


# -- Cloud Run ------------------------------------------------------------------------------------------------


async def test_node_gets_and_lists_services_and_revisions(witness: Witness, world: World,
                                                          services_client: run_v2.ServicesClient) -> None:
    """GetService, ListServices (pages: "A token received from a previous call to ListServices", ListServicesRequest,
    https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services/list) and ListRevisions, which
    promises no order (ListRevisionsRequest has no order_by,
    https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services.revisions/list): the newest is
    found by createTime, and agrees with latestReadyRevision. Node's view matches the Python client's."""
    name, older, newer = seeded(world, "witness-read")
    seen = await witness.run("cloudrun.mjs", "read", {"service": name})

    python = await asyncio.to_thread(services_client.get_service,
                                     name=f"{world.run.parent}/services/{name}")
    service = seen["service"]
    assert (service["etag"], int(service["generation"])) == (python.etag, python.generation)
    assert service["generation"] == service["observedGeneration"]
    assert (service["ready"], service["reconciling"]) == ("CONDITION_SUCCEEDED", False)
    assert service["trafficStatuses"] == [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "revision": newer,
                                           "percent": 100, "tag": ""}]
    assert sorted(seen["listed"]) == sorted(world.run.services)
    assert len(seen["firstPage"]) == 2 and set(seen["firstPage"]) < set(seen["listed"]) and seen["nextPageToken"]
    revisions = seen["revisions"]
    assert sorted(r["name"] for r in revisions) == sorted([older, newer])
    assert {r["service"] for r in revisions} == {name}
    newest = max(revisions, key=lambda r: (int(r["createTime"]["seconds"]), r["createTime"]["nanos"]))
    assert newest["name"] == service["latestReadyRevision"] == newer


async def test_node_shifts_traffic_with_an_update_mask_and_waits_on_the_operation(witness: Witness,
                                                                                   world: World) -> None:
    """updateService with update_mask "traffic" ("The list of fields to be updated", UpdateServiceRequest,
    https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services/patch) changes only the split;
    the long-running operation's promise() "polls the operation until complete"
    (https://github.com/googleapis/gax-nodejs/blob/main/client-libraries.md#long-running-operations) and resolves
    to the Service as routed. A new generation, no new revision, and a new etag follow."""
    name, stable, candidate = seeded(world, "witness-split")
    seen = await witness.run("cloudrun.mjs", "shift_traffic",
                             {"service": name, "stable": stable, "candidate": candidate})

    asked = [{"type": REVISION, "revision": stable, "percent": 90, "tag": ""},
             {"type": REVISION, "revision": candidate, "percent": 10, "tag": "canary"}]
    before, result, after = seen["before"], seen["result"], seen["after"]
    assert seen["operation"]["name"].startswith(f"{world.run.parent}/operations/")
    assert result["traffic"] == result["trafficStatuses"] == asked
    assert after["trafficStatuses"] == asked
    assert int(after["generation"]) == int(before["generation"]) + 1 == int(after["observedGeneration"])
    assert after["etag"] != before["etag"]
    assert after["latestReadyRevision"] == before["latestReadyRevision"] == candidate
    assert world.run.traffic_history(name)[-1] == {stable: 90, candidate: 10}


async def test_node_sees_a_stale_etag_refused_with_aborted(witness: Witness, world: World) -> None:
    """A write carrying the etag of an overtaken read fails: ABORTED, HTTP 409 ("Concurrency conflict, such as
    read-modify-write conflict", https://cloud.google.com/apis/design/errors#handling_errors). google-gax 5's REST
    transport hands the caller gaxios's error, whose `code` is the HTTP status and whose message is Google's JSON
    error body (https://github.com/googleapis/gax-nodejs/issues/1803); the body names the gRPC status."""
    name, _, _ = seeded(world, "witness-etag")
    seen = await witness.run("cloudrun.mjs", "stale_etag", {"service": name, "first": "one", "second": "two"})

    assert seen["refused"] and (seen["code"], seen["httpStatus"]) == (409, 409)
    error = seen["body"]["error"]
    assert (error["code"], error["status"]) == (409, "ABORTED")
    assert world.run.services[name].labels == {"witness": "one"}


async def test_node_read_modify_write_of_a_gcloud_service_needs_the_revision_name_cleared(witness: Witness,
                                                                                          world: World) -> None:
    """Writing back a service whose template names an existing revision is refused with 409, "Revision named ...
    with different configuration already exists" (https://github.com/googleapis/google-cloud-python/issues/11870);
    cleared, Cloud Run names the next revision itself
    (https://github.com/hashicorp/terraform-provider-google/issues/9438). Node's full round trip of the template
    is then no change at all: "When there is no perceived change in the service a new revision isn't being made"
    (https://github.com/google-github-actions/deploy-cloudrun/pull/24)."""
    name, _, newer = seeded(world, "witness-rmw")
    named = await witness.run("cloudrun.mjs", "rewrite_named_revision", {"service": name, "label": "named"})
    assert named["templateRevision"] == newer
    assert named["refused"] and named["httpStatus"] == 409
    assert named["body"]["error"]["status"] == "ALREADY_EXISTS"

    unnamed = await witness.run("cloudrun.mjs", "rewrite_unnamed", {"service": name, "label": "unnamed"})
    result = unnamed["result"]
    assert result["labels"] == {"witness": "unnamed"}
    assert int(result["generation"]) == int(unnamed["before"]["generation"]) + 1
    assert result["latestReadyRevision"] == newer
    assert len(world.run.revisions_of(name)) == 2


async def test_node_decodes_the_bad_request_detail_of_an_invalid_service_id(witness: Witness) -> None:
    """CreateServiceRequest.service_id must be a lowercase DNS label of fewer than 50 characters, refused as
    INVALID_ARGUMENT with a google.rpc.BadRequest naming the field (https://github.com/pulumi/pulumi-gcp/pull/3167;
    "Error details", https://cloud.google.com/apis/design/errors#error_details)."""
    seen = await witness.run("cloudrun.mjs", "invalid_service_id",
                             {"serviceId": "Witness_Invalid", "image": "us-docker.pkg.dev/cloudrun/container/hello"})

    assert seen["refused"] and seen["httpStatus"] == 400
    error = seen["body"]["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    [detail] = error["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["fieldViolations"][0]["field"] == "Violation in CreateServiceRequest.service_id"


# -- Secret Manager -------------------------------------------------------------------------------------------


async def test_node_accesses_the_latest_secret_version_and_checks_its_crc32c(witness: Witness, world: World) -> None:
    """accessSecretVersion on versions/latest returns the newest version's payload and its CRC32C
    (https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access;
    SecretPayload.dataCrc32c, https://cloud.google.com/secret-manager/docs/reference/rest/v1/SecretPayload), under
    the project number. `latest` is "the most recently created SecretVersion" whatever its state, so once that
    version is disabled the access is refused with FAILED_PRECONDITION rather than falling back."""
    secret = f"witness-{uuid.uuid4().hex[:8]}"
    older, newest = secrets.token_bytes(24), secrets.token_bytes(24)
    world.secret_manager.put(secret, older)
    world.secret_manager.put(secret, newest)

    seen = await witness.run("secretmanager.mjs", "access_latest", {"secret": secret})
    assert seen["name"] == f"projects/{world.run.project_number}/secrets/{secret}/versions/2"
    assert base64.b64decode(seen["data"]) == newest
    assert seen["dataCrc32c"] == seen["computedCrc32c"] == str(crc32c(newest))

    async with httpx.AsyncClient(base_url=world.url("secret_manager"), headers=google_auth(world)) as http:
        with also_granted(world, "roles/secretmanager.secretVersionManager"):
            disabled = await http.post(f"/v1/projects/{world.config.project}/secrets/{secret}/versions/2:disable")
    assert disabled.status_code == 200
    refused = await witness.run("secretmanager.mjs", "access_refused", {"secret": secret})
    assert refused["refused"] and refused["httpStatus"] == 400
    assert refused["body"]["error"]["status"] == "FAILED_PRECONDITION"


# -- Cloud Logging --------------------------------------------------------------------------------------------


def _entry(project: str, log_id: str, at: datetime, index: int, severity: str) -> dict[str, Any]:
    return {
        "logName": f"projects/{project}/logs/{log_id}",
        "resource": {"type": "cloud_run_revision", "labels": {"project_id": project, "service_name": log_id,
                                                              "revision_name": f"{log_id}-00001-abc",
                                                              "location": "us-west2",
                                                              "configuration_name": log_id}},
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "receiveTimestamp": (at + timedelta(milliseconds=40)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "insertId": f"{log_id}-{index:03d}",
        "severity": severity,
        "jsonPayload": {"message": f"event {index}", "n": index},
    }


async def test_node_get_entries_filters_and_follows_page_tokens(witness: Witness, world: World) -> None:
    """entries:list with a filter in the Logging query language
    (https://cloud.google.com/logging/docs/view/logging-query-language), pageSize and pageToken ("the value of
    nextPageToken from the previous response", https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list):
    Logging.getEntries walks the pages by hand, the GAPIC client it wraps pages by itself, and both see the same
    entries, newest first as asked. jsonPayload arrives as a Struct the client turns back into an object. The
    filter names a timestamp, or getEntries would append a moving one (see the next test)."""
    project = world.config.project
    log_id = f"witness-{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC) - timedelta(minutes=10)
    entries = [_entry(project, log_id, start + timedelta(seconds=i), i, "ERROR" if i % 2 else "WARNING")
               for i in range(5)]
    world.logs.extend([*entries, _entry(project, log_id, start + timedelta(seconds=9), 9, "INFO")])

    since = (start - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = {"filter": f'logName="projects/{project}/logs/{log_id}" AND severity>=WARNING AND timestamp>="{since}"',
             "pageSize": 2, "orderBy": "timestamp desc"}
    seen = await witness.run("logging.mjs", "pages", query)

    newest_first = [e["insertId"] for e in reversed(entries)]
    assert [[e["insertId"] for e in page] for page in seen["pages"]] == [newest_first[:2], newest_first[2:4],
                                                                          newest_first[4:]]
    assert [e["insertId"] for e in seen["all"]] == newest_first
    first = seen["pages"][0][0]
    assert (first["severity"], first["resource"], first["data"]) == ("WARNING", "cloud_run_revision",
                                                                    {"message": "event 4", "n": 4})
    assert first["timestamp"].startswith(entries[4]["timestamp"][:23])

    refused = await witness.run("logging.mjs", "refused", {"filter": "severity>>ERROR"})
    assert refused["refused"] and refused["httpStatus"] == 400
    assert refused["body"]["error"]["status"] == "INVALID_ARGUMENT"


async def test_a_page_token_is_refused_once_get_entries_moves_its_default_time_bound(witness: Witness,
                                                                                      world: World) -> None:
    """A page token belongs to the request that returned it: "The user is expected to keep all other arguments to
    the RPC the same; if any arguments are different, the API should send an INVALID_ARGUMENT error"
    (https://google.aip.dev/158). getEntries appends `timestamp >= <now - 24 h>` to a filter without one, anew on
    each call, and Cloud Logging then refuses the second page with "page_token doesn't match arguments from the
    request" (https://github.com/googleapis/nodejs-logging/issues/1292: "the filter query was different every time
    because of `new Date()` used to build the query")."""
    project = world.config.project
    log_id = f"witness-{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC) - timedelta(minutes=5)
    world.logs.extend([_entry(project, log_id, start + timedelta(seconds=i), i, "ERROR") for i in range(3)])

    seen = await witness.run("logging.mjs", "moving_filter",
                             {"filter": f'logName="projects/{project}/logs/{log_id}"', "pageSize": 2})

    assert len(seen["firstPage"]) == 2 and seen["nextPageToken"]
    assert seen["refused"] and seen["httpStatus"] == 400
    error = seen["body"]["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "page_token doesn't match" in error["message"]


# -- Slack ----------------------------------------------------------------------------------------------------


async def test_web_api_posts_edits_and_pages_through_history(witness: Witness, world: World) -> None:
    """chat.postMessage (https://docs.slack.dev/reference/methods/chat.postMessage) and chat.update
    (https://docs.slack.dev/reference/methods/chat.update) with the manifest's chat:write; conversations.history
    needs channels:history: a token without it gets missing_scope with `needed` and `provided`
    (https://docs.slack.dev/reference/methods/conversations.history, "Scopes" and "Errors"). With the manifest's
    scopes the WebClient pages through the history, which "uses cursor-based pagination" (same page), with its
    paginate() (https://docs.slack.dev/tools/node-slack-sdk/web-api)."""
    channel = world.workspace.channel_named("predictions").id
    texts = ["witness: build 1", "witness: build 2", "witness: deploy started"]
    granted = world.workspace.scopes
    world.workspace.scopes = tuple(scope for scope in granted if scope != "channels:history")
    try:
        seen = await witness.run("slack.mjs", "messages",
                                 {"channel": channel, "texts": texts, "edited": "witness: deploy finished"},
                                 slack=True)
    finally:
        world.workspace.scopes = granted

    posted, updated = seen["posted"], seen["updated"]
    assert [(p["ok"], p["channel"], p["text"]) for p in posted] == [(True, channel, text) for text in texts]
    assert all(p["botId"] and p["blocks"][0]["type"] == "section" for p in posted)
    assert (updated["ok"], updated["channel"], updated["ts"], updated["text"]) == (
        True, channel, posted[-1]["ts"], "witness: deploy finished")
    assert seen["history"] == {"refused": True, "code": "slack_webapi_platform_error", "error": "missing_scope",
                               "needed": "channels:history",
                               "provided": ",".join(s for s in granted if s != "channels:history"),
                               "retryAfter": None}

    assert "channels:history" in granted, "the manifest grants it: the outbox reads history after a crash"
    read = await witness.run("slack.mjs", "history", {"channel": channel}, slack=True)
    history = [message for page in read["pages"] for message in page]
    assert {"ts": posted[-1]["ts"], "text": "witness: deploy finished"} in history
    assert {"ts": posted[0]["ts"], "text": texts[0]} in history
    assert len({m["ts"] for m in history}) == len(history) == len(world.workspace.parents(channel))
    assert all(len(page) <= 2 for page in read["pages"]) and len(read["pages"]) >= 2
    assert read["firstPage"]["messages"] == read["pages"][0]
    assert read["firstPage"]["hasMore"] and read["firstPage"]["nextCursor"]
    assert world.bot_token not in json.dumps([seen, read])


async def test_web_api_rate_limit_is_rejected_or_waited_out(witness: Witness, world: World) -> None:
    """Past chat.postMessage's "1 message per second to a specific channel"
    (https://docs.slack.dev/reference/methods/chat.postMessage#rate-limiting) Slack answers "HTTP 429 Too Many
    Requests" with "a Retry-After HTTP header containing the number of seconds until you can retry"
    (https://docs.slack.dev/apis/web-api/rate-limits). With rejectRateLimitedCalls (WebClientOptions,
    https://docs.slack.dev/tools/node-slack-sdk/reference/web-api/interfaces/WebClientOptions) the call fails with a
    WebAPIRateLimitedError carrying retryAfter
    (https://docs.slack.dev/tools/node-slack-sdk/reference/web-api/interfaces/WebAPIRateLimitedError); left to its
    default the client emits rate_limited, waits that long and succeeds."""
    channel = world.workspace.channel_named("platform").id
    limits = world.limits.to_json()["slack"]
    world.limits.patch("slack", {"post_per_channel_per_s": 1.0, "post_burst": 1})
    try:
        seen = await witness.run("slack.mjs", "rate_limited", {"channel": channel}, slack=True)
    finally:
        world.limits.patch("slack", {key: limits[key] for key in ("post_per_channel_per_s", "post_burst")})

    code = seen["rateLimitedCode"]
    assert code == "slack_webapi_rate_limited_error"
    assert seen["rejecting"] == [{"ok": True}, {"refused": True, "code": code, "error": None, "needed": None,
                                                "provided": None, "retryAfter": 1}]
    patient = seen["patient"]
    assert patient["ok"] and patient["waits"] == [{"retryAfter": 1, "method": "chat.postMessage"}]
    assert patient["seconds"] >= 1
