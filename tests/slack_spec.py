"""Slack's OpenAPI spec (tests/contract/specs), read for the scopes each Web API method accepts."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parent / "contract" / "specs" / "slack_web_openapi_v2.json"


NEWER_THAN_SPEC: dict[str, dict[str, Any]] = {
    method: {"post": {"security": [{"slackAuth": ["files:write"]}]}}
    for method in ("files.getUploadURLExternal", "files.completeUploadExternal")
}
"""Methods the spec (2021) predates, with the scope their pages name: "files:write"
(https://docs.slack.dev/reference/methods/files.getUploadURLExternal,
https://docs.slack.dev/reference/methods/files.completeUploadExternal)."""


@functools.cache
def spec_paths() -> dict[str, Any]:
    paths: dict[str, Any] = json.loads(SPEC.read_text())["paths"]
    return paths | {f"/{method}": operation for method, operation in NEWER_THAN_SPEC.items()}


def bot_scopes(method: str) -> set[str]:
    """The scopes the spec's `security` accepts for a method, classic perspectival names mapped to the ones a
    Slack app requests: "For Slack apps, chat:write replaces both chat:write:user and chat:write:bot"
    (https://docs.slack.dev/reference/scopes/chat.write; files:write likewise). `none` is no scope."""
    operation = next(iter(spec_paths()[f"/{method}"].values()))
    listed: Iterable[str] = (s for requirement in operation.get("security", []) for s in requirement["slackAuth"])
    return {s.removesuffix(":bot").removesuffix(":user") if s.count(":") == 2 else s
            for s in listed if s != "none"}
