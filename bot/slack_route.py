"""`POST /slack/events`: Slack's signed requests, checked before anything reads them.

Slack signs each request with the app's signing secret over `v0:<timestamp>:<raw body>`, and a request whose
timestamp is more than five minutes from local time is to be ignored as a possible replay
(https://api.slack.com/authentication/verifying-requests-from-slack). Bolt checks the same, but only after it has
parsed the body, so a forged body that does not parse, or a timestamp that is not a number, would get a 500 and a
traceback in the logs instead of a 401. Here the signature comes first, with slack_sdk's own verifier. A signed body
that does not parse is refused 400. A signed click whose action Bolt cannot read (its dispatcher indexes
`actions[0]` for every middleware and listener) goes straight to `unroutable`, which answers it; everything else is
Bolt's, with the body as it really reads.

Before any of it, the body is read up to MAX_BODY_BYTES and no further: a larger one is answered 413 unsigned,
unparsed and never held whole. And a signed slash command that does not say who sent it, where, and where to answer
(`user_id`, `channel_id`, `response_url`, which Slack sends with every command,
https://api.slack.com/interactivity/slash-commands#app_command_handling) is refused 400 before any work: a
`/health all` for nobody would probe the fleet and then fail on an empty response_url.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from bot.bounded_body import bounded_body

log = logging.getLogger(__name__)

Unroutable = Callable[[Mapping[str, Any]], Awaitable[None]]

MAX_BODY_BYTES = 1024 * 1024
"""Slack documents no maximum for the requests it sends an app. The largest it sends this bot is a click, whose
payload carries the message clicked: at most 50 blocks (https://docs.slack.dev/reference/block-kit/blocks), a section
at most 3,000 characters, and text Slack truncates past 40,000 characters
(https://api.slack.com/changelog/2018-04-truncating-really-long-messages): about 190,000 characters, some 570 KB
once JSON sits form-encoded in `payload=` (three bytes for each escaped character). A mebibyte holds that with room;
the bot's own messages are far smaller (bot/render/blocks.py clips them)."""

COMMAND_FIELDS = ("user_id", "channel_id", "response_url")


def parsed(body: bytes, content_type: str) -> dict[str, Any] | None:
    """The body as Bolt's `parse_body` reads it (JSON, or a form whose `payload` is JSON); None if it is not a
    mapping that way."""
    try:
        text = body.decode("utf-8")
        if content_type == "application/json" or text.startswith("{"):
            data = json.loads(text)
        else:
            form = dict(parse_qsl(text, keep_blank_values=True))
            data = json.loads(form["payload"]) if "payload" in text and "payload" in form else form
    except ValueError:  # not UTF-8, not JSON
        return None
    return data if isinstance(data, dict) else None


def _given(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def missing_fields(payload: Mapping[str, Any]) -> list[str]:
    """What a slash command lacks of COMMAND_FIELDS; nothing for any other request."""
    return [name for name in COMMAND_FIELDS if "command" in payload and not _given(payload.get(name))]


class SlackEvents:
    def __init__(self, bolt: AsyncApp, signing_secret: str, *, routable: Callable[[Mapping[str, Any]], bool],
                 unroutable: Unroutable) -> None:
        self._bolt = bolt
        self._verifier = SignatureVerifier(signing_secret)
        self._routable = routable
        self._unroutable = unroutable

    def signed(self, body: bytes, request: Request) -> bool:
        try:
            return self._verifier.is_valid_request(body, dict(request.headers))
        except ValueError:  # a timestamp that is not a number, a body that is not UTF-8
            return False

    async def handle(self, request: Request) -> Response:
        body = await bounded_body(request, MAX_BODY_BYTES)
        if body is None:
            log.warning("refused a request to /slack/events over %d bytes, unread", MAX_BODY_BYTES)
            return PlainTextResponse(f"a Slack request is at most {MAX_BODY_BYTES:,} bytes", status_code=413)
        if not self.signed(body, request):
            log.info("refused a request to /slack/events without a valid Slack signature")
            return JSONResponse({"error": "invalid request"}, status_code=401)
        payload = parsed(body, request.headers.get("content-type", "").split(";")[0])
        if payload is None:
            log.warning("refused a signed request to /slack/events whose body does not parse")
            return PlainTextResponse("the body is not a Slack request", status_code=400)
        if missing := missing_fields(payload):
            log.warning("refused a signed slash command without %s", ", ".join(missing))
            return PlainTextResponse(f"a slash command needs {', '.join(COMMAND_FIELDS)}; this one has no "
                                     f"{', '.join(missing)}", status_code=400)
        if not self._routable(payload):
            await self._unroutable(payload)
            return Response(status_code=200)
        bolt_request = to_async_bolt_request(request, body)
        if bolt_request.body != payload:
            # Bolt takes any form body that merely contains the word "payload" (in a command's text, a channel's
            # name) for a click's `payload=` and finds nothing in it; it gets the body as it is instead.
            read = AsyncBoltRequest(body=payload, headers=dict(request.headers), mode="socket_mode")
            bolt_request.body, bolt_request.context = read.body, read.context
        return to_starlette_response(await self._bolt.async_dispatch(bolt_request))
