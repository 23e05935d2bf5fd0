"""The sandbox console typed at through a real pipe, against a real World whose Slack delivers to a stand-in
bot: what the person types reaches the bot signed, and what the bot says shows up as it happens."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Config
from sandbox.console import run_console
from sandbox.serving import Listener, start, stop
from sandbox.world import World, WorldOptions

Json = dict[str, Any]
ONCALL, VIEWER = "U07ONCALL01", "U07VIEWER01"


def rollout_blocks(percent: int) -> list[Json]:
    return [
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": f":hourglass_flowing_sand: *Canary* prediction-worker v3 at {percent}%"}},
        {"type": "actions", "elements": [
            {"type": "button", "action_id": "promote", "value": "rollout-7", "style": "primary",
             "text": {"type": "plain_text", "text": "Promote"}},
            {"type": "button", "action_id": "rollback", "value": "rollout-7", "style": "danger",
             "text": {"type": "plain_text", "text": "Roll back"}}]},
    ]


@dataclass
class Arrival:
    valid: bool
    form: dict[str, str]

    @property
    def payload(self) -> Json:
        parsed: Json = json.loads(self.form["payload"])
        return parsed


@dataclass
class StandInBot:
    """Verifies what Slack delivers, acks at once and says the rest later through the Web API, as the bot does.

    /deploy: ephemeral ack, a rollout message with buttons 0.5 s later, updated 0.3 s after that.
    /status: ephemeral ack, and a channel post before the ack.   /broken: HTTP 500.
    promote: a thread reply under the clicked message."""

    verifier: SignatureVerifier | None = None
    slack: AsyncWebClient | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    rollout_ts: str = ""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/slack/events", self._events)
        return app

    async def _events(self, request: web.Request) -> web.StreamResponse:
        assert self.verifier is not None and self.slack is not None
        body = await request.text()
        if request.content_type == "application/json":  # an Events API delivery: the Home tab opened
            if not self.verifier.is_valid_request(body, dict(request.headers)):
                return web.json_response({"error": "invalid request"}, status=401)
            event = json.loads(body)["event"]
            await self.slack.views_publish(user_id=event["user"], view={"type": "home", "blocks": rollout_blocks(5)})
            return web.Response()
        form = dict(parse_qsl(body, keep_blank_values=True))
        arrival = Arrival(self.verifier.is_valid_request(body, dict(request.headers)), form)
        self.arrivals.append(arrival)
        if not arrival.valid:
            return web.json_response({"error": "invalid request"}, status=401)
        if "payload" in arrival.form:
            payload = arrival.payload
            if payload["actions"][0]["action_id"] == "promote":
                self._later(self.slack.chat_postMessage(
                    channel=payload["channel"]["id"], thread_ts=payload["container"]["message_ts"],
                    text=f":white_check_mark: Promoted to 100% by <@{payload['user']['id']}>"))
            return web.Response()
        if form["command"] == "/broken":
            return web.Response(status=500)
        if form["command"] == "/status":
            await self.slack.chat_postMessage(channel=form["channel_id"], text=":large_green_circle: 7 healthy")
        if form["command"] == "/deploy":
            self._later(self._rollout(form["channel_id"]))
        return web.json_response({"response_type": "ephemeral", "text": f"Working on {form['command']} {form['text']}"})

    async def _rollout(self, channel: str) -> None:
        assert self.slack is not None
        await asyncio.sleep(0.5)
        posted = await self.slack.chat_postMessage(channel=channel, text="canary", blocks=rollout_blocks(5))
        self.rollout_ts = posted["ts"]
        await asyncio.sleep(0.3)
        await self.slack.chat_update(channel=channel, ts=self.rollout_ts, text="canary", blocks=rollout_blocks(50))

    def _later(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        await asyncio.gather(*self._tasks)


@dataclass
class Stage:
    bot: StandInBot
    endpoints: Json


@pytest.fixture(scope="module")
async def stage(example_config: Config) -> AsyncIterator[Stage]:
    """A World of its own, as Slack's bot URLs are fixed when it starts."""
    bot = StandInBot()
    listener = await start(Listener("bot", bot.app()))
    world = World(example_config, WorldOptions(bot_urls=[listener.url], slack_rate_per_s=50, slack_burst=50))
    bot.verifier = SignatureVerifier(world.signing_secret)
    endpoints = await world.start()
    bot.slack = AsyncWebClient(token=world.bot_token, base_url=endpoints["slack_api_url"])
    yield Stage(bot, endpoints)
    await bot.settle()
    await world.stop()
    await stop(listener)


class Terminal:
    """A person at the console: keys go in through an OS pipe, the screen is a StringIO."""

    def __init__(self, endpoints: Json) -> None:
        read, write = os.pipe()
        self.stdin = open(read, encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.keys = open(write, "w", encoding="utf-8")  # noqa: SIM115
        self.screen = io.StringIO()
        self.seen_up_to = 0
        self.console = asyncio.create_task(run_console(endpoints, stdin=self.stdin, stdout=self.screen, color=False))

    def type(self, line: str) -> None:
        self.keys.write(f"{line}\n")
        self.keys.flush()

    async def expect(self, text: str) -> str:
        """Wait (3 s at most) until `text` is on screen after what was expected before; returns the screen up to
        its end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while (at := self.screen.getvalue().find(text, self.seen_up_to)) < 0:
            assert loop.time() < deadline, f"{text!r} never appeared in:\n{self.screen.getvalue()[self.seen_up_to:]}"
            await asyncio.sleep(0.02)
        shown = self.screen.getvalue()[self.seen_up_to:at + len(text)]
        self.seen_up_to = at + len(text)
        return shown

    async def close(self) -> int:
        """Ctrl-D."""
        self.keys.close()
        code = await asyncio.wait_for(self.console, 3)
        self.stdin.close()
        return code


async def test_a_typed_command_reaches_the_bot_signed_and_its_answers_appear_as_they_come(stage: Stage) -> None:
    terminal = Terminal(stage.endpoints)
    await terminal.expect("oncall@#deploys> ")
    terminal.type("/deploy prediction-worker v3")
    ack = await terminal.expect("Working on /deploy prediction-worker v3")
    assert re.search(r"/deploy prediction-worker v3\n\d\d:\d\d:\d\d  chatops  \(only visible to you\)\n  Working",
                     ack), ack
    command = stage.bot.arrivals[-1]
    assert command.valid
    assert {k: command.form[k] for k in ("command", "text", "user_id", "channel_name")} == {
        "command": "/deploy", "text": "prediction-worker v3", "user_id": ONCALL, "channel_name": "deploys"}

    later = await terminal.expect("[ Promote ]     [ Roll back ]\n  :click promote  :click rollback\n")
    assert re.search(r"oncall@#deploys> \n\d\d:\d\d:\d\d  chatops\n  ⏳ Canary prediction-worker v3 at 5%", later), (
        "the rollout message is printed while the prompt waits")
    updated = await terminal.expect("at 50%")
    assert re.search(r"\d\d:\d\d:\d\d  chatops  \(updated\)\n  ⏳ Canary", updated), updated

    terminal.type(":click promote")
    reply = await terminal.expect("✅ Promoted to 100% by @oncall")
    click = stage.bot.arrivals[-1]
    assert click.valid
    assert click.payload["actions"][0]["action_id"] == "promote"
    assert click.payload["container"]["message_ts"] == stage.bot.rollout_ts
    assert click.payload["user"]["id"] == ONCALL
    assert re.search(r"  ↳ \d\d:\d\d:\d\d  chatops  \(thread of \d\d:\d\d:\d\d\)\n      ✅", reply), reply

    terminal.type(":click no-such-button")
    await terminal.expect("✗ no button 'no-such-button' in #deploys\noncall@#deploys> ")
    assert await terminal.close() == 0


async def test_as_and_in_switch_who_and_where_and_the_view_follows(stage: Stage) -> None:
    keys = "\n".join(["/status", ":as viewer", "/status now", ":in #alerts", ":users", ":channels", ":help",
                      ":bogus", "/status", ":quit", "/never-sent"])
    typed, screen = io.StringIO(keys), io.StringIO()
    assert await run_console(stage.endpoints, stdin=typed, stdout=screen, color=False) == 0
    out = screen.getvalue()
    as_oncall, _, rest = out.partition("oncall@#deploys> :as viewer\n")
    as_viewer, _, in_alerts = rest.partition("viewer@#deploys> :in #alerts\n")
    assert "Working on /status\n" in as_oncall and "🟢 7 healthy" in as_oncall
    opened, _, then = as_viewer.partition("viewer@#deploys> /status now\n")
    assert opened.startswith("— #deploys as viewer")
    assert "🟢 7 healthy" in opened, "the channel post is shown to the viewer too"
    assert "Working on /status\n" not in opened, "oncall's ephemeral is not"
    assert "Working on /status now" in then
    assert [a.form["user_id"] for a in stage.bot.arrivals[-3:]] == [ONCALL, VIEWER, VIEWER]
    assert stage.bot.arrivals[-1].form["channel_name"] == "alerts"
    assert "viewer@#alerts> :users\n" in in_alerts
    assert re.search(r"oncall +U07ONCALL01 +On-call Engineer\n", in_alerts)
    assert re.search(r"deploys +C07DEPLOYS1\n", in_alerts)
    assert ":click ACTION [VALUE]" in in_alerts
    assert "✗ unknown :bogus; :help lists what you can type" in in_alerts
    assert out.endswith("viewer@#alerts> :quit\n")
    assert typed.read() == "/never-sent", "nothing after :quit is read"


async def test_home_opens_the_home_tab_and_shows_what_the_app_published(stage: Stage) -> None:
    screen = io.StringIO()
    assert await run_console(stage.endpoints, stdin=io.StringIO(":home\n"), stdout=screen, color=False) == 0
    shown = screen.getvalue().partition("oncall@#deploys> :home\n")[2]
    assert shown.startswith("── your Home tab ──\n") and "Canary prediction-worker v3 at 5%" in shown
    assert "[ Promote ]     [ Roll back ]" in shown


async def test_a_command_nobody_answers_prints_the_error_in_red(world: World) -> None:
    """The session World has no bot URL, so Slack cannot deliver anything."""
    screen = io.StringIO()
    code = await run_console(world.endpoints(), user="lead", stdin=io.StringIO("/health all\n"), stdout=screen,
                             color=True)
    assert code == 0
    out = screen.getvalue()
    assert "\x1b[31m✗ /health: dispatch_failed (the bot is down or took more than 3 s)\x1b[0m" in out
    assert '/health failed with the error "dispatch_failed"' in out, "and Slackbot says so, as Slack does"


async def test_an_answer_other_than_200_is_an_error_and_unknown_names_are_refused(stage: Stage, world: World) -> None:
    screen = io.StringIO()
    await run_console(stage.endpoints, stdin=io.StringIO("/broken\n:as nobody\n"), stdout=screen, color=False)
    assert "✗ /broken: dispatch_failed (the bot answered HTTP 500)" in screen.getvalue()
    assert "✗ no user 'nobody'; :users lists them" in screen.getvalue()
    assert "oncall@#deploys> " in screen.getvalue().rpartition(":as nobody")[2], "the user stays who they were"
    screen = io.StringIO()
    assert await run_console(world.endpoints(), channel="nowhere", stdin=io.StringIO(""), stdout=screen) == 2
    assert screen.getvalue() == "✗ no channel 'nowhere'; :channels lists them\n"
