"""The Slack manifest declares every command the bot answers, and exactly the bot scopes its code needs.

The scopes are derived, not listed by hand: an AST scan of bot/ and commands/ finds the Web API methods the code
calls through slack_sdk's clients, and Slack's OpenAPI spec (tests/contract/specs) says which scopes each method
accepts."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from commands.registry import all_commands
from tests.slack_spec import bot_scopes, spec_paths

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("bot", "commands")


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "slack-manifest.yaml").read_text())
    return loaded


def web_api_methods(source: str) -> set[str]:
    """Methods called as `client.chat_postMessage(...)` (slack_sdk names each method after the Web API's, dots
    as underscores) or `client.api_call("chat.postMessage")`; only names the spec knows count."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr == "api_call":
            named = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "api_method")]
            found |= {n.value for n in named if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        else:
            found.add(node.func.attr.replace("_", "."))
    return {method for method in found if f"/{method}" in spec_paths()}


def called_methods() -> set[str]:
    sources = (path.read_text() for package in SCANNED for path in sorted((ROOT / package).rglob("*.py")))
    return set().union(*(web_api_methods(source) for source in sources))


def test_every_command_is_in_the_manifest_and_nothing_else() -> None:
    declared = {c["command"]: c for c in manifest()["features"]["slash_commands"]}
    assert set(declared) == {c.slash for c in all_commands()}
    assert {c["url"] for c in declared.values()} == {"BOT_URL/slack/events"}
    assert manifest()["settings"]["interactivity"]["request_url"] == "BOT_URL/slack/events"


def test_the_scan_finds_client_method_calls_and_api_calls_by_name() -> None:
    source = """
async def report(client, store, http):
    await client.chat_postMessage(channel="C1", text="hi")
    await client.usergroups_users_list(usergroup="S1")
    await client.api_call("reactions.add", params={"name": "eyes"})
    await client.api_call(api_method="users.info", params={"user": "U1"})
    store.set_message(1, "C1", "1.2")
    await http.post("https://hooks.slack.com/actions/x")
"""
    assert web_api_methods(source) == {"chat.postMessage", "usergroups.users.list", "reactions.add", "users.info"}


def test_perspectival_scopes_map_to_the_slack_app_scope_that_replaced_them() -> None:
    """https://docs.slack.dev/reference/scopes/chat.write"""
    assert bot_scopes("chat.update") == {"chat:write"}
    assert bot_scopes("conversations.history") == {"channels:history", "groups:history", "im:history",
                                                   "mpim:history"}
    assert bot_scopes("auth.test") == set()


def test_the_manifest_grants_exactly_the_bot_scopes_the_code_calls_for() -> None:
    """Each called method has one of the scopes it accepts, and each scope is accepted by some called method;
    `commands` is there because slash commands are: "This scope enables shortcuts and slash commands for a
    workspace" (https://docs.slack.dev/reference/scopes/commands)."""
    called = called_methods()
    assert called, "no Web API call found in bot/ or commands/: the scan is broken"
    granted = set(manifest()["oauth_config"]["scopes"]["bot"])
    missing = {m: sorted(bot_scopes(m)) for m in sorted(called) if bot_scopes(m) and not bot_scopes(m) & granted}
    accepted = set().union(*(bot_scopes(m) for m in called))
    assert not missing, f"methods the bot calls without a scope for them in the manifest: {missing}"
    assert granted - {"commands"} <= accepted, f"unused scopes: {sorted(granted - {'commands'} - accepted)}"
    assert ("commands" in granted) == bool(manifest()["features"]["slash_commands"])
