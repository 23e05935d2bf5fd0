"""The scopes a bot token must hold for each Web API method the sandbox serves, and the scopes an install of
chatops grants: exactly the bot scopes of slack-manifest.yaml, as creating the app from that manifest does.

A call without its scope is refused `missing_scope` with `needed` and `provided` (Slack's OpenAPI spec lists
both on the conversations.* error schemas; on the wire `provided` is the token's scopes joined by commas, e.g.
`'needed': 'users:read.email', 'provided': 'channels:join,channels:read,chat:write,...'` in
https://github.com/elementary-data/elementary/pull/705).

Every answer to a token carries `X-OAuth-Scopes` and `X-Accepted-OAuth-Scopes`: "When using the Slack API you
can check the HTTP headers to see what OAuth scopes you have, and what the API method accepts"
(https://api.slack.com/docs/oauth-scopes, "Working with scopes"), comma-separated as in the response quoted
in https://github.com/slackapi/node-slack-sdk/issues/292.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parents[1] / "slack-manifest.yaml"

ACCEPTED: dict[str, tuple[str, ...]] = {
    "auth.test": (),
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "chat.delete": ("chat:write",),
    "conversations.history": ("channels:history", "groups:history", "im:history", "mpim:history"),
    "conversations.replies": ("channels:history", "groups:history", "im:history", "mpim:history"),
    "conversations.info": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.list": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "users.info": ("users:read",),
    "usergroups.list": ("usergroups:read",),
    "usergroups.users.list": ("usergroups:read",),
    "reactions.add": ("reactions:write",),
    "views.publish": (),
    "chat.getPermalink": (),
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
    "files.info": ("files:read",),
    "views.open": (),
    "views.update": (),
    "views.push": (),
}
"""The bot-token scopes each method accepts: the "Scopes" fact of https://docs.slack.dev/reference/methods/
<name>, as the OpenAPI spec's `security` lists them, with `chat:write` for the spec's `chat:write:bot`
("For Slack apps, chat:write replaces both chat:write:user and chat:write:bot",
https://docs.slack.dev/reference/scopes/chat.write). Every sandbox channel is public, so of the
conversation-type scopes the first (`channels:*`) is the one a call needs."""


def needed_scope(method: str) -> str | None:
    accepted = ACCEPTED[method]
    return accepted[0] if accepted else None


def manifest_bot_scopes(path: Path = MANIFEST) -> tuple[str, ...]:
    """The manifest's `oauth_config.scopes.bot`, in the manifest's order."""
    manifest = yaml.safe_load(path.read_text())
    scopes: Sequence[str] = manifest["oauth_config"]["scopes"]["bot"]
    return tuple(scopes)
