"""`/status [service]`: the rollouts in progress and where each one stands."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.adapters.lock_store import LockStore
from bot.config import Config
from bot.domain.change_gate import holding
from bot.domain.freeze import in_force, next_window
from bot.render.blocks import context, header, section
from bot.render.change_control import control_lines
from bot.render.rollout import progress
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, check_words, resolve_service


@dataclass(frozen=True)
class StatusRequest:
    service: str | None


class Status(Command[StatusRequest]):
    name = "status"
    action = "status"
    usage = "/status [service]"
    summary = ("The rollouts in progress: stage, state, who started them; with a service, its latest rollout. "
               "Then the locks, and the freeze window in force and the next one.")
    examples = ("/status", "/status prediction-worker")

    def parse(self, args: Args, config: Config) -> StatusRequest | UserError:
        problem = check_words(args, (), self.usage) or check_options(args, (), self.usage)
        if problem:
            return problem
        if args.target is None:
            return StatusRequest(None)
        service = resolve_service(args.target, list(config.services), command="/status")
        return service if isinstance(service, UserError) else StatusRequest(service)

    def target(self, request: StatusRequest) -> str | None:
        return request.service

    async def act(self, request: StatusRequest, invocation: Invocation, runtime: Runtime) -> None:
        if request.service is None:
            found = await asyncio.to_thread(runtime.store.rollouts, open_only=True, limit=40)
            title = f"{len(found)} rollout{'s' if len(found) != 1 else ''} in progress"
        else:
            found = await asyncio.to_thread(runtime.store.rollouts, service=request.service, limit=1)
            title = f"{request.service}: latest rollout" if found else f"{request.service}: no rollouts yet"
        blocks = [header(title)]
        for stored in found:
            rollout = stored.rollout
            tag = rollout.image.rpartition(":")[2]
            line = (f"*{rollout.service}* · `{tag}` · {rollout.state.value.replace('_', ' ')} · rollout #{rollout.id}"
                    f" · by <@{rollout.requested_by}> at {rollout.created_at:%H:%M} UTC\n{progress(rollout)}")
            if rollout.reason:
                line += f"\n{rollout.reason}"
            blocks.append(section(line))
        if not found and request.service is None:
            blocks.append(context("Nothing is being deployed. `/deploy <service>` starts a rollout."))
        now = datetime.now(UTC)
        locks = await LockStore(runtime.store).locks(now)
        if request.service is not None:
            locks = holding(locks, request.service, now)
        freezes = runtime.config.freeze_windows()
        held = control_lines(locks, in_force(freezes, request.service, now), next_window(freezes, request.service, now),
                             named=request.service is None)
        if held:
            blocks.append(section("*Change control*\n" + "\n".join(held)))
        await runtime.slack.respond(invocation.response_url, title, blocks[:50])
