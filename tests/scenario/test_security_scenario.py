"""The bot's own door, `POST /slack/events`, with a whole bot behind it: Slack's published example request, clicks
that are refused or malformed, bodies that do not parse, text that is too long. Every test here (and every other
scenario test) is also searched for leaked secrets by tests/scenario/conftest.py."""

from __future__ import annotations

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
from sandbox.blockkit_text import text_of
from sandbox.slack_user import sign
from sandbox.world import World, WorldOptions
from tests import figures
from tests.scenario.harness import Scenario, fast, free_socket, scenario, serving
from tests.unit.test_request_signing import EXAMPLE_BODY, EXAMPLE_SECRET, EXAMPLE_SIGNATURE, EXAMPLE_TIMESTAMP

USERS = {"oncall": "U07ONCALL01", "viewer": "U07VIEWER01"}
REFUSED = "requests refused at the bot's Slack route (forged, replayed, expired, tampered, unsigned)"


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(fast(example_config, min_requests=5), tmp_path_factory.mktemp("security"),
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
        "value": button(message, action_id)["value"]})
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
    assert "You can't pause nba-phase3-analytics-processors: that needs the *deployer* role." in text_of(told)
    row = await newest_row(fleet, "viewer", "button:rollout_pause", "refused")
    assert row.service == service and row.detail.endswith("that needs the *deployer* role.")
    assert (await fleet.rollout_state(service, "analysing")).rollout.command is None, "nothing was handed over"

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
