"""What /promote, /pause, /resume, /rollback and the rollout message's buttons have in common: find the
service's open rollout and leave the person's command for the reconciler, which acts on it at once."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from bot.config import Config
from bot.domain.rollout import Command as RolloutCommand
from bot.domain.rollout import State
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, check_words, resolve_service

_ALLOWED = {
    "promote": (State.VERIFYING, State.ANALYSING, State.PAUSED),
    "promote_full": (State.VERIFYING, State.ANALYSING, State.PAUSED),
    "pause": (State.DEPLOYING, State.VERIFYING, State.ANALYSING),
    "resume": (State.PAUSED,),
    "rollback": (State.DEPLOYING, State.VERIFYING, State.ANALYSING, State.PAUSED),
}
_DONE = {"promote": "promoted", "promote_full": "promoted", "pause": "paused", "resume": "resumed",
         "rollback": "rolled back"}
_DOING = {"promote": "Promoting", "promote_full": "Promoting to 100%", "pause": "Pausing", "resume": "Resuming",
          "rollback": "Rolling back"}


@dataclass(frozen=True)
class ServiceRequest:
    service: str
    full: bool = False
    to: str = ""


async def hand_over(runtime: Runtime, rollout_id: int, command: RolloutCommand) -> str:
    """Hand the command to the reconciler; returns the answer for the person who asked."""
    stored = await asyncio.to_thread(runtime.store.rollout, rollout_id)
    if stored is None or stored.rollout.state.ended:
        state = stored.rollout.state.value.replace("_", " ") if stored else "gone"
        return f"Rollout #{rollout_id} has already ended ({state}); nothing to do."
    rollout = stored.rollout
    if rollout.state not in _ALLOWED[command.action]:
        return (f"Rollout #{rollout.id} of {rollout.service} is {rollout.state.value}, so it can't be "
                f"{_DONE[command.action]} now.")
    if command.action == "rollback" and not rollout.stable and not command.to:
        return f"{rollout.service} is a new service: there is no earlier revision to roll back to."
    if await asyncio.to_thread(runtime.store.request, rollout.id, command) is None:
        return f"Rollout #{rollout_id} ended just now; nothing to do."
    runtime.wake()
    doing = _DOING[command.action]
    return f":ok_hand: {doing} {rollout.service} (rollout #{rollout.id}); its message shows the result."


class RolloutControl(Command[ServiceRequest]):
    words: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[str, ...]] = ()

    def parse(self, args: Args, config: Config) -> ServiceRequest | UserError:
        problem = check_words(args, self.words, self.usage) or check_options(args, self.options, self.usage)
        if problem:
            return problem
        service = resolve_service(args.target, list(config.services), command=self.slash)
        if isinstance(service, UserError):
            return service
        return ServiceRequest(service, full="full" in {w.lower() for w in args.words}, to=args.options.get("to", ""))

    def target(self, request: ServiceRequest) -> str | None:
        return request.service

    @abstractmethod
    def command_for(self, request: ServiceRequest, user: str) -> RolloutCommand: ...

    async def without_rollout(self, request: ServiceRequest, invocation: Invocation, runtime: Runtime) -> str:
        return (f"No rollout of {request.service} is in progress. `/status` lists them; "
                f"`/deploy {request.service}` starts one.")

    async def act(self, request: ServiceRequest, invocation: Invocation, runtime: Runtime) -> None:
        stored = await asyncio.to_thread(runtime.store.open_rollout, request.service)
        if stored is None:
            text = await self.without_rollout(request, invocation, runtime)
        else:
            text = await hand_over(runtime, stored.rollout.id, self.command_for(request, invocation.user_id))
        await runtime.slack.respond(invocation.response_url, text)
