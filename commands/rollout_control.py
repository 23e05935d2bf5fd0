"""What /promote, /pause, /resume, /rollback and the rollout message's buttons have in common: find the
service's open rollout and queue the person's command for the reconciler, which acts on it at once and answers
every command it was given, applied or refused, in the rollout's thread."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from bot.config import Config
from bot.domain.rollout import Command as RolloutCommand
from bot.domain.rollout import admit
from commands.change_control import passes, reason_of
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, check_words, resolve_service

_DOING = {"promote": "Promoting", "promote_full": "Promoting to 100%", "pause": "Pausing", "resume": "Resuming",
          "rollback": "Rolling back"}


@dataclass(frozen=True)
class ServiceRequest:
    service: str
    full: bool = False
    to: str = ""
    override: str = ""  # why a promote or resume may go past a lock or a freeze window


async def hand_over(runtime: Runtime, rollout_id: int, command: RolloutCommand) -> str:
    """Queue the command for the reconciler; returns the answer for the person who asked. A queued command is
    never lost: the rollout's thread says when it was applied, or why not."""
    stored = await asyncio.to_thread(runtime.store.rollout, rollout_id)
    if stored is None:
        return f"Rollout #{rollout_id} is gone; nothing to do."
    refusal = admit(stored.rollout, command)
    if refusal:
        return refusal
    queued = await asyncio.to_thread(runtime.store.request, rollout_id, command)
    if queued is None:
        return f"Rollout #{rollout_id} ended just now; nothing to do."
    runtime.wake()
    rollout = stored.rollout
    return (f":ok_hand: {_DOING[command.action]} {rollout.service} (rollout #{rollout.id}); its thread says when "
            "it is done, or why not.")


class RolloutControl(Command[ServiceRequest]):
    words: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[str, ...]] = ()
    gated: ClassVar[bool] = False
    """Whether the command moves traffic forward, and so asks the change gate (locks, freeze windows) first."""

    def parse(self, args: Args, config: Config) -> ServiceRequest | UserError:
        problem = check_words(args, self.words, self.usage) or check_options(args, self.options, self.usage)
        if problem:
            return problem
        service = resolve_service(args.target, list(config.services), command=self.slash)
        if isinstance(service, UserError):
            return service
        return ServiceRequest(service, full="full" in {w.lower() for w in args.words}, to=args.options.get("to", ""),
                              override=reason_of(args.options.get("override", "")))

    def target(self, request: ServiceRequest) -> str | None:
        return request.service

    @abstractmethod
    def command_for(self, request: ServiceRequest, user: str) -> RolloutCommand: ...

    async def without_rollout(self, request: ServiceRequest, invocation: Invocation, runtime: Runtime) -> str:
        return (f"No rollout of {request.service} is in progress. `/status` lists them; "
                f"`/deploy {request.service}` starts one.")

    async def act(self, request: ServiceRequest, invocation: Invocation, runtime: Runtime) -> None:
        if self.gated and not await passes(runtime, invocation, request.service, request.override, self.slash):
            return
        stored = await asyncio.to_thread(runtime.store.open_rollout, request.service)
        if stored is None:
            text = await self.without_rollout(request, invocation, runtime)
        else:
            text = await hand_over(runtime, stored.rollout.id, self.command_for(request, invocation.user_id))
        await runtime.slack.respond(invocation.response_url, text)
