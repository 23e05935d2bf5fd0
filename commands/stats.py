"""`/stats [service] [7d|30d]`: DORA's five figures, for the fleet or one service, shown only to the person asking."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Config
from bot.domain.dora import PERIODS, REWORK_WINDOW
from bot.render.mrkdwn import echoed
from bot.render.stats import render_stats
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, resolve_service


@dataclass(frozen=True)
class StatsRequest:
    service: str | None  # None: the whole fleet
    period: str  # a key of PERIODS


class StatsCommand(Command[StatsRequest]):
    name = "stats"
    action = "stats"
    usage = "/stats [service] [7d|30d]"
    summary = ("DORA's five figures over 7 or 30 days: deploy frequency, lead time, change failure rate, recovery "
               "time, rework rate.")
    examples = ("/stats", "/stats prediction-worker 30d")
    details = ("Lead time runs from the image's upload to Artifact Registry to its promotion; a figure with no data "
               "says so. Definitions: https://dora.dev/guides/dora-metrics-four-keys/")

    def parse(self, args: Args, config: Config) -> StatsRequest | UserError:
        problem = check_options(args, (), self.usage)
        if problem:
            return problem
        periods = [word for word in args.positional if word.lower() in PERIODS]
        named = [word for word in args.positional if word.lower() not in PERIODS]
        if len(periods) > 1:
            return UserError("give one period, `7d` or `30d`.", "`/stats 30d`")
        if len(named) > 1:
            return UserError(f"`/stats` takes one service, not `{echoed(' '.join(named))}`.", f"`{self.usage}`")
        if named and named[0][:1].isdigit():
            return UserError(f"`{echoed(named[0])}` is not a period I keep: `7d` or `30d`.", "`/stats 30d`")
        service = resolve_service(named[0], list(config.services), command="/stats") if named else None
        if isinstance(service, UserError):
            return service
        return StatsRequest(service, periods[0].lower() if periods else "7d")

    def target(self, request: StatsRequest) -> str | None:
        return request.service

    async def act(self, request: StatsRequest, invocation: Invocation, runtime: Runtime) -> None:
        services = [request.service] if request.service else list(runtime.config.services)
        report = await runtime.stats.report(services, PERIODS[request.period])
        fleet = report.services[0] if request.service else report.fleet
        rendered = render_stats(fleet, report.services, window=REWORK_WINDOW, unknown_why=report.unknown_why,
                                service=request.service)
        await runtime.slack.respond(invocation.response_url, rendered.text, rendered.blocks)
