"""The bot's own door, `POST /slack/events`, with a whole bot behind it: Slack's published example request, clicks
that are refused or malformed, bodies that do not parse, text that is too long. Every test here (and every other
scenario test) is also searched for leaked secrets by tests/scenario/conftest.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from bot.adapters.store import AuditEntry
from bot.config import Config
from bot.slack_route import MAX_BODY_BYTES
from sandbox.blockkit_text import render_message, text_of
from sandbox.slack_user import sign
from sandbox.world import World, WorldOptions
from tests import figures
from tests.scenario.harness import Scenario, fast, free_socket, scenario, serving
from tests.scenario.test_monitoring_alerts_scenario import webhook_on
from tests.unit.test_request_signing import EXAMPLE_BODY, EXAMPLE_SECRET, EXAMPLE_SIGNATURE, EXAMPLE_TIMESTAMP

USERS = {"oncall": "U07ONCALL01", "viewer": "U07VIEWER01"}
REFUSED = "requests refused at the bot's Slack route (forged, replayed, expired, tampered, unsigned)"


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(webhook_on(fast(example_config, min_requests=5)), tmp_path_factory.mktemp("security"),
                        requests_per_s=60) as running:
        yield running


@pytest.fixture
async def example_signed(example_config: Config, tmp_path: Path) -> AsyncIterator[Scenario]:
    """A bot whose signing secret is Slack's published example: an operator adds it as the newest version of the
    secret (`gcloud secrets versions add`), and the bot reads `latest` at start."""
    sock = free_socket()
    bot_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    world = World(example_config, WorldOptions(bot_urls=[bot_url], start_ms=60, route_ms=20))
    await world.start()
    world.secret_manager.put(example_config.secrets.slack_signing_secret, EXAMPLE_SECRET.encode())
    try:
        async with serving(world, example_config, f"sqlite:///{tmp_path / 'chatops.db'}", sock,
                           owner="example") as bot, httpx.AsyncClient(timeout=10) as http:
            yield Scenario(world, bot, bot_url, http)
    finally:
        sock.close()
        await world.stop()


def form_headers(timestamp: str, signature: str) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature}


async def test_slacks_published_example_request_is_taken_once_it_is_fresh(example_signed: Scenario) -> None:
    """Slack's example (https://api.slack.com/authentication/verifying-requests-from-slack): its secret, body and
    timestamp give its signature. Sent as published,
    the route refuses it, because the timestamp (2018) is more than five minutes from local time, which Slack says
    to ignore as a replay. The same body signed with the same secret now is taken: the bot computes Slack's
    signature over the raw body. slack_bolt has no clock to set (its request verification builds slack_sdk's
    SignatureVerifier with the system clock), and time is not patched here; the published signature at its own
    time is checked through slack_sdk's documented `clock` in tests/unit/test_request_signing.py."""
    events = f"{example_signed.bot_url}/slack/events"
    assert sign(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_BODY) == EXAMPLE_SIGNATURE
    published = await example_signed.http.post(events, content=EXAMPLE_BODY,
                                               headers=form_headers(EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE))
    assert published.status_code == 401
    figures.count(REFUSED)
    now = str(int(time.time()))
    fresh = await example_signed.http.post(events, content=EXAMPLE_BODY,
                                           headers=form_headers(now, sign(EXAMPLE_SECRET, now, EXAMPLE_BODY)))
    assert fresh.status_code == 200
    assert fresh.text.startswith(":grey_question: I don't know `/webhook-collect`"), "the bot has no such command"
    world_secret = await example_signed.http.post(events, content=EXAMPLE_BODY, headers=form_headers(
        now, sign(example_signed.world.signing_secret, now, EXAMPLE_BODY)))
    assert world_secret.status_code == 401, "the bot holds the newest version of the secret, and only it"
    figures.count(REFUSED)
    figures.count("Slack's published example request, signed now, taken at the route")


# -- clicks ----------------------------------------------------------------------------------------------------


def rows(fleet: Scenario, user: str) -> list[AuditEntry]:
    return fleet.bot.runtime.store.audit(limit=200, user_id=USERS[user])


async def newest_row(fleet: Scenario, user: str, command: str, *outcomes: str) -> AuditEntry:
    """The user's newest audit row once it is `command`'s with one of `outcomes` (the ack goes out first)."""

    async def written() -> bool:
        found = rows(fleet, user)
        return bool(found) and found[0].command == command and found[0].outcome in outcomes

    await fleet.until(written, 10, f"{user}'s {command} row")
    return rows(fleet, user)[0]


def button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    return next(e for a in message.get("attachments") or [{}] for b in a.get("blocks", []) + message.get("blocks", [])
                if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id)


async def click(fleet: Scenario, user: str, message: dict[str, Any], action_id: str) -> dict[str, Any]:
    answer = await fleet.http.post(f"{fleet.user_side}/actions", json={
        "user": user, "channel": "deploys", "message_ts": message["ts"], "action_id": action_id,
        "value": button(message, action_id)["value"], "confirmed": True})
    answer.raise_for_status()
    seen: dict[str, Any] = answer.json()
    return seen


async def test_a_viewers_click_is_refused_naming_the_role_and_an_on_calls_click_acts(fleet: Scenario) -> None:
    """A button is authorized again on click, whoever drew it; both clicks leave an audit row."""
    service = "nba-phase3-analytics-processors"
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    running = await fleet.rollout_state(service, "analysing")
    message = await fleet.rollout_message(running)
    before = await fleet.latest_ts("viewer")
    refused = await click(fleet, "viewer", message, "rollout_pause")
    assert refused["status"] == 200
    told = await fleet.wait_for("viewer", lambda m: ":no_entry:" in text_of(m), after=before)
    assert told["kind"] == "ephemeral"
    needs = "that needs the *deployer* role, which team *grading* (<!subteam^S07GRADING1>) has for it."
    assert f"You can't pause nba-phase3-analytics-processors: {needs}" in text_of(told)
    row = await newest_row(fleet, "viewer", "button:rollout_pause", "refused")
    assert row.service == service and row.detail.endswith(needs)
    assert (await fleet.rollout_state(service, "analysing")).rollout.commands == (), "nothing was handed over"

    assert (await click(fleet, "oncall", message, "rollout_pause"))["status"] == 200
    await fleet.rollout_state(service, "paused")
    assert (await newest_row(fleet, "oncall", "button:rollout_pause", "ok")).service == service
    await fleet.command("oncall", f"/rollback {service}")
    await fleet.rollout_state(service, "rolled_back")


async def signed_click(fleet: Scenario, user: str, **payload: Any) -> httpx.Response:
    """A block_actions payload (https://api.slack.com/reference/interaction-payloads/block-actions), signed as Slack
    signs it, with a real response_url."""
    channel = fleet.channel("deploys")
    url = f"{fleet.user_side}/response/{fleet.world.workspace.open_response_url(channel, USERS[user])}"
    body = urlencode({"payload": json.dumps({
        "type": "block_actions", "user": {"id": USERS[user], "username": user}, "channel": {"id": channel},
        "team": {"id": fleet.world.workspace.team_id}, "response_url": url, **payload})})
    now = str(int(time.time()))
    return await fleet.http.post(f"{fleet.bot_url}/slack/events", content=body,
                                 headers=form_headers(now, sign(fleet.world.signing_secret, now, body)))


@pytest.mark.parametrize(("payload", "answer"), [
    ({}, "That click named no button"),
    ({"actions": []}, "That click named no button"),
    ({"actions": [7]}, "That click named no button"),
    ({"actions": [{"action_id": "rollout_launch", "value": "1:0"}]}, "I don't know that button"),
    ({"actions": [{"action_id": "rollout_pause", "value": 1}]}, "doesn't say which rollout or incident"),
    ({"actions": [{"action_id": "incident_ack", "value": "99999999999999999999"}]},
     "doesn't say which rollout or incident"),
])
async def test_a_signed_but_malformed_click_gets_200_an_answer_and_an_invalid_row(
        fleet: Scenario, payload: dict[str, Any], answer: str) -> None:
    """Slack would not send these; whoever holds the signing secret could. None may cost a 500 or a traceback."""
    before = await fleet.latest_ts("oncall")
    response = await signed_click(fleet, "oncall", **payload)
    assert response.status_code == 200
    told = await fleet.wait_for("oncall", lambda m: answer in text_of(m), after=before)
    assert told["kind"] == "ephemeral" and text_of(told).endswith("nothing was done.")
    action_id = (payload.get("actions") or [{}])[0]
    command = f"button:{action_id.get('action_id', '?')}" if isinstance(action_id, dict) else "button:?"
    assert (await newest_row(fleet, "oncall", command, "invalid")).detail
    figures.count("signed but malformed clicks answered 200, told and audited (no 500)")


async def test_a_signed_body_that_does_not_parse_gets_400_and_an_unsigned_one_401(fleet: Scenario) -> None:
    """Bolt parses before it verifies; the route verifies first
    (https://api.slack.com/authentication/verifying-requests-from-slack)."""
    events = f"{fleet.bot_url}/slack/events"
    calls = sum(fleet.world.workspace.calls.values())
    for body, content_type in (("payload=%7Bnot+json", "application/x-www-form-urlencoded"),
                               ("payload=%5B1%2C2%5D", "application/x-www-form-urlencoded"),
                               ("{\"type\": ", "application/json"), ("[1, 2]", "application/json")):
        now = str(int(time.time()))
        headers = {**form_headers(now, sign(fleet.world.signing_secret, now, body)), "Content-Type": content_type}
        signed = await fleet.http.post(events, content=body, headers=headers)
        assert signed.status_code == 400, body
        figures.count("signed bodies that do not parse answered 400 at the route (no 500)")
        forged = await fleet.http.post(events, content=body, headers={**headers, "X-Slack-Signature": "v0=" + "1" * 64})
        assert forged.status_code == 401, body
        figures.count(REFUSED)
    assert sum(fleet.world.workspace.calls.values()) == calls, "nothing reached Slack"


# -- what people type ------------------------------------------------------------------------------------------


async def test_text_over_4000_characters_is_refused_politely_and_audited_short(fleet: Scenario) -> None:
    """Slack documents no limit for a command's text; the bot's is 4,000 (commands/grammar.py)."""
    answer = await fleet.command("oncall", "/health " + "prediction-worker " * 300)
    assert answer["status"] == 200 and answer["ack_ms"] < 3000
    assert answer["body"].startswith(":warning: that is 5,399 characters; a command takes at most 4,000")
    row = await newest_row(fleet, "oncall", "/health", "invalid")
    assert row.text.endswith("… (5,399 characters)") and len(row.text) < 4100


async def test_a_command_that_mentions_payload_is_answered(fleet: Scenario) -> None:
    """Bolt takes any form body containing the word for a click's `payload=` and reads it as empty; the route
    hands it the body as Slack sent it."""
    answer = await fleet.command("oncall", "/health payload")
    assert answer["status"] == 200 and "there is no service `payload`" in answer["body"]
    silenced = await fleet.command("oncall", "/silence nba-grading-service 30m payload migration")
    assert silenced["status"] == 200 and silenced["error"] is None
    row = await newest_row(fleet, "oncall", "/silence", "ok")
    assert row.text == "nba-grading-service 30m payload migration"


async def test_a_command_echoed_back_is_stripped_of_control_characters_and_escaped(fleet: Scenario) -> None:
    """What someone typed comes back in the answer, printable and escaped for mrkdwn: a `<!channel>` in a service
    name pings no one (https://api.slack.com/reference/surfaces/formatting#escaping), and a bell, an escape
    sequence or a right-to-left override never reaches anyone's screen."""
    answer = await fleet.command("oncall", "/health <!channel>\x07\x1b[2J\u202eevil")
    assert answer["status"] == 200
    assert "there is no service `&lt;!channel&gt;[2Jevil`" in answer["body"]
    assert "<!channel>" not in answer["body"]
    assert not any(ch in answer["body"] for ch in "\x07\x1b\u202e")
    unknown = await fleet.command("oncall", "/<!here>&")
    assert unknown["body"].startswith(":grey_question: I don't know `/&lt;!here&gt;&amp;`")


# -- the route's own limits ------------------------------------------------------------------------------------


def signed_headers(fleet: Scenario, body: str | bytes, content_type: str = "application/x-www-form-urlencoded",
                   ) -> dict[str, str]:
    now = str(int(time.time()))
    text = body.decode() if isinstance(body, bytes) else body
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": now,
            "X-Slack-Signature": sign(fleet.world.signing_secret, now, text)}


async def test_a_body_over_the_cap_gets_413_before_its_signature_is_checked(fleet: Scenario) -> None:
    """Slack documents no maximum for what it sends; the bot takes 1 MiB (bot/slack_route.py: a click on the largest
    message Slack allows is about 570 KB). Past it the answer is 413 whether the signature is right or forged:
    the signature was never computed. Sent with its length and in chunks without one alike, and unread past the
    cap."""
    events = f"{fleet.bot_url}/slack/events"
    calls = sum(fleet.world.workspace.calls.values())
    body = urlencode({"command": "/health", "text": "x" * MAX_BODY_BYTES})
    signed = await fleet.http.post(events, content=body, headers=signed_headers(fleet, body))
    forged = await fleet.http.post(events, content=body, headers={**signed_headers(fleet, body),
                                                                  "X-Slack-Signature": "v0=" + "1" * 64})
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            sent.append(start)
            yield body[start:start + 64 * 1024].encode()

    streamed = await fleet.http.post(events, content=chunks(), headers=signed_headers(fleet, body))
    for answer in (signed, forged, streamed):
        assert answer.status_code == 413 and answer.text == f"a Slack request is at most {MAX_BODY_BYTES:,} bytes"
    assert "content-length" not in streamed.request.headers, "sent chunked: the cap is counted, not declared"
    assert sum(fleet.world.workspace.calls.values()) == calls, "nothing reached Slack"
    small = urlencode({"command": "/help", "text": "", "user_id": USERS["oncall"], "channel_id": fleet.channel(
        "deploys"), "response_url": f"{fleet.user_side}/response/none"})
    assert (await fleet.http.post(events, content=small, headers=signed_headers(fleet, small))).status_code == 200
    figures.count("bodies over the cap answered 413 before the signature (no 401, no 500)")


@pytest.mark.parametrize("missing", ["user_id", "channel_id", "response_url"])
async def test_a_signed_command_that_says_not_who_where_or_where_to_answer_gets_400_before_any_work(
        fleet: Scenario, missing: str) -> None:
    """Slack sends every command with `user_id`, `channel_id` and `response_url`
    (https://api.slack.com/interactivity/slash-commands#app_command_handling). One without is refused 400 before
    anything runs: no audit row (the pipeline audits every command it takes), nothing to Slack. Today a `/health
    all` for nobody would probe the fleet and then fail on the empty response_url. (The fleet's probe count is not
    held still: the module's rollouts and sweeps probe it meanwhile.)"""
    channel = fleet.channel("deploys")
    url_id = fleet.world.workspace.open_response_url(channel, USERS["oncall"])
    form = {"command": "/health", "text": "all", "user_id": USERS["oncall"], "user_name": "oncall",
            "channel_id": channel, "team_id": fleet.world.workspace.team_id,
            "response_url": f"{fleet.user_side}/response/{url_id}"}
    audited, before = len(rows(fleet, "oncall")), await fleet.latest_ts()
    for body in (urlencode({k: v for k, v in form.items() if k != missing}), urlencode({**form, missing: ""})):
        answer = await fleet.http.post(f"{fleet.bot_url}/slack/events", content=body,
                                       headers=signed_headers(fleet, body))
        assert answer.status_code == 400, body
        assert answer.text == f"a slash command needs user_id, channel_id, response_url; this one has no {missing}"
    await asyncio.sleep(0.5)  # long enough for work after an ack to have started
    assert len(rows(fleet, "oncall")) == audited, "nothing was audited"
    # What `/health all` would say (its ack "Probing…", its report "Fleet health"), by each message's own text: not
    # another test's late answer (`/help`'s blocks name /health too).
    answered = [m for m in await fleet.messages("oncall") if float(m["ts"]) > float(before)
                and any(word in str(m.get("text", "")).lower() for word in ("health", "probing"))]
    assert answered == [], "no answer and no report reached anyone"


# -- outside text ----------------------------------------------------------------------------------------------


def shown(message: dict[str, Any]) -> str:
    """The message as Slack displays it: entities become mentions and links, escaped text reads as typed."""
    return render_message(message, users={})


async def test_a_log_line_with_a_broadcast_in_a_failing_canarys_evidence_pings_no_one(fleet: Scenario) -> None:
    """The candidate's own code logs `<!channel>` at ERROR (set through the sandbox's control API); its newest error
    lines are quoted in the rollout's thread as evidence. Slack reads `<!channel>` as a broadcast to the channel
    (https://api.slack.com/reference/surfaces/formatting#special-mentions) unless `<` and `>` are escaped
    (https://api.slack.com/reference/surfaces/formatting#escaping): the line reaches Slack escaped, and Slack shows
    it as the app wrote it, with no @channel."""
    service = "mlb-prediction-worker"
    image = f"{fleet.world.config.services[service].image}:v3-shouting"
    line = "payment failed <!channel> & <@U07VIEWER01> <https://evil.example|click here>"
    await fleet.declare(image, error_rate=0.6, error_message=line)
    await fleet.command("oncall", f"/deploy {service} tag=v3-shouting")
    done = await fleet.rollout_state(service, "rolled_back")
    thread = await fleet.thread(done)
    evidence = next(m for m in thread if f"Newest errors of `{done.rollout.candidate}`" in text_of(m))
    assert "payment failed &lt;!channel&gt; &amp; &lt;@U07VIEWER01&gt; &lt;https://evil.example|click here&gt;" \
        in text_of(evidence)
    assert line in shown(evidence) and "@channel" not in shown(evidence)
    everything = json.dumps(await fleet.messages("oncall", "deploys"))
    assert "<!channel>" not in everything and "<https://evil.example" not in everything
    figures.count("log lines holding a broadcast quoted in Slack without pinging")


async def test_an_alert_policys_documentation_with_a_broadcast_pings_no_one(fleet: Scenario) -> None:
    """A Cloud Monitoring policy's documentation is its author's text, sent as the notification's
    `incident.documentation` (https://cloud.google.com/monitoring/support/notification-options#webhooks); the bot
    threads it in the service's alert channel. A `<!here>` in it reaches Slack escaped and pings no one."""
    service = "prediction-worker"
    channel = fleet.world.config.services[service].alert_channel or fleet.world.config.slack.deploy_channel
    before = await fleet.latest_ts("oncall", channel)
    sent = await fleet.http.post(f"{fleet.control}/alerts/monitoring", json={
        "policy": "worker <!channel> 5xx", "condition": "5xx above 1%", "service": service, "state": "open",
        "summary": "5xx rate is 4.2% > 1%",
        "documentation": {"content": "<!here> roll back now", "subject": "Worker failing <!everyone>"}})
    assert sent.json()["status"] == 200
    told = await fleet.wait_for("oncall", lambda m: "roll back now" in text_of(m), channel, after=before)
    assert "&lt;!here&gt; roll back now" in text_of(told) and "worker &lt;!channel&gt; 5xx" in text_of(told)
    assert "<!here> roll back now" in shown(told) and "Worker failing <!everyone>" in shown(told)
    assert not any(mention in shown(told) for mention in ("@here", "@channel", "@everyone"))
    assert "5xx rate is 4.2% &gt; 1%" in text_of(told), "escaped once, though the renderer escapes it again"
    closed = await fleet.http.post(f"{fleet.control}/alerts/monitoring", json={
        "policy": "worker <!channel> 5xx", "condition": "5xx above 1%", "service": service, "state": "closed"})
    assert closed.json()["status"] == 200
    figures.count("alert-policy documentation holding a broadcast shown in Slack without pinging")
