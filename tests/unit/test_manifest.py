"""The Slack manifest declares every command the bot answers, each pointing at its events URL."""

from __future__ import annotations

from pathlib import Path

import yaml

from commands.registry import all_commands

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_is_in_the_manifest_and_nothing_else() -> None:
    manifest = yaml.safe_load((ROOT / "slack-manifest.yaml").read_text())
    declared = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert set(declared) == {c.slash for c in all_commands()}
    assert {c["url"] for c in declared.values()} == {"BOT_URL/slack/events"}
    assert manifest["settings"]["interactivity"]["request_url"] == "BOT_URL/slack/events"
