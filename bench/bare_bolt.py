#!/usr/bin/env python3
"""The baseline server of bench/ack_latency.py and bench/load.py: a bare slack-bolt AsyncApp with an ack-only
listener for each command it is given, served as the bot is served (Starlette + `AsyncSlackRequestHandler` +
uvicorn, same loop and HTTP stack).

Like the bot, it is a single-workspace app whose `AsyncWebClient` carries the bot token and points at the
sandbox's Slack Web API, so Bolt's single-team authorization calls `auth.test` once against the emulator
and caches it; it reads the token and the signing secret from the sandbox's Secret Manager, as the bot
does. Nothing else: no command framework, no audit, no follow-up.

    .venv/bin/python bench/bare_bolt.py --port P --secret-manager-endpoint URL --project P \
        --slack-api-url URL [--command /help ...]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import uvicorn
from common import secret_value
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def build(signing_secret: str, token: str, slack_api_url: str, commands: list[str]) -> Starlette:
    bolt = AsyncApp(signing_secret=signing_secret, client=AsyncWebClient(token=token, base_url=slack_api_url),
                    process_before_response=False)

    async def ack_only(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()

    for command in commands:
        bolt.command(command)(ack_only)
    handler = AsyncSlackRequestHandler(bolt)

    async def events(request: Request) -> Response:
        response: Response = await handler.handle(request)
        return response

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])


def main() -> int:
    parser = argparse.ArgumentParser(description="bare slack-bolt baseline of bench/ack_latency.py and bench/load.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret-manager-endpoint", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--metadata-host", required=True, help="the sandbox's metadata server, host:port")
    parser.add_argument("--slack-api-url", required=True)
    parser.add_argument("--command", action="append", help="a command to ack (repeat; default /help)")
    args = parser.parse_args()
    where = {"secret_manager_endpoint": args.secret_manager_endpoint, "project": args.project,
             "bot_env": {"GCE_METADATA_HOST": args.metadata_host}}
    app = build(secret_value(where, "slack-signing-secret"), secret_value(where, "slack-bot-token"),
                args.slack_api_url, args.command or ["/help"])
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
