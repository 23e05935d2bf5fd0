"""Each Events API event acted on once, however many times Slack delivers it.

A Bolt global middleware, so it holds for every way an event arrives (the HTTP route, Socket Mode). An
`event_callback` whose `event_id` was already taken, by this instance or another, is answered 200 at once and goes
no further: Slack stops retrying on a 2xx (https://docs.slack.dev/apis/events-api/#retries). The headers of a retry
(`X-Slack-Retry-Num`, `X-Slack-Retry-Reason`) are logged, not trusted: the first delivery may never have arrived, so a
retry of an event not yet seen is acted on like a first delivery. A payload without an `event_id` is not an event
Slack retries; it goes on unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.adapters.event_store import SeenEvents

log = logging.getLogger(__name__)

Middleware = Callable[..., Awaitable[BoltResponse | None]]


def _header(request: AsyncBoltRequest, name: str) -> str:
    values = request.headers.get(name) or []
    return str(values[0]) if values else ""


def once_per_event(seen: SeenEvents, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Middleware:
    async def middleware(body: Mapping[str, Any], request: AsyncBoltRequest,
                         next_: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        event_id = body.get("event_id")
        if body.get("type") != "event_callback" or not isinstance(event_id, str) or not event_id:
            await next_()
            return None
        retry = _header(request, "x-slack-retry-num")
        if await seen.first(event_id[:64], clock()):
            if retry:
                log.info("event %s arrived first as retry %s (%s)", event_id, retry,
                         _header(request, "x-slack-retry-reason"))
            await next_()
            return None
        log.info("event %s already taken; acknowledged retry %s (%s) without acting", event_id, retry or "-",
                 _header(request, "x-slack-retry-reason") or "no reason given")
        return BoltResponse(status=200, body="")

    return middleware
