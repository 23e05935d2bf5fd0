"""`/health all | <service>`: probe /health, /ready and /health/deep and say what is failing.

This replaces the seeds' curl loops: every service at once, classified, with the runbook step of each
failing check, in one message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.adapters.cloudrun import CloudRunUnavailable
from bot.config import Config
from bot.domain.health import Probe, ServiceHealth, classify
from bot.engine.fleet_health import missing, probe_fleet
from bot.render.health import fleet_report, service_report
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, check_words, resolve_service


@dataclass(frozen=True)
class HealthRequest:
    service: str  # a service name, or "all"


class Health(Command[HealthRequest]):
    name = "health"
    action = "health"
    usage = "/health <service|all>"
    summary = "Probe /health, /ready and /health/deep and show what is failing, with runbook steps."
    details = ("`all` probes every configured service concurrently and lists problems first; a service name "
               "(or a unique prefix of it) shows every check with its latency and the revision that answered.")
    examples = ("/health all", "/health prediction-worker")

    def parse(self, args: Args, config: Config) -> HealthRequest | UserError:
        problem = check_words(args, (), self.usage) or check_options(args, (), self.usage)
        if problem:
            return problem
        service = resolve_service(args.target, list(config.services), command="/health", allow_all=True)
        return service if isinstance(service, UserError) else HealthRequest(service)

    def target(self, request: HealthRequest) -> str | None:
        return None if request.service == "all" else request.service

    def acknowledgement(self, request: HealthRequest, config: Config) -> str:
        if request.service == "all":
            return f":hourglass_flowing_sand: Probing {len(config.services)} services…"
        return f":hourglass_flowing_sand: Probing {request.service}…"

    async def act(self, request: HealthRequest, invocation: Invocation, runtime: Runtime) -> None:
        try:
            if request.service == "all":
                await self._fleet(invocation, runtime)
            else:
                await self._one(request.service, invocation, runtime, await runtime.cloudrun.service_urls())
        except CloudRunUnavailable as exc:
            await runtime.slack.respond(invocation.response_url, f":x: I can't probe: {exc}, so I don't know the "
                                        "services' URLs. Try again in a minute.")

    async def _fleet(self, invocation: Invocation, runtime: Runtime) -> None:
        started = time.perf_counter()
        fleet = await probe_fleet(runtime.config, runtime.cloudrun, runtime.prober)
        messages = fleet_report(fleet, project=runtime.config.project, region=runtime.config.region,
                                elapsed_s=time.perf_counter() - started, now=datetime.now(UTC),
                                runbook=runtime.runbook_link)
        main, *thread = messages
        posted = await runtime.slack.post_or_respond(invocation.channel_id, invocation.response_url,
                                                     main.text, main.blocks)
        for reply in thread:
            if posted is not None:
                await runtime.slack.post(posted.channel, reply.text, reply.blocks, thread_ts=posted.ts)

    async def _one(self, service: str, invocation: Invocation, runtime: Runtime, urls: dict[str, str]) -> None:
        health, probes = await _probe(runtime, service, urls)
        report = service_report(health, probes, url=urls.get(service, ""), now=datetime.now(UTC),
                                runbook=runtime.runbook_link)
        await runtime.slack.post_or_respond(invocation.channel_id, invocation.response_url, report.text,
                                            report.blocks)


async def _probe(runtime: Runtime, service: str, urls: dict[str, str]) -> tuple[ServiceHealth, list[Probe]]:
    url = urls.get(service)
    if url is None:
        return missing(runtime.config, service), []
    probes = await runtime.prober.probe_service(url, runtime.config.health_for(service), audience=url)
    return classify(service, probes), probes
