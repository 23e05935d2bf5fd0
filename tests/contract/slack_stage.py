"""The Slack emulator on a port of its own, for contract tests that drive it with slack_sdk's real clients, with its
faults (sandbox/faults.py) at hand."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.faults import Api, Faults
from sandbox.serving import Listener, start
from sandbox.slack_api import METHODS, slack_api_app
from sandbox.slack_limits import SlackLimits
from sandbox.slack_workspace import Workspace

CHANNELS = {"deploys": "C07DEPLOYS1", "alerts": "C07ALERTS01"}
DEPLOYS = CHANNELS["deploys"]
ONCALL, VIEWER, LEAD = "U07ONCALL01", "U07VIEWER01", "U07LEAD0001"
EVERY_SCOPE = ("commands", "chat:write", "channels:history", "channels:read", "users:read", "usergroups:read",
               "reactions:write", "files:write", "files:read")
"""Every scope a method of the emulator needs, for tests about the methods rather than their scopes."""


@dataclass
class Slack:
    workspace: Workspace
    url: str
    faults: Faults

    def client(self, token: str | None = None) -> AsyncWebClient:
        return AsyncWebClient(token=token or self.workspace.bot_token, base_url=f"{self.url}/api/")


async def slack_api(*, scopes: tuple[str, ...] = EVERY_SCOPE, **limits: Any) -> tuple[Slack, Listener]:
    """A workspace whose bot token holds `scopes`, with Slack's published limits but those given."""
    workspace = Workspace(bot_token=f"xoxb-{secrets.token_hex(12)}", channels=CHANNELS, scopes=scopes,
                          limits=SlackLimits(**limits))
    faults = Faults([Api("Slack Web API", "slack", METHODS)])
    listener = await start(Listener("slack_api", slack_api_app(workspace, faults)))
    return Slack(workspace, listener.url, faults), listener


async def api_error(call: Awaitable[Any]) -> dict[str, Any]:
    """The body of the SlackApiError the call raises."""
    with pytest.raises(SlackApiError) as raised:
        await call
    data: dict[str, Any] = raised.value.response.data
    return data
