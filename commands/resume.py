"""`/resume <service>`: carry on a paused rollout; its current stage starts a fresh analysis window."""

from __future__ import annotations

from bot.domain.rollout import Command as RolloutCommand
from commands.rollout_control import RolloutControl, ServiceRequest


class Resume(RolloutControl):
    name = "resume"
    action = "resume"
    usage = "/resume <service> [override=\"why\"]"
    summary = "Carry on a paused rollout: its stage's traffic split is set again and a fresh window starts."
    examples = ("/resume prediction-worker", "/resume prediction-worker override=\"hotfix for tonight's props\"")
    options = ("override",)
    gated = True

    def command_for(self, request: ServiceRequest, user: str) -> RolloutCommand:
        return RolloutCommand("resume", user, override=request.override)
