"""`/deploy <service> [canary|direct] [image=<ref> | tag=<tag>] [dry-run]`: start a rollout.

The command only checks, records and announces; the reconciler does the work, so a bot restarted in the
middle carries on from the row.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bot.adapters.cloudrun import CloudRunUnavailable
from bot.adapters.store import RolloutConflict, StoredRollout
from bot.config import Config
from bot.domain.analysis import Thresholds
from bot.domain.change_gate import Go
from bot.domain.policy import repository_allowed
from bot.domain.rollout import HttpCheckSpec, Insufficient, LogCheckSpec, Plan, Rollout
from bot.render.blocks import context, header, section
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


def already_running(stored: StoredRollout) -> str:
    rollout = stored.rollout
    at = f" at {rollout.percent}%" if rollout.percent else ""
    tag = rollout.image.rpartition(":")[2]
    return (f":no_entry_sign: {rollout.service} is already being deployed: rollout #{rollout.id} (`{tag}`, "
            f"{rollout.state.value}{at}), started by <@{rollout.requested_by}>. Stop it with "
            f"`/rollback {rollout.service}` or `/pause {rollout.service}`, or wait until it ends.")


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
        return f":rocket: Deploying `{request.image}` to {request.service} ({request.strategy})…"

    async def act(self, request: DeployRequest, invocation: Invocation, runtime: Runtime) -> None:
        service = request.service
        go = Go() if request.dry_run else await passes(runtime, invocation, service, request.override, "/deploy")
        if go is None:
            return
        existing = await asyncio.to_thread(runtime.store.open_rollout, service)
        if existing is not None:
            await runtime.slack.respond(invocation.response_url, already_running(existing))
            return
        try:
            view = await runtime.cloudrun.read(service)
        except CloudRunUnavailable as exc:
            await runtime.slack.respond(invocation.response_url, f":x: Nothing was deployed: {exc}. Try again.")
            return
        strategy = request.strategy
        note = ""
        if not view.live.exists:
            strategy = "direct"
            note = (f"{service} does not exist yet, so this is a direct deploy: Cloud Run cannot start a new "
                    "service with no traffic on its first revision.")
        elif view.serving is None:
            split = ", ".join(f"`{r}` {p}%" for r, p in view.live.traffic)
            await runtime.slack.respond(invocation.response_url, (
                f":no_entry_sign: {service}'s traffic is split ({split}), so there is no stable revision to "
                f"canary against. Settle it first: `/rollback {service} to=<revision>` sends all traffic to one."))
            return
        plan = plan_for(runtime.config, service, strategy)
        who_stops = ", ".join(name for name, role in runtime.config.roles.items()
                              if {"rollback", "pause", "*"} & set(role.may)) or "nobody"
        if request.dry_run:
            stable = f"`{view.serving}`" if view.serving else "none (new service)"
            lines = [f"*Image:* `{request.image}`", f"*Stable now:* {stable}", *plan_lines(plan),
                     f"*Can stop it:* {who_stops} (`/pause`, `/rollback`, or the buttons)"]
            blocks = [header(f"Plan: {strategy} deploy of {service}"), section("\n".join(lines))]
            if note:
                blocks.append(section(note))
            blocks.append(context(":information_source: Dry run: nothing was changed."))
            await runtime.slack.respond(invocation.response_url, f"Plan for {service} (dry run)", blocks)
            return
        now = datetime.now(UTC)
        rollout = Rollout(id=0, service=service, image=request.image, stable=view.serving or "",
                          candidate=candidate_name(service, request.image), plan=plan,
                          requested_by=invocation.user_id, created_at=now, next_check_at=now,
                          traffic=view.live.traffic, generation=view.live.generation, progress_at=now,
                          override=go.freeze)
        channel = runtime.config.slack.channels[runtime.config.slack.deploy_channel]
        try:
            stored = await asyncio.to_thread(runtime.store.create_rollout, rollout, channel)
        except RolloutConflict as conflict:
            await runtime.slack.respond(invocation.response_url, already_running(conflict.existing))
            return
        runtime.wake()  # the reconciler posts the rollout's message and starts it
        if invocation.channel_id != channel:
            await runtime.slack.respond(invocation.response_url,
                                        f"Rollout #{stored.rollout.id} started; follow it in <#{channel}>.")
