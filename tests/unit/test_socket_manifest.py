"""The Socket Mode variant of slack-manifest.yaml, made by the one-liner the README gives: Socket Mode on, and no
request URLs, which a Socket Mode app neither needs nor uses ("your app settings doesn't require or even allow you
to enter a Request URL", https://docs.slack.dev/apis/events-api/using-socket-mode)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ONE_LINER = ["sed", "-e", "s/socket_mode_enabled: false/socket_mode_enabled: true/", "-e", "/url: BOT_URL/d",
             "slack-manifest.yaml"]
"""As the README writes it: `sed -e 's/socket_mode_enabled: false/socket_mode_enabled: true/' -e '/url: BOT_URL/d'
slack-manifest.yaml > slack-manifest.socket.yaml`."""


@pytest.mark.skipif(shutil.which("sed") is None, reason="needs sed")
def test_the_readme_one_liner_makes_a_socket_mode_manifest_with_the_same_commands_and_scopes() -> None:
    made = subprocess.run(ONE_LINER, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    socket: dict[str, Any] = yaml.safe_load(made)
    http: dict[str, Any] = yaml.safe_load((ROOT / "slack-manifest.yaml").read_text())
    assert "BOT_URL" not in yaml.safe_dump(socket), "no request URL is left to fill in"
    assert socket["settings"]["socket_mode_enabled"] is True and socket["settings"]["interactivity"]["is_enabled"]
    assert [c["command"] for c in socket["features"]["slash_commands"]] == [
        c["command"] for c in http["features"]["slash_commands"]]
    assert all(set(c) == set(h) - {"url"} for c, h in zip(socket["features"]["slash_commands"],
                                                          http["features"]["slash_commands"], strict=True))
    assert socket["oauth_config"] == http["oauth_config"]
