"""`/history <service>`: the last deploys of a service, with who, when, what image and how it ended."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.config import Config
from bot.render.blocks import chunk_lines, context, header, section
from bot.render.mrkdwn import escape
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, check_words, resolve_service

_ENDINGS = {"promoted": ":white_check_mark:", "rolled_back": ":rewind:", "failed": ":x:"}


@dataclass(frozen=True)
class HistoryRequest:
    service: str


class History(Command[HistoryRequest]):
    name = "history"
    action = "history"
    usage = "/history <service>"
    summary = "The last ten deploys of a service: who, when, which image, and how each one ended."
    examples = ("/history prediction-worker",)

    def parse(self, args: Args, config: Config) -> HistoryRequest | UserError:
        problem = check_words(args, (), self.usage) or check_options(args, (), self.usage)
        if problem:
            return problem
        service = resolve_service(args.target, list(config.services), command="/history")
        return service if isinstance(service, UserError) else HistoryRequest(service)

    def target(self, request: HistoryRequest) -> str | None:
        return request.service

    async def act(self, request: HistoryRequest, invocation: Invocation, runtime: Runtime) -> None:
        found = await asyncio.to_thread(runtime.store.rollouts, service=request.service, limit=10)
        lines = []
        for stored in found:
            rollout = stored.rollout
            mark = _ENDINGS.get(rollout.state.value, ":hourglass_flowing_sand:")
            ended = rollout.reason or rollout.state.value.replace("_", " ")
            lines.append(f"{mark} {rollout.created_at:%Y-%m-%d %H:%M} UTC · <@{rollout.requested_by}> · "
                         f"`{escape(rollout.image.rpartition('/')[2])}` · #{rollout.id}\n    {escape(ended)[:300]}")
        blocks = [header(f"{request.service}: last {len(found)} deploys" if found else f"{request.service}: no deploys "
                         "through chatops yet")]
        blocks += [section(chunk) for chunk in chunk_lines(lines)]
        if not found:
            blocks.append(context(f"`/deploy {request.service}` starts one."))
        await runtime.slack.respond(invocation.response_url, f"History of {request.service}", blocks)
