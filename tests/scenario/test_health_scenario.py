"""/health and /help as an on-call engineer uses them: signed commands in, channel messages out."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bot.adapters.store import Store
from bot.config import Config, parse_config
from sandbox.blockkit_text import text_of
from tests import figures
from tests.conftest import EXAMPLE_CONFIG, bot_may_not_invoke
from tests.scenario.harness import Scenario, scenario

SERVICES = ("prediction-coordinator", "prediction-worker", "mlb-prediction-worker", "nba-admin-dashboard",
            "nba-phase3-analytics-processors", "nba-phase4-precompute-processors", "nba-grading-service")


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(example_config, tmp_path_factory.mktemp("health")) as running:
        yield running


def is_report(message: dict[str, object]) -> bool:
    return message["kind"] == "message" and "Fleet health" in str(message["text"])


async def test_health_all_is_acked_fast_and_lists_all_seven_services(fleet: Scenario) -> None:
    before = await fleet.latest_ts()
    answer = await fleet.command("oncall", "/health all")
    assert answer["status"] == 200 and answer["ack_ms"] < 3000
    assert "Probing 7 services" in answer["body"]
    report = await fleet.wait_for("oncall", is_report, after=before)
    assert "all 7 healthy" in report["text"]
    for service in SERVICES:
        assert service in text_of(report)


async def test_a_failing_ready_check_shows_unhealthy_with_detail_and_runbook(fleet: Scenario) -> None:
    revision = fleet.serving_revision("prediction-worker")
    await fleet.behave(revision, failing_checks=["gcs_model_file"])
    try:
        before = await fleet.latest_ts()
        await fleet.command("oncall", "/health all")
        report = await fleet.wait_for("oncall", is_report, after=before)
    finally:
        await fleet.behave(revision, failing_checks=[])
    text = text_of(report)
    assert "1 unhealthy" in report["text"] and "prediction-worker unhealthy" in report["text"]
    assert "*prediction-worker* is *unhealthy*" in text and "`gcs_model_file`" in text
    assert "model file gs://nba-props-platform-models/catboost/v8/model.cbm not found" in text
    link = fleet.runbook_link(text, "prediction-worker", "gcs-model-file")
    assert f"<{link}|runbook>" in text
    page = await fleet.http.get(link)
    assert page.status_code == 200 and 'id="gcs-model-file"' in page.text
    first_problem = next(b for b in report["blocks"] if b["type"] == "section")
    assert "prediction-worker" in first_problem["text"]["text"], "problems come before healthy services"


async def test_a_service_that_does_not_answer_is_unreachable_not_a_bot_error(fleet: Scenario) -> None:
    revision = fleet.serving_revision("nba-grading-service")
    await fleet.behave(revision, down=True)
    try:
        before = await fleet.latest_ts()
        await fleet.command("oncall", "/health nba-grading")
        report = await fleet.wait_for("oncall", lambda m: m["kind"] == "message" and "nba-grading-service" in m["text"],
                                      after=before)
    finally:
        await fleet.behave(revision, down=False)
    assert report["text"].startswith("nba-grading-service is unreachable")
    assert "Server disconnected" in text_of(report)


async def test_health_of_one_service_shows_every_check_latency_and_revision(fleet: Scenario) -> None:
    before = await fleet.latest_ts()
    await fleet.command("oncall", "/health nba-phase4-precompute-processors")
    report = await fleet.wait_for("oncall", lambda m: m["kind"] == "message"
                                  and m["text"].startswith("nba-phase4-precompute-processors is"), after=before)
    text = text_of(report)
    revision = fleet.serving_revision("nba-phase4-precompute-processors")
    assert f"revision `{revision}` answered" in text
    for check in ("bigquery", "environment", "vegas_line_coverage"):
        assert f"`{check}` " in text
    assert "*/health/deep* · HTTP 200" in text and " ms" in text


async def test_a_private_service_is_healthy_to_the_bot_and_closed_to_a_caller_without_a_token(
        fleet: Scenario) -> None:
    """The fleet's services are private (Cloud Run's default, https://cloud.google.com/run/docs/securing/authenticating):
    the bot gets an ID token for the service URL from the metadata server and is let in
    (https://cloud.google.com/run/docs/authenticating/service-to-service); a caller without one gets 403."""
    service = "prediction-coordinator"
    assert fleet.world.iam.private(service)
    before = await fleet.latest_ts()
    await fleet.command("oncall", f"/health {service}")
    report = await fleet.wait_for("oncall", lambda m: m["kind"] == "message"
                                  and m["text"].startswith(f"{service} is"), after=before)
    assert report["text"].startswith(f"{service} is healthy")
    assert fleet.world.metadata.identity_requests >= 1
    anonymous = await fleet.http.get(fleet.world.run.url_for(service) + "/health")
    assert anonymous.status_code == 403


async def test_when_the_bot_may_not_invoke_a_service_health_says_what_to_grant(fleet: Scenario) -> None:
    """A valid token of a member without roles/run.invoker gets 403
    (https://cloud.google.com/run/docs/securing/managing-access); the service is not called unhealthy."""
    service = "nba-grading-service"
    with bot_may_not_invoke(fleet.world, service):
        before = await fleet.latest_ts()
        await fleet.command("oncall", f"/health {service}")
        report = await fleet.wait_for("oncall", lambda m: m["kind"] == "message"
                                      and m["text"].startswith(f"{service} is"), after=before)
    assert report["text"].startswith(f"{service} is unreachable")
    assert "grant it roles/run.invoker on it" in text_of(report)


@pytest.mark.parametrize(("typed", "says"), [
    ("/health nope", "there is no service `nope`"),
    ("/health", "which service?"),
    ("/health prediction-wrker", "Did you mean `prediction-worker`?"),
    ("/health prediction", "matches several services"),
    ("/health all now", "I don't know `now` here"),
    ("/help deplyo", "there is no command `/deplyo`"),
])
async def test_mistakes_get_a_helpful_ephemeral_answer(fleet: Scenario, typed: str, says: str) -> None:
    before = await fleet.latest_ts("oncall")
    answer = await fleet.command("oncall", typed)
    assert answer["status"] == 200 and says in answer["body"]
    assert "Try" in answer["body"] or "Usage" in answer["body"]
    assert "Traceback" not in answer["body"]
    seen = [m for m in await fleet.messages("oncall") if float(m["ts"]) > float(before)]
    assert all(m["kind"] == "ephemeral" for m in seen), "a mistake posts nothing in the channel"


async def test_help_lists_every_command_and_explains_one(fleet: Scenario) -> None:
    before = await fleet.latest_ts()
    await fleet.command("viewer", "/help")
    listing = await fleet.wait_for("viewer", lambda m: "/health <service|all>" in text_of(m), after=before)
    assert listing["kind"] == "ephemeral" and "/help [command]" in text_of(listing)
    await fleet.command("viewer", "/help health")
    detail = await fleet.wait_for("viewer", lambda m: "Who may" in text_of(m), after=listing["ts"])
    assert "/health prediction-worker" in text_of(detail) and "everyone" in text_of(detail)


async def test_an_unknown_command_points_to_help(fleet: Scenario) -> None:
    answer = await fleet.command("oncall", "/frobnicate now")
    assert answer["status"] == 200 and "`/help`" in answer["body"] and "/frobnicate" in answer["body"]


REFUSED = "requests refused at the bot's Slack route (forged, replayed, expired, tampered, unsigned)"


def signed(secret: str, body: str, timestamp: int) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded"}


async def test_forged_replayed_and_tampered_requests_get_401_and_do_nothing(fleet: Scenario) -> None:
    """Slack signs `v0:<timestamp>:<body>` with the app's signing secret, and a timestamp more than five minutes from
    local time is to be ignored as a possible replay (https://api.slack.com/authentication/verifying-requests-from-
    slack). A refused request reaches no listener: no Slack call, no audit row."""
    before = len(fleet.world.workspace.calls)
    audited = len(fleet.bot.runtime.store.audit(limit=500))
    answer = await fleet.command("oncall", "/health all", signature="v0=" + "0" * 64)
    assert answer["status"] == 401
    figures.count(REFUSED)
    now = int(time.time())
    for stale in (now - 6 * 60, now + 6 * 60, 0):  # replayed, from the future, long expired
        answer = await fleet.command("oncall", "/health all", timestamp=stale)
        assert answer["status"] == 401, stale
        figures.count(REFUSED)

    body = urlencode({"command": "/health", "text": "all", "user_id": "U07ONCALL01", "channel_id": "C07DEPLOYS1",
                      "team_id": "T07SANDBOX1", "response_url": f"{fleet.user_side}/response/x"})
    headers = signed(fleet.world.signing_secret, body, now)
    events = f"{fleet.bot_url}/slack/events"
    tampered = body.replace("U07ONCALL01", "U07LEAD0001")
    response = await fleet.http.post(events, content=tampered, headers=headers)
    assert response.status_code == 401
    missing = await fleet.http.post(events, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert missing.status_code == 401
    figures.count(REFUSED, 2)
    signature = headers["X-Slack-Signature"]
    forgeries = {
        "another app's secret": signed("0" * 32, body, now),
        "a timestamp that is no number": {**headers, "X-Slack-Request-Timestamp": "soon"},
        "another signature version": {**headers, "X-Slack-Signature": signature.replace("v0=", "v1=")},
        "the signature without its version": {**headers, "X-Slack-Signature": signature[3:]},
        "an empty signature": {**headers, "X-Slack-Signature": ""},
    }
    for name, forged in forgeries.items():
        assert (await fleet.http.post(events, content=body, headers=forged)).status_code == 401, name
        figures.count(REFUSED)
    junk = await fleet.http.post(events, content=b"payload=%7Bnot+json", headers=headers)
    assert junk.status_code == 401, "an unsigned body that does not parse is refused, not a 500"
    figures.count(REFUSED)
    assert len(fleet.world.workspace.calls) == before, "no Slack API call followed a rejected request"
    assert len(fleet.bot.runtime.store.audit(limit=500)) == audited, "nor an audit row"


async def test_a_request_signed_four_minutes_ago_is_still_taken(fleet: Scenario) -> None:
    """The five minutes are Slack's window, not a stricter one: a slow proxy's request is not lost."""
    before = await fleet.latest_ts()
    answer = await fleet.command("oncall", "/health all", timestamp=int(time.time()) - 4 * 60 - 50)
    assert answer["status"] == 200 and "Probing" in answer["body"]
    await fleet.wait_for("oncall", is_report, after=before)

    async def finished() -> bool:
        return all(e.outcome != "accepted" for e in fleet.bot.runtime.store.audit(limit=5, user_id="U07ONCALL01"))

    await fleet.until(finished, 5, "the request's audit row to end")


async def test_every_command_is_audited_with_its_outcome(fleet: Scenario) -> None:
    await fleet.command("viewer", "/health nope")
    store: Store = fleet.bot.runtime.store

    async def audited() -> bool:  # written right after the ack, which is what the command's HTTP answer waits for
        return any(e.outcome == "invalid" and e.text == "nope" for e in store.audit(limit=200, user_id="U07VIEWER01"))

    await fleet.until(audited, 5, "the mistake's audit row")
    oncall = store.audit(limit=200, user_id="U07ONCALL01")
    health_all = [e for e in oncall if e.command == "/health" and e.text == "all"]
    assert health_all and {e.outcome for e in health_all} == {"ok"}, "a finished command's row ends ok"


async def test_the_viewer_is_refused_where_the_config_says_so(tmp_path: Path) -> None:
    example = EXAMPLE_CONFIG.read_text()
    assert example.count("may: [health, status, history, incidents, digest, stats, timeline]") == 1
    text = example.replace("may: [health, status, history, incidents, digest, stats, timeline]",
                           "may: [status, history]")
    strict = parse_config(text)
    async with scenario(strict, tmp_path) as running:
        answer = await running.command("viewer", "/health all")
        assert answer["status"] == 200
        assert "You can't check health: that needs the *deployer* role" in answer["body"]
        allowed = await running.command("oncall", "/health all")
        assert "Probing" in allowed["body"]
