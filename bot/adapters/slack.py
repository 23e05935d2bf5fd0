"""Slack Web API and response_url, as the rest of the bot needs them: post, update, thread, ephemeral.

Slack answers 429 with Retry-After past a method's rate limit (about one post a second per channel, 50 updates
a minute, ...: https://docs.slack.dev/apis/web-api/rate-limits). Two clients, because a retry is safe for some
calls and not for others:
- the outbox's (`send`, `redraw`, `find_marked`) retries nothing: a retry underneath the outbox could post a
  message a second time (a connection dropped after Slack took the post), or hold a row for minutes of
  Retry-After while its lease runs out and another instance posts it too. The outbox waits out a 429 itself
  (`retry_after`) and looks for a message whose answer was lost before posting it again;
- everything else (commands' answers, Bolt's calls) waits out a 429, which Slack answers to a call it did not
  act on, so trying again cannot do anything twice; a dropped connection is tried again only for a read.

A response_url takes five posts within 30 minutes
(https://api.slack.com/interactivity/handling#message_responses). While a command runs, its answers go there;
once Slack refuses the URL, they go to the invoker as ephemeral messages in the same channel instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

Blocks = list[dict[str, Any]]
MARKER_EVENT = "chatops_outbox"
PAGE = 200
"""Messages a page when searching history: "We recommend no more than 200 results at a time"
(https://docs.slack.dev/reference/methods/conversations.history#pagination)."""
READS = frozenset({"auth.test", "chat.getPermalink", "conversations.history", "conversations.replies",
                   "conversations.info", "conversations.list", "users.info", "usergroups.users.list"})
"""Methods that change nothing, so a call whose connection dropped may be made again."""


class SlackUnreachable(ConnectionError):
    """Slack did not answer: the connection failed, dropped or timed out. A post may or may not have landed."""


def retry_after(error: SlackApiError) -> float | None:
    """The seconds a 429 asks to wait ("a Retry-After HTTP header containing the number of seconds until you can
    retry", https://docs.slack.dev/apis/web-api/rate-limits); None for any other answer."""
    if error.response.status_code != 429:
        return None
    headers = {name.lower(): value for name, value in (error.response.headers or {}).items()}
    value = headers.get("retry-after")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


class _ReadsAfterConnectionErrors(AsyncConnectionErrorRetryHandler):
    """slack_sdk's connection-error retry, for reads only: a post whose connection dropped may have landed."""

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        method = request.url.rstrip("/").rsplit("/", 1)[-1]
        return method in READS and await super()._can_retry_async(state=state, request=request, response=response,
                                                                   error=error)


@dataclass(frozen=True)
class Posted:
    channel: str
    ts: str


@dataclass(frozen=True)
class Invoker:
    """Who a response_url answers, and where: the fallback once the URL is spent or expired."""

    channel: str
    user: str


class SlackGateway:
    def __init__(self, token: str, *, base_url: str | None = None, http: httpx.AsyncClient | None = None,
                 timeout_s: int = 10) -> None:
        kwargs: dict[str, Any] = {"token": token, "timeout": timeout_s}
        if base_url:
            kwargs["base_url"] = base_url
        self.timeout_s = timeout_s
        self.client = AsyncWebClient(**kwargs, retry_handlers=[
            _ReadsAfterConnectionErrors(max_retry_count=2), AsyncRateLimitErrorRetryHandler(max_retry_count=6)])
        self._once = AsyncWebClient(**kwargs, retry_handlers=[])
        self._http = http or httpx.AsyncClient(timeout=10)
        self._invokers: dict[str, Invoker] = {}

    async def post(self, channel: str, text: str, blocks: Blocks | None = None,
                   thread_ts: str | None = None) -> Posted:
        """A message that is not the outbox's (a command's answer): a 429 is waited out here."""
        response = await self.client.chat_postMessage(channel=channel, text=text, blocks=blocks, thread_ts=thread_ts,
                                                      unfurl_links=False)
        return Posted(str(response["channel"]), str(response["ts"]))

    async def send(self, channel: str, text: str, *, marker: int, blocks: Blocks | None = None,
                   thread_ts: str | None = None, attachments: Blocks | None = None) -> Posted:
        """One call, for the outbox: `marker` goes with the message as metadata
        (https://docs.slack.dev/messaging/message-metadata), so that a message whose answer was lost can be found
        again by it (`find_marked`). Raises SlackApiError (see `retry_after`) or SlackUnreachable."""
        metadata = {"event_type": MARKER_EVENT, "event_payload": {"id": marker}}
        async with _unreachable():
            response = await self._once.chat_postMessage(channel=channel, text=text, blocks=blocks,
                                                         attachments=attachments, thread_ts=thread_ts,
                                                         unfurl_links=False, metadata=metadata)
        return Posted(str(response["channel"]), str(response["ts"]))

    async def redraw(self, channel: str, ts: str, text: str, blocks: Blocks | None = None,
                     attachments: Blocks | None = None) -> None:
        """One chat.update, for the outbox."""
        async with _unreachable():
            await self._once.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [],
                                         attachments=attachments or [])

    async def upload(self, channel: str, thread_ts: str | None, filename: str, title: str, content: bytes, *,
                     marker: int, before_sharing: Callable[[], Awaitable[None]]) -> str:
        """Slack's upload flow, one call each, for the outbox: files.getUploadURLExternal, the bytes POSTed to the
        URL it gives, files.completeUploadExternal sharing the file into the thread
        (https://docs.slack.dev/reference/methods/files.getUploadURLExternal). A file share carries no metadata,
        so `marker` goes into the file's name (`marked_name`), by which `find_uploaded` finds it again. Returns
        the file's id. `before_sharing` runs just before the call that shares it (the outbox renews its lease there).
        Raises SlackApiError or SlackUnreachable (also for an upload URL that did not answer 200)."""
        name = marked_name(filename, marker)
        async with _unreachable():
            issued = await self._once.files_getUploadURLExternal(filename=name, length=len(content))
        try:
            answer = await self._http.post(str(issued["upload_url"]), content=content)
        except httpx.HTTPError as exc:
            raise SlackUnreachable(str(exc) or type(exc).__name__) from exc
        if answer.status_code != 200:
            raise SlackUnreachable(f"the upload URL answered HTTP {answer.status_code}: {answer.text[:200]}")
        file_id = str(issued["file_id"])
        await before_sharing()
        async with _unreachable():
            await self._once.files_completeUploadExternal(files=[{"id": file_id, "title": title}],
                                                          channel_id=channel, thread_ts=thread_ts)
        return file_id

    async def find_uploaded(self, channel: str, filename: str, marker: int, *, thread_ts: str | None,
                            oldest: float) -> str | None:
        """The id of a file shared under its marked name since `oldest`, as `find_marked` looks for a message."""
        name = marked_name(filename, marker)
        found = await self._find(channel, lambda m: any(f.get("name") == name for f in m.get("files") or []),
                                 thread_ts=thread_ts, oldest=oldest)
        return next(str(f["id"]) for f in found["files"] if f.get("name") == name) if found is not None else None

    async def find_marked(self, channel: str, marker: int, *, thread_ts: str | None, oldest: float) -> str | None:
        """The ts of a message posted with `marker` since `oldest` (epoch seconds): in the thread of `thread_ts`,
        or among the channel's messages."""
        found = await self._find(channel, lambda m: _marked(m, marker), thread_ts=thread_ts, oldest=oldest)
        return str(found["ts"]) if found is not None else None

    async def _find(self, channel: str, wanted: Callable[[dict[str, Any]], bool], *, thread_ts: str | None,
                    oldest: float) -> dict[str, Any] | None:
        """The first message since `oldest` that is `wanted`. Every page since `oldest` is read, following
        `next_cursor` (https://docs.slack.dev/reference/methods/conversations.history#pagination,
        https://docs.slack.dev/reference/methods/conversations.replies): a busy channel has more than a page."""
        kwargs: dict[str, Any] = {"channel": channel, "oldest": f"{oldest:.6f}", "include_all_metadata": True,
                                  "limit": PAGE}
        cursor = ""
        while True:
            async with _unreachable():
                if thread_ts is not None:
                    response = await self._once.conversations_replies(ts=thread_ts, cursor=cursor or None, **kwargs)
                else:
                    response = await self._once.conversations_history(cursor=cursor or None, **kwargs)
            for message in response.get("messages") or []:
                if wanted(message):
                    return dict(message)
            cursor = str((response.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return None

    async def permalink(self, channel: str, ts: str) -> str | None:
        """A message's link (https://docs.slack.dev/reference/methods/chat.getPermalink); None if Slack has none."""
        try:
            response = await self.client.chat_getPermalink(channel=channel, message_ts=ts)
        except SlackApiError as exc:
            log.info("no permalink for %s in %s: %s", ts, channel, exc.response.get("error"))
            return None
        return str(response["permalink"])

    async def usergroup_members(self, group: str) -> frozenset[str]:
        """One usergroups.users.list (https://docs.slack.dev/reference/methods/usergroups.users.list): the members of
        an enabled group; a disabled one is asked without `include_disabled`, since it should grant nothing. No
        retry here: the cache (usergroups.py) waits out a 429 itself. Raises SlackApiError or SlackUnreachable."""
        async with _unreachable():
            response = await self._once.usergroups_users_list(usergroup=group)
        return frozenset(str(user) for user in response.get("users") or [])

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        """views.publish (https://docs.slack.dev/reference/methods/views.publish): the user's Home tab, replaced
        whole. Tier 4; a 429 is waited out by the client."""
        await self.client.views_publish(user_id=user, view=view)

    async def ephemeral(self, channel: str, user: str, text: str, blocks: Blocks | None = None) -> None:
        await self.client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)

    @contextlib.contextmanager
    def answering(self, response_url: str, channel: str, user: str) -> Iterator[None]:
        """Within this block, answers to `response_url` that Slack refuses reach `user` in `channel` ephemerally."""
        self._invokers[response_url] = Invoker(channel, user)
        try:
            yield
        finally:
            self._invokers.pop(response_url, None)

    async def respond(self, response_url: str, text: str, blocks: Blocks | None = None, *,
                      in_channel: bool = False, replace_original: bool = False) -> None:
        """Answer through the command's response_url: works even where the bot is not a channel member. A click in
        the Home tab has none (Slack sends no response_url from a view): its answer is the audit row the tab shows."""
        if not response_url.startswith(("https://", "http://")):
            log.info("no response_url to answer on (a click in a view); the audit row tells the outcome")
            return
        body: dict[str, Any] = {"text": text, "response_type": "in_channel" if in_channel else "ephemeral",
                                "replace_original": replace_original}
        if blocks:
            body["blocks"] = blocks
        response = await self._http.post(response_url, json=body)
        if response.status_code < 300:
            return
        invoker = self._invokers.get(response_url)
        if invoker is None or response.status_code == 400:  # 400: the reply itself is malformed, not the URL
            log.warning("response_url refused the reply: HTTP %s %s", response.status_code, response.text[:200])
            return
        log.info("response_url refused the reply (HTTP %s %s); telling %s in %s ephemerally instead",
                 response.status_code, response.text[:200], invoker.user, invoker.channel)
        try:
            await self.ephemeral(invoker.channel, invoker.user, text, blocks)
        except SlackApiError as exc:
            log.warning("could not tell %s in %s either: %s", invoker.user, invoker.channel,
                        exc.response.get("error"))

    async def post_or_respond(self, channel: str, response_url: str, text: str,
                              blocks: Blocks | None = None) -> Posted | None:
        """Post in the channel; where the bot was not invited, answer in channel through response_url."""
        try:
            return await self.post(channel, text, blocks)
        except SlackApiError as exc:
            if exc.response.get("error") not in ("not_in_channel", "channel_not_found"):
                raise
        await self.respond(response_url, text, blocks, in_channel=True)
        return None

    async def aclose(self) -> None:
        await self._http.aclose()


def marked_name(filename: str, marker: int) -> str:
    """`chart.png` sent by outbox row 42 is `chart-42.png`."""
    stem, dot, suffix = filename.rpartition(".")
    return f"{stem}-{marker}.{suffix}" if dot else f"{filename}-{marker}"


def _marked(message: dict[str, Any], marker: int) -> bool:
    metadata = message.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    return bool(metadata.get("event_type") == MARKER_EVENT and payload.get("id") == marker)


@contextlib.asynccontextmanager
async def _unreachable() -> AsyncIterator[None]:
    """aiohttp's transport errors and timeouts, as the one error the outbox handles: no answer, outcome unknown."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SlackUnreachable(str(exc) or type(exc).__name__) from exc
