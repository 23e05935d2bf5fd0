"""Slack's side of the Events API: what a person does that Slack tells the app about, delivered as Slack delivers it.

Opening the app's Home tab makes Slack send `app_home_opened` (https://docs.slack.dev/reference/events/app_home_opened:
`user`, `channel` (the app's DM with them), `tab` "home", `event_ts`, and `view`, the tab as last published, only
once one was). It comes in the outer `event_callback` envelope (https://docs.slack.dev/apis/events-api/#callback-field:
`token`, `team_id`, `api_app_id`, `event`, `type`, `event_id`, `event_time`, `authorizations`,
`is_ext_shared_channel`, `event_context`) as a signed JSON POST to the app's Request URL, which the app must answer
with a 2xx within three seconds. A delivery that fails (`http_timeout`, `connection_failed`, `http_error`: a status
that is not 2xx) is retried up to 3 times, "nearly immediately", after 1 minute and after 5 minutes, each retry with
`X-Slack-Retry-Num` and `X-Slack-Retry-Reason`, unless the failed answer carried `X-Slack-No-Retry: 1`
(https://docs.slack.dev/apis/events-api/#retries; delays in the `slack` limits). The channel id of the DM is
`D` + the user id's tail (assumption: Slack's is opaque). The user side's routes:

    POST /home  {"user": "oncall", "duplicates"?: 0-3, "retry_reason"?: "http_timeout", "wait_s"?: 3}
        opens the user's Home tab: delivers app_home_opened, waits up to `wait_s` for the app to publish the tab,
        and answers {"status", "ack_ms", "error", "event_id", "deliveries": [{"retry", "status", "error"}],
        "updated": bool, "view": <the tab the person sees, or null>}. `duplicates` sends the same event again that
        many times at once, as retries (Slack does when an answer is lost after the app acted), for tests.
    GET  /home?user=oncall   the tab the person sees now, without opening it.
    POST /events/verify      what Slack does when the Request URL is saved in the app's settings: a signed
        `url_verification` with a random `challenge`, which the app must echo back "in plaintext", as JSON
        `{"challenge": ...}` or as `challenge=...` form data (https://docs.slack.dev/reference/events/url_verification);
        answers {"verified": bool, "status", "error"}.

A click in the Home tab is `POST /actions` with `"view": "home"` (sandbox/slack_user.py), built here: a
`block_actions` payload with `container.type` "view" and the `view` it was in, and no channel, message or
response_url (https://docs.slack.dev/reference/interaction-payloads/block_actions-payload). A button with a `confirm`
dialog is only sent once the person confirms ("confirmed": true); otherwise nothing reaches the app and the user side
answers 409 `confirmation_required` (assumption: Slack sends nothing when the dialog is cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from sandbox.home_tabs import Json
from sandbox.slack_home import buttons
from sandbox.slack_signing import sign
from sandbox.slack_workspace import APP_ID, BOT, User, Workspace

USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
REASONS = ("http_timeout", "too_many_redirects", "connection_failed", "ssl_error", "http_error", "unknown_error")


class Unclickable(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass(frozen=True)
class Attempt:
    retry: int
    status: int
    ack_ms: float
    error: str | None
    no_retry: bool = False

    def json(self) -> Json:
        return {"retry": self.retry, "status": self.status, "ack_ms": round(self.ack_ms, 3), "error": self.error}


def dm_channel(user: User) -> str:
    return "D" + user.id[1:]


class EventDelivery:
    def __init__(self, workspace: Workspace, signing_secret: str, *, token: str, next_url: Callable[[], str | None],
                 session: Callable[[], aiohttp.ClientSession],
                 socket: Callable[[Json], Awaitable[tuple[int, float, str | None] | None]] | None = None) -> None:
        self.workspace = workspace
        self._secret = signing_secret
        self._token = token
        self._next_url = next_url
        self._session = session
        self._socket = socket  # in Socket Mode: the envelope goes over the app's WebSocket (sandbox/slack_socket.py)
        self._retries: set[asyncio.Task[None]] = set()
        self.sent: list[tuple[str, Attempt]] = []
        """Every delivery attempt, by event_id: what tests and the console can look at."""

    def envelope(self, event: Json) -> Json:
        workspace = self.workspace
        return {"token": self._token, "team_id": workspace.team_id, "api_app_id": APP_ID, "event": event,
                "type": "event_callback", "event_id": "Ev" + secrets.token_hex(5).upper(),
                "event_time": int(time.time()),
                "authorizations": [{"enterprise_id": None, "team_id": workspace.team_id, "user_id": BOT.id,
                                    "is_bot": True, "is_enterprise_install": False}],
                "is_ext_shared_channel": False, "event_context": "4-" + secrets.token_urlsafe(24)}

    async def verify_url(self, _: web.Request) -> web.Response:
        challenge = secrets.token_urlsafe(36)
        body = json.dumps({"token": self._token, "challenge": challenge, "type": "url_verification"})
        url = self._next_url()
        if url is None:
            return web.json_response({"verified": False, "status": 0, "error": "connection_failed"})
        try:
            async with self._session().post(f"{url}/slack/events", data=body.encode(), headers=self._headers(body),
                                            timeout=aiohttp.ClientTimeout(total=self.workspace.limits.event_ack_s)
                                            ) as response:
                status, text = response.status, await response.text()
        except TimeoutError:
            return web.json_response({"verified": False, "status": 0, "error": "http_timeout"})
        except aiohttp.ClientError:
            return web.json_response({"verified": False, "status": 0, "error": "connection_failed"})
        return web.json_response({"verified": status == 200 and _echoes(text, challenge), "status": status,
                                  "error": None if status == 200 else "http_error"})

    def _headers(self, body: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Accept": "application/json,*/*",
                "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": sign(self._secret, timestamp, body)}

    async def attempt(self, envelope: Json, retry: int = 0, reason: str = "") -> Attempt:
        """One signed POST to the next bot URL, judged as Slack judges it."""
        body = json.dumps(envelope)
        headers = self._headers(body)
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": reason}
        url = self._next_url()
        started = time.perf_counter()
        via_socket = await self._socket(envelope) if self._socket is not None else None
        if via_socket is not None:  # the socket retries an event it was not acked itself: no retries here
            found = Attempt(retry, via_socket[0], via_socket[1], via_socket[2], no_retry=True)
        elif url is None:
            found = Attempt(retry, 0, 0.0, "connection_failed")
        else:
            try:
                async with self._session().post(f"{url}/slack/events", data=body.encode(), headers=headers,
                                                timeout=aiohttp.ClientTimeout(
                                                    total=self.workspace.limits.event_ack_s)) as response:
                    await response.read()
                    ok = 200 <= response.status < 300
                    found = Attempt(retry, response.status, _ms(started), None if ok else "http_error",
                                    no_retry=response.headers.get("X-Slack-No-Retry") == "1")
            except TimeoutError:
                found = Attempt(retry, 0, _ms(started), "http_timeout")
            except aiohttp.ClientError:
                found = Attempt(retry, 0, _ms(started), "connection_failed")
        self.sent.append((str(envelope["event_id"]), found))
        return found

    async def deliver(self, event: Json, *, duplicates: int = 0, reason: str = "http_timeout") -> tuple[Json,
                                                                                                       list[Attempt]]:
        """The first attempt and any forced duplicates now; Slack's own retries of a failure in the background."""
        envelope = self.envelope(event)
        first = await self.attempt(envelope)
        attempts = [first]
        for retry in range(1, duplicates + 1):
            attempts.append(await self.attempt(envelope, retry, reason))
        if first.error is not None and not first.no_retry and not duplicates:
            task = asyncio.create_task(self._retry(envelope, first.error))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
        return envelope, attempts

    async def _retry(self, envelope: Json, reason: str) -> None:
        limits = self.workspace.limits
        for retry, delay in enumerate((limits.event_retry_1_s, limits.event_retry_2_s, limits.event_retry_3_s), 1):
            await asyncio.sleep(delay)
            attempt = await self.attempt(envelope, retry, reason)
            if attempt.error is None or attempt.no_retry:
                return
            reason = attempt.error

    async def close(self, _: web.Application | None = None) -> None:
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)

    # --- the user side's routes -------------------------------------------------------------------------

    def _user(self, ref: object) -> User | None:
        try:
            return self.workspace.lookup_user(str(ref or ""))
        except KeyError:
            return None

    async def open_home(self, request: web.Request) -> web.Response:
        try:
            spec = json.loads(await request.text())
        except json.JSONDecodeError:
            spec = None
        if not isinstance(spec, dict):
            return _refused(400, "expected a JSON object")
        user = self._user(spec.get("user"))
        if user is None or user.is_bot:
            return _refused(404, f"no user {spec.get('user')!r}")
        duplicates, reason = spec.get("duplicates", 0), spec.get("retry_reason", "http_timeout")
        if not isinstance(duplicates, int) or not 0 <= duplicates <= 3 or reason not in REASONS:
            return _refused(400, f"duplicates is 0 to 3 and retry_reason one of {', '.join(REASONS)}")
        homes = self.workspace.homes
        before, published = homes.version(user.id), homes.next_publish(user.id)
        event: Json = {"type": "app_home_opened", "user": user.id, "channel": dm_channel(user), "tab": "home",
                       "event_ts": self.workspace.next_ts()}
        if user.id in homes.tabs:
            event["view"] = homes.tabs[user.id]
        envelope, attempts = await self.deliver(event, duplicates=duplicates, reason=reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(published.wait(), float(spec.get("wait_s", 3.0)))
        first = attempts[0]
        return web.json_response({"status": first.status, "ack_ms": round(first.ack_ms, 3), "error": first.error,
                                  "event_id": envelope["event_id"], "deliveries": [a.json() for a in attempts],
                                  "updated": homes.version(user.id) != before, "view": homes.tabs.get(user.id)})

    async def home_of(self, request: web.Request) -> web.Response:
        user = self._user(request.query.get("user"))
        if user is None:
            return _refused(404, f"no user {request.query.get('user')!r}")
        return web.json_response({"view": self.workspace.homes.tabs.get(user.id)})


def home_click(workspace: Workspace, user: User, spec: Mapping[str, Any], *, token: str) -> Json:
    """The block_actions payload of `user` clicking a button of their Home tab; Unclickable if they cannot."""
    tab = workspace.homes.tabs.get(user.id)
    if tab is None:
        raise Unclickable(404, "view_not_found")
    for block_id, button in buttons(tab["blocks"]):
        if (button.get("action_id") == spec.get("action_id") and spec.get("value") in (None, button.get("value"))
                and spec.get("block_id") in (None, block_id)):
            break
    else:
        raise Unclickable(404, f"no button {spec.get('action_id')!r} in {user.name}'s Home tab")
    if "confirm" in button and spec.get("confirmed") is not True:
        raise Unclickable(409, "confirmation_required")
    action = {"action_id": button["action_id"], "block_id": block_id, "text": button["text"],
              "value": button.get("value"), "type": "button", "action_ts": f"{time.time():.6f}"}
    if "style" in button:
        action["style"] = button["style"]
    return {
        "type": "block_actions",
        "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": workspace.team_id},
        "api_app_id": APP_ID, "token": token, "container": {"type": "view", "view_id": tab["id"]},
        "trigger_id": f"{secrets.randbelow(10**13)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}",
        "team": {"id": workspace.team_id, "domain": workspace.team_domain}, "enterprise": None,
        "is_enterprise_install": False, "view": tab, "state": {"values": {}},
        "actions": [{k: v for k, v in action.items() if v is not None}],
    }


def _echoes(text: str, challenge: str) -> bool:
    if text == challenge or dict(parse_qsl(text)).get("challenge") == challenge:
        return True
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(answer, dict) and answer.get("challenge") == challenge


def _refused(status: int, error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error}, status=status)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
