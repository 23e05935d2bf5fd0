"""`/resume <service>`: carry on a paused rollout; its current stage starts a fresh analysis window."""

from __future__ import annotations

from bot.domain.rollout import Command as RolloutCommand
from commands.rollout_control import RolloutControl, ServiceRequest


class Resume(RolloutControl):
    name = "resume"
    action = "resume"
    usage = "/resume <service>"
    summary = "Carry on a paused rollout: its stage's traffic split is set again and a fresh window starts."
    examples = ("/resume prediction-worker",)

    def command_for(self, request: ServiceRequest, user: str) -> RolloutCommand:
        return RolloutCommand("resume", user)
