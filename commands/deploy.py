"""`/deploy <service> [canary|direct] [image=<ref> | tag=<tag>] [dry-run]`: start a rollout.

The command only checks, records and announces; the reconciler does the work, so a bot restarted in the
middle carries on from the row.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from bot.adapters.cloudrun import CloudRunGateway, CloudRunUnavailable
from bot.adapters.deploy_store import DeployRequests
from bot.adapters.store import RolloutConflict, Store, StoredRollout
from bot.config import Config
from bot.domain.analysis import Thresholds
from bot.domain.deploy_queue import (
    Await,
    Hold,
    LastRollout,
    QueuedDeploy,
    RequestState,
    StartNow,
    next_start,
    on_arrival,
    queue_position,
    shown_approvers,
    tag_of,
)
from bot.domain.policy import repository_allowed
from bot.domain.rollout import HttpCheckSpec, Insufficient, LogCheckSpec, Plan, Rollout, Split, spoken
from bot.engine.request_reporter import told
from bot.render.blocks import actions, context, header, section
from bot.render.deploy_request import cancel_button
from bot.render.mrkdwn import echoed
from bot.render.rollout import plan_lines
from commands.change_control import passes, reason_of
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, check_words, resolve_service

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_IMAGE = re.compile(r"^(?P<repository>[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+)"
                    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$")


@dataclass(frozen=True)
class DeployRequest:
    service: str
    strategy: Literal["canary", "direct"]
    image: str
    dry_run: bool
    override: str = ""  # why this deploy may go past a lock or a freeze window


def plan_for(config: Config, service: str, strategy: str) -> Plan:
    canary = config.canary_for(service)
    interval = min(10.0, max(config.engine.interval, canary.window / 6))
    return Plan(
        stages=(100,) if strategy == "direct" else canary.stages,
        window_s=canary.window,
        thresholds=Thresholds(canary.min_requests, canary.min_success_rate, canary.max_p99_ms, canary.max_error_logs),
        progress_deadline_s=canary.progress_deadline,
        interval_s=interval,
        log_checks=tuple(LogCheckSpec(c.name, c.filter, c.at_least, c.at_most) for c in canary.log_checks),
        http_checks=tuple(HttpCheckSpec(c.name, c.path, c.expect_status) for c in canary.http_checks),
        retry_deadline_s=config.engine.retry_deadline,
        insufficient=Insufficient(canary.insufficient_traffic.extend, canary.insufficient_traffic.then),
    )


def candidate_name(service: str, image: str) -> str:
    """`<service>-<tag>-<4 hex>`: readable in gcloud, unique, and within Cloud Run's 63 characters."""
    reference = image.rpartition("/")[2]
    label = reference.split("@")[1][7:15] if "@" in reference else reference.rpartition(":")[2]
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "new"
    room = 63 - len(service) - 6
    return f"{service}-{slug[:max(room, 1)].strip('-')}-{secrets.token_hex(2)}"


def split_traffic(service: str, traffic: Split) -> str:
    split = ", ".join(f"`{r}` {p}%" for r, p in traffic)
    return (f":no_entry_sign: {service}'s traffic is split ({split}), so there is no stable revision to canary "
            f"against. Settle it first: `/rollback {service} to=<revision>` sends all traffic to one.")


@dataclass(frozen=True)
class NotStarted:
    """Why a rollout could not start, for the person who asked; `retry` when it is Cloud Run being away."""

    text: str
    retry: bool


async def start_rollout(config: Config, cloudrun: CloudRunGateway, store: Store, *, service: str, image: str,
                        strategy: str, requested_by: str, override: str = "",
                        also: Callable[[Session, int], object] | None = None) -> StoredRollout | NotStarted:
    """Read the service and create the rollout's row (the reconciler does the rest); or why it cannot start.
    `override`: who let it move forward through freeze windows, and why. Raises RolloutConflict when another rollout
    of the service is open."""
    try:
        view = await cloudrun.read(service)
    except CloudRunUnavailable as exc:
        return NotStarted(f":x: Nothing was deployed: {exc}. Try again.", retry=True)
    if view.live.exists and view.serving is None:
        return NotStarted(split_traffic(service, view.live.traffic), retry=False)
    plan = plan_for(config, service, strategy if view.live.exists else "direct")
    now = datetime.now(UTC)
    rollout = Rollout(id=0, service=service, image=image, stable=view.serving or "",
                      candidate=candidate_name(service, image), plan=plan, requested_by=requested_by,
                      created_at=now, next_check_at=now, traffic=view.live.traffic, generation=view.live.generation,
                      progress_at=now, override=override)
    channel = config.slack.channels[config.slack.deploy_channel]
    return await asyncio.to_thread(store.create_rollout, rollout, channel, also)



class Deploy(Command[DeployRequest]):
    name = "deploy"
    action = "deploy"
    usage = "/deploy <service> [canary|direct] [image=<full reference> | tag=<tag>] [override=\"why\"] [dry-run]"
    summary = ("Deploy a new revision behind a canary: traffic moves through the stages while each one is "
               "analysed, and a failure rolls back at once.")
    details = ("Without `image=` or `tag=`, the service's image with tag `latest`. `direct` sends all traffic at "
               "once (still analysed, still rolled back on failure). `dry-run` shows the plan and changes nothing.")
    examples = ("/deploy prediction-worker", "/deploy prediction-worker tag=v3 dry-run",
                "/deploy nba-grading-service direct tag=2026-11-25")

    def parse(self, args: Args, config: Config) -> DeployRequest | UserError:
        problem = check_words(args, ("canary", "direct", "dry-run", "dryrun"), self.usage) or check_options(
            args, ("image", "tag", "override"), self.usage)
        if problem:
            return problem
        service = resolve_service(args.target, list(config.services), command="/deploy")
        if isinstance(service, UserError):
            return service
        words = {w.lower() for w in args.words}
        if {"canary", "direct"} <= words:
            return UserError("choose `canary` or `direct`, not both.", f"`/deploy {service} canary`")
        if "image" in args.options and "tag" in args.options:
            return UserError("give `image=` or `tag=`, not both.", f"`/deploy {service} tag=v3`")
        repository = config.services[service].image
        image = args.options.get("image") or f"{repository}:{args.options.get('tag', 'latest')}"
        if "tag" in args.options and not _TAG.match(args.options["tag"]):
            return UserError(f"`{echoed(args.options['tag'])}` is not a valid image tag.",
                             f"`/deploy {service} tag=v3`")
        match = _IMAGE.match(image)
        if not match:
            return UserError(f"`{echoed(image)}` is not a full image reference.",
                             f"`/deploy {service} image={repository}:v3`")
        allowed = config.services[service].allowed_repositories
        if not repository_allowed(match["repository"], allowed):
            listed = ", ".join(f"`{pattern}`" for pattern in allowed)
            named = echoed(match["repository"])
            return UserError(f"{service} deploys only from {listed}; `{named}` is not one of them.",
                             f"`/deploy {service} tag=v3` (an image of `{repository}`), or ask to have the "
                             f"repository added to `services.{service}.repositories` in the config")
        default = config.canary_for(service).strategy
        strategy: Literal["canary", "direct"] = "direct" if "direct" in words else (
            "canary" if "canary" in words else default)
        return DeployRequest(service, strategy, image, bool(words & {"dry-run", "dryrun"}),
                             reason_of(args.options.get("override", "")))

    def target(self, request: DeployRequest) -> str | None:
        return request.service

    def acknowledgement(self, request: DeployRequest, config: Config) -> str:
        if request.dry_run:
            return f":memo: Planning a {request.strategy} deploy of `{request.image}`…"
        if config.approval_for(request.service) is not None:
            return f":raised_hand: Asking for approval to deploy `{request.image}` to {request.service}…"
        return f":rocket: Deploying `{request.image}` to {request.service} ({request.strategy})…"

    async def act(self, request: DeployRequest, invocation: Invocation, runtime: Runtime) -> None:
        if request.dry_run:
            await self.dry_run(request, invocation, runtime)
            return
        service = request.service
        go = await passes(runtime, invocation, service, request.override, "/deploy")
        if go is None:  # a lock or a freeze window holds it, and the person was told
            return
        requests = DeployRequests(runtime.store)
        rule = runtime.config.approval_for(service)
        waiting = await asyncio.to_thread(requests.waiting, service)
        last = await asyncio.to_thread(requests.last_rollout, service)
        queued = [r for r in waiting if r.state is RequestState.QUEUED]
        arrival = on_arrival(needs_approval=rule is not None, ahead=len(queued),
                             rollout_open=last is not None and last.open)
        now = datetime.now(UTC)
        channel = runtime.config.slack.channels[runtime.config.slack.deploy_channel]
        ticket = QueuedDeploy(id=0, service=service, image=request.image, strategy=request.strategy,
                              requested_by=invocation.user_id, channel=channel, created_at=now,
                              state=RequestState.QUEUED, queued_at=now,
                              override=request.override if go.overridden else "")
        if isinstance(arrival, Await) and rule is not None:
            stable = await self.stable(runtime, service)
            plan = "\n".join(plan_summary(runtime, request, stable)[1:])
            asked = await asyncio.to_thread(requests.add, replace(
                ticket, state=RequestState.AWAITING, queued_at=None, needed=rule.min, approvers=rule.approvers,
                expires_at=now + timedelta(seconds=rule.expires), plan=plan), lambda r: told(r, post=True))
            runtime.wake()
            await runtime.slack.respond(invocation.response_url, (
                f":raised_hand: {service} needs a second person's approval: request #{asked.id} is in <#{channel}> "
                f"for {shown_approvers(rule.approvers)} ({rule.min} needed, not you). It starts once approved, or "
                f"expires in {spoken(rule.expires)}."))
            return
        if isinstance(arrival, StartNow):
            try:
                started = await start_rollout(runtime.config, runtime.cloudrun, runtime.store, service=service,
                                              image=request.image, strategy=request.strategy,
                                              requested_by=invocation.user_id, override=go.freeze,
                                              also=requests.started_with(ticket))
            except RolloutConflict as conflict:
                existing = conflict.existing.rollout
                last = LastRollout(existing.id, existing.state.value, True, None, existing.requested_by,
                                   tag_of(existing.image))
            else:
                if isinstance(started, NotStarted):
                    await runtime.slack.respond(invocation.response_url, started.text)
                    return
                runtime.wake()  # the reconciler posts the rollout's message and starts it
                if invocation.channel_id != channel:
                    await runtime.slack.respond(invocation.response_url,
                                                f"Rollout #{started.rollout.id} started; follow it in <#{channel}>.")
                return
        added = await asyncio.to_thread(requests.add, ticket, told)  # answered below; no message of its own
        runtime.wake()
        position = queue_position([*queued, added], added.id, last is not None and last.open)
        text = behind(added, position, queued, last)
        if queued and last is not None and last.failed:
            resumed = await asyncio.to_thread(requests.resumed, service, last.id)
            held = next_start(queued[0], last, resumed=resumed)
            if isinstance(held, Hold):
                text += f" The queue holds since {held.reason}: `/queue resume {service}` starts it again."
        await runtime.slack.respond(invocation.response_url, text, [section(text), actions(cancel_button(added.id))])

    async def stable(self, runtime: Runtime, service: str) -> str | None:
        """What serves the service now, as the plan shows it; None when Cloud Run cannot be read."""
        try:
            view = await runtime.cloudrun.read(service)
        except CloudRunUnavailable:
            return None
        return view.serving or ""

    async def dry_run(self, request: DeployRequest, invocation: Invocation, runtime: Runtime) -> None:
        service = request.service
        try:
            view = await runtime.cloudrun.read(service)
        except CloudRunUnavailable as exc:
            await runtime.slack.respond(invocation.response_url, f":x: Nothing was planned: {exc}. Try again.")
            return
        if view.live.exists and view.serving is None:
            await runtime.slack.respond(invocation.response_url, split_traffic(service, view.live.traffic))
            return
        strategy = request.strategy if view.live.exists else "direct"
        lines = plan_summary(runtime, replace(request, strategy=strategy), view.serving or "")
        blocks = [header(f"Plan: {strategy} deploy of {service}"), section("\n".join(lines))]
        if not view.live.exists:
            blocks.append(section(f"{service} does not exist yet, so this is a direct deploy: Cloud Run cannot start "
                                  "a new service with no traffic on its first revision."))
        blocks.append(context(":information_source: Dry run: nothing was changed."))
        await runtime.slack.respond(invocation.response_url, f"Plan for {service} (dry run)", blocks)


def plan_summary(runtime: Runtime, request: DeployRequest, stable: str | None) -> list[str]:
    """The plan as dry-run shows it, and as an approval request shows it to the approvers."""
    plan = plan_for(runtime.config, request.service, request.strategy)
    who_stops = ", ".join(name for name, role in runtime.config.roles.items()
                          if {"rollback", "pause", "*"} & set(role.may)) or "nobody"
    now = "unknown (Cloud Run could not be read)" if stable is None else f"`{stable}`" if stable else (
        "none (new service)")
    return [f"*Image:* `{request.image}`", f"*Stable now:* {now}", *plan_lines(plan),
            f"*Can stop it:* {who_stops} (`/pause`, `/rollback`, or the buttons)"]


def behind(request: QueuedDeploy, position: int, ahead: list[QueuedDeploy], last: LastRollout | None) -> str:
    """"queued #2 behind <@x>'s rollout of v41; it starts when that one ends"."""
    running = f"<@{last.requested_by}>'s rollout of `{last.tag}` (#{last.id})" if last is not None and last.open else ""
    queued = ", ".join(f"<@{r.requested_by}>'s `{r.tag}` (request #{r.id})" for r in ahead)
    what = " and ".join(part for part in (running, queued) if part) or "the deploys ahead"
    return (f":hourglass_flowing_sand: {request.service}: queued #{position} behind {what}; it starts when "
            f"{'that one ends' if position == 2 and running else 'those end'}. Request #{request.id}; Cancel or "
            f"`/queue cancel {request.id}` withdraws it.")
