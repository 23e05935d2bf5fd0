"""`/pause <service>`: stop the rollout where it is; traffic stays as it is, in the open."""

from __future__ import annotations

from bot.domain.rollout import Command as RolloutCommand
from commands.rollout_control import RolloutControl, ServiceRequest


class Pause(RolloutControl):
    name = "pause"
    action = "pause"
    usage = "/pause <service>"
    summary = ("Stop a rollout where it is: no more analysis or traffic moves until someone resumes, promotes or "
               "rolls back.")
    examples = ("/pause prediction-worker",)

    def command_for(self, request: ServiceRequest, user: str) -> RolloutCommand:
        return RolloutCommand("pause", user)
