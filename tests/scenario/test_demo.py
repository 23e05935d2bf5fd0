"""The README's tour: `chatops sandbox --demo` starts the world and the bot, runs every step, exits 0."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import EXAMPLE_CONFIG, ROOT


def test_the_demo_passes_every_step() -> None:
    result = subprocess.run([sys.executable, "-m", "bot", "sandbox", "--demo", "--config", str(EXAMPLE_CONFIG)],
                            capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "✓ every step did what it should" in result.stdout
    assert "rolled back at 5%" in result.stdout and "now serves 100%, untagged" in result.stdout
    assert "v4 waited its turn behind v3" in result.stdout and "freeze window `demo-maintenance`" in result.stdout
