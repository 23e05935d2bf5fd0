"""The post-deploy watch's warning in a rollout's thread, and the answer to its Roll back button once the warning
is out of date."""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain.rollout import Rollout
from bot.render.blocks import Block, actions, button, clip, confirm, section
from bot.render.mrkdwn import escape

ACTION = "watch_rollback"


def watch_warning(rollout: Rollout, reason: str) -> tuple[str, list[Block]]:
    """The warning, with a Roll back button that names the revision it is about (the rollout's candidate): a
    click acts only while that revision still serves."""
    text = (f":warning: {escape(rollout.service)} looks worse since `{rollout.candidate}` was promoted: {reason}. "
            f"Chatops does not roll back on its own after promotion; roll back to `{rollout.stable}` if this is the "
            "deploy's doing.")
    label = clip(f"Roll back {rollout.candidate}", 75)
    asks = confirm(f"Roll back {rollout.service}?", f"Send 100% of {rollout.service} to {rollout.stable}; "
                   f"{rollout.candidate} stops serving.", "Roll back")
    return text, [section(text), actions(button(label, ACTION, str(rollout.id), "danger", asks=asks))]


def no_longer_serves(service: str, warned: str, routed: Sequence[tuple[str, int]]) -> str:
    now = ", ".join(f"`{revision}` {percent}%" for revision, percent in routed) or "nothing"
    return (f"`{warned}` no longer serves {service}, so this warning is out of date: {now} serves now. Nothing was "
            f"done; `/rollback {service}` if you still want to roll back.")
