"""`/rollback <service> [to=<revision>]`: all traffic back to the stable (or named) revision, in one call.

Mid-rollout the reconciler does it and the rollout ends; after a finished deploy the command does it
itself, to the revision that served before that deploy.
"""

from __future__ import annotations

import asyncio
import difflib

from bot.adapters.cloudrun import CloudRunUnavailable
from bot.domain.rollout import Command as RolloutCommand
from bot.domain.rollout import State
from commands.framework import Invocation, Runtime
from commands.rollout_control import RolloutControl, ServiceRequest


class Rollback(RolloutControl):
    name = "rollback"
    action = "rollback"
    usage = "/rollback <service> [to=<revision>]"
    summary = ("Send all traffic back to the last stable revision (or `to=` a named one) in one Cloud Run call; "
               "a rollout in progress ends.")
    examples = ("/rollback prediction-worker", "/rollback prediction-worker to=prediction-worker-00041-xoq")
    options = ("to",)

    def command_for(self, request: ServiceRequest, user: str) -> RolloutCommand:
        return RolloutCommand("rollback", user, request.to)

    async def act(self, request: ServiceRequest, invocation: Invocation, runtime: Runtime) -> None:
        if request.to:
            problem = await self._unknown_revision(request, runtime)
            if problem:
                await runtime.slack.respond(invocation.response_url, problem)
                return
        await super().act(request, invocation, runtime)

    async def _unknown_revision(self, request: ServiceRequest, runtime: Runtime) -> str:
        try:
            names = await runtime.cloudrun.revision_names(request.service)
        except CloudRunUnavailable as exc:
            return f":x: Nothing was rolled back: {exc}."
        if request.to in names:
            return ""
        close = difflib.get_close_matches(request.to, names, n=1, cutoff=0.6)
        hint = f" Did you mean `{close[0]}`?" if close else f" Its newest revisions: {', '.join(names[:5])}."
        return f":warning: {request.service} has no revision `{request.to}`.{hint}"

    async def without_rollout(self, request: ServiceRequest, invocation: Invocation, runtime: Runtime) -> str:
        try:
            view = await runtime.cloudrun.read(request.service)
            target = request.to or await self._previous(request.service, view.serving, runtime)
            if not target:
                return (f"I don't know which revision {request.service} ran before; name one: "
                        f"`/rollback {request.service} to=<revision>`.")
            if view.serving == target:
                return f"{request.service} already sends all traffic to `{target}`."
            await runtime.cloudrun.route(request.service, target)
        except CloudRunUnavailable as exc:
            return f":x: Nothing was rolled back: {exc}. Traffic is as it was; try again."
        was = ", ".join(f"`{r}` {p}%" for r, p in view.live.traffic)
        channel = runtime.config.slack.channels[runtime.config.slack.deploy_channel]
        await runtime.slack.post(channel, f"{request.service} rolled back to {target}",
                                 [{"type": "section", "text": {"type": "mrkdwn", "text": (
                                     f":rewind: <@{invocation.user_id}> rolled *{request.service}* back: all traffic "
                                     f"to `{target}` (was {was}).")}}])
        return f":rewind: {request.service} now sends all traffic to `{target}`."

    async def _previous(self, service: str, serving: str | None, runtime: Runtime) -> str:
        """The stable revision of the last deploy that promoted what serves now; else the next newest revision."""
        history = await asyncio.to_thread(runtime.store.rollouts, service=service, limit=20)
        for stored in history:
            rollout = stored.rollout
            if rollout.state is State.PROMOTED and rollout.candidate == serving and rollout.stable:
                return rollout.stable
        names = await runtime.cloudrun.revision_names(service)
        older = [name for name in names if name != serving]
        return older[0] if older else ""
