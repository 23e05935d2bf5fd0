"""`/promote <service> [full]`: the next stage now, or straight to 100%."""

from __future__ import annotations

from bot.domain.rollout import Command as RolloutCommand
from commands.rollout_control import RolloutControl, ServiceRequest


class Promote(RolloutControl):
    name = "promote"
    action = "promote"
    usage = "/promote <service> [full] [override=\"why\"]"
    summary = "Move a rollout to its next stage now, or with `full` straight to 100%, without waiting for analysis."
    examples = ("/promote prediction-worker", "/promote prediction-worker full")
    words = ("full",)
    options = ("override",)
    gated = True

    def command_for(self, request: ServiceRequest, user: str) -> RolloutCommand:
        return RolloutCommand("promote_full" if request.full else "promote", user, override=request.override)
