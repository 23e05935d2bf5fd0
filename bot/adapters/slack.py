"""Slack Web API and response_url, as the rest of the bot needs them: post, update, thread, ephemeral.

Slack answers 429 with Retry-After past a method's rate limit (about one post a second per channel, 50 updates
a minute, ...: https://docs.slack.dev/apis/web-api/rate-limits); slack_sdk's rate-limit retry handler sleeps
that long and tries again, so a message is late rather than lost.

A response_url takes five posts within 30 minutes
(https://api.slack.com/interactivity/handling#message_responses). While a command runs, its answers go there;
once Slack refuses the URL, they go to the invoker as ephemeral messages in the same channel instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

Blocks = list[dict[str, Any]]
MARKER_EVENT = "chatops_outbox"


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
    def __init__(self, token: str, *, base_url: str | None = None, http: httpx.AsyncClient | None = None) -> None:
        kwargs: dict[str, Any] = {"token": token, "timeout": 10}
        if base_url:
            kwargs["base_url"] = base_url
        self.client = AsyncWebClient(**kwargs)
        self.client.retry_handlers = [
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=6),
        ]
        self._http = http or httpx.AsyncClient(timeout=10)
        self._invokers: dict[str, Invoker] = {}

    async def post(self, channel: str, text: str, blocks: Blocks | None = None, thread_ts: str | None = None,
                   attachments: Blocks | None = None, marker: int | None = None) -> Posted:
        """`marker` goes with the message as metadata (https://docs.slack.dev/messaging/message-metadata), so the
        message can be found again by it (`find_marked`)."""
        metadata = {"event_type": MARKER_EVENT, "event_payload": {"id": marker}} if marker is not None else None
        response = await self.client.chat_postMessage(channel=channel, text=text, blocks=blocks,
                                                      attachments=attachments, thread_ts=thread_ts, unfurl_links=False,
                                                      metadata=metadata)
        return Posted(str(response["channel"]), str(response["ts"]))

    async def find_marked(self, channel: str, marker: int, *, thread_ts: str | None, oldest: float) -> str | None:
        """The ts of a message posted with `marker` since `oldest` (epoch seconds): in the thread of `thread_ts`,
        or among the channel's messages."""
        kwargs: dict[str, Any] = {"channel": channel, "oldest": f"{oldest:.6f}", "include_all_metadata": True,
                                  "limit": 200}
        if thread_ts is not None:
            response = await self.client.conversations_replies(ts=thread_ts, **kwargs)
        else:
            response = await self.client.conversations_history(**kwargs)
        for message in response.get("messages") or []:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == MARKER_EVENT and (metadata.get("event_payload") or {}).get("id") == marker:
                return str(message["ts"])
        return None

    async def update(self, channel: str, ts: str, text: str, blocks: Blocks | None = None,
                     attachments: Blocks | None = None) -> None:
        await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [],
                                      attachments=attachments or [])

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
        """Answer through the command's response_url: works even where the bot is not a channel member."""
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
