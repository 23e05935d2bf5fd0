"""`/rollback <service> [to=<revision>]`: all traffic back to a revision known to be good, in one call.

Mid-rollout the reconciler does it (to the revision that served when the deploy started) and the rollout
ends. After a finished deploy the command does it itself, to the revision `bot.domain.rollback` chooses,
and says which and why; it is recorded like a rollout, so the next `/rollback` never returns to what this
one rolled away from. `to=` may name any Ready revision, with a warning if chatops rolled it back before.
"""

from __future__ import annotations

import asyncio
import difflib
from datetime import UTC, datetime, timedelta

from bot.adapters.cloudrun import CloudRunRefused, CloudRunUnavailable, RevisionInfo
from bot.adapters.logs import LogsUnavailable
from bot.domain.digest import MANUAL_ROLLBACK_IMAGE
from bot.domain.permissions import denied_permission, grant_hint
from bot.domain.rollback import NoTarget, Record, RevisionFacts, Target, candidates, choose, record_of
from bot.domain.rollout import Command as RolloutCommand
from bot.domain.rollout import Rollout, State, describe
from commands.deploy import plan_for
from commands.framework import Invocation, Runtime
from commands.rollout_control import RolloutControl, ServiceRequest, hand_over

_LOG_RETENTION = timedelta(days=30)
"""Cloud Logging keeps request logs 30 days by default (https://cloud.google.com/logging/quotas#logs_retention_periods)."""
_CHECKED_IN_LOGS = 3


class Rollback(RolloutControl):
    name = "rollback"
    action = "rollback"
    usage = "/rollback <service> [to=<revision>]"
    summary = ("Send all traffic back to a revision known to be good (or `to=` a named one) in one Cloud Run call; "
               "a rollout in progress ends.")
    details = ("Mid-rollout: back to what served when the deploy started. Otherwise: to what served before the "
               "deploy that promoted the serving revision, or the newest earlier Ready revision that has served "
               "traffic; never to one chatops rolled back. The reply says which and why.")
    examples = ("/rollback prediction-worker", "/rollback prediction-worker to=prediction-worker-00041-xoq")
    options = ("to",)

    def command_for(self, request: ServiceRequest, user: str) -> RolloutCommand:
        return RolloutCommand("rollback", user, request.to)

    async def act(self, request: ServiceRequest, invocation: Invocation, runtime: Runtime) -> None:
        warning = ""
        if request.to:
            problem, warning = await self._named(request, runtime)
            if problem:
                await runtime.slack.respond(invocation.response_url, problem)
                return
        stored = await asyncio.to_thread(runtime.store.open_rollout, request.service)
        if stored is None:
            text = await self.without_rollout(request, invocation, runtime)
        else:
            text = await hand_over(runtime, stored.rollout.id, self.command_for(request, invocation.user_id))
        await runtime.slack.respond(invocation.response_url, f"{warning}\n{text}" if warning else text)

    async def _named(self, request: ServiceRequest, runtime: Runtime) -> tuple[str, str]:
        """(a problem that stops the rollback, a warning that does not) about a revision named with `to=`."""
        try:
            revisions = await runtime.cloudrun.revisions_of(request.service)
        except CloudRunUnavailable as exc:
            return f":x: Nothing was rolled back: {exc}.", ""
        names = [r.name for r in revisions]
        found = next((r for r in revisions if r.name == request.to), None)
        if found is None:
            close = difflib.get_close_matches(request.to, names, n=1, cutoff=0.6)
            hint = f" Did you mean `{close[0]}`?" if close else f" Its newest revisions: {', '.join(names[:5])}."
            return f":warning: {request.service} has no revision `{request.to}`.{hint}", ""
        if not found.ready:
            return (f":warning: `{request.to}` is not Ready in Cloud Run, so it cannot take traffic; nothing was "
                    "changed. `/rollback {request.service}` picks a known good revision."), ""
        history = await asyncio.to_thread(runtime.store.rollouts, service=request.service, limit=50)
        why = record_of([s.rollout for s in history]).bad.get(request.to)
        return "", (f":warning: `{request.to}` was rolled back before: {why}. Sending traffic to it as asked."
                    if why else "")

    async def without_rollout(self, request: ServiceRequest, invocation: Invocation, runtime: Runtime) -> str:
        service = request.service
        try:
            view = await runtime.cloudrun.read(service)
            if not view.live.exists:
                return f"{service} does not exist in Cloud Run; there is nothing to roll back."
            serving = view.serving
            revisions = await runtime.cloudrun.revisions_of(service)
            history = [s.rollout for s in await asyncio.to_thread(runtime.store.rollouts, service=service, limit=50)]
            target = await self._target(request, serving, revisions, record_of(history), runtime)
            if isinstance(target, str):
                return target
            if serving == target.revision:
                return f"{service} already sends all traffic to `{target.revision}`."
            before, result = await runtime.cloudrun.route(service, target.revision)
        except CloudRunUnavailable as exc:
            hint = grant_hint(denied_permission(exc.permission, str(exc))) if isinstance(exc, CloudRunRefused) else ""
            return f":x: Nothing was rolled back: {exc}" + (f" ({hint})" if hint else "") + ". Traffic is as it was."
        was = describe(before.live.traffic)
        if result.outcome in ("refused", "conflict"):
            hint = grant_hint(denied_permission(result.permission, result.message))
            return (f":x: Cloud Run refused to send all traffic to `{target.revision}`: {result.status} "
                    f"{result.message}" + (f" ({hint})" if hint else "") + f". Traffic is as it was: {was}.")
        if result.outcome == "retry":
            return (f":warning: Cloud Run did not confirm the rollback to `{target.revision}` ({result.message}). "
                    f"Traffic was {was}; `/status {service}` or `/rollback {service}` again.")
        await self._remember(runtime, invocation, service, serving, target, was)
        routing = "" if result.outcome == "done" else " (Cloud Run is routing it now)"
        channel = runtime.config.slack.channels[runtime.config.slack.deploy_channel]
        await runtime.slack.post(channel, f"{service} rolled back to {target.revision}",
                                 [{"type": "section", "text": {"type": "mrkdwn", "text": (
                                     f":rewind: <@{invocation.user_id}> rolled *{service}* back: all traffic to "
                                     f"`{target.revision}`{routing}, because {target.why} (was {was}).")}}])
        return f":rewind: {service} now sends all traffic to `{target.revision}`{routing}: {target.why}."

    async def _target(self, request: ServiceRequest, serving: str | None, revisions: list[RevisionInfo],
                      record: Record, runtime: Runtime) -> Target | str:
        if request.to:
            return Target(request.to, "you named it")
        if serving is None:
            return (f"{request.service}'s traffic is split, so there is no single revision to roll back from; "
                    f"name the one to send all traffic to: `/rollback {request.service} to=<revision>`.")
        facts = [RevisionFacts(r.name, r.created, r.ready) for r in revisions]
        choice = choose(serving, facts, record)
        if isinstance(choice, NoTarget):
            seen = await self._served_in_logs(request.service, candidates(serving, facts, record), runtime)
            choice = choose(serving, facts, record, seen)
        if isinstance(choice, NoTarget):
            listed = ", ".join(f"`{name}`" for name in choice.candidates) or "none"
            return (f"I won't guess: {choice.why}. Name the revision: `/rollback {request.service} to=<revision>` "
                    f"(Ready revisions before `{serving}`: {listed}).")
        return choice

    async def _served_in_logs(self, service: str, older: list[RevisionFacts], runtime: Runtime) -> frozenset[str]:
        """Which of the newest few candidates Cloud Logging shows answering requests, within the read budget."""
        now = datetime.now(UTC)
        seen: set[str] = set()
        for revision in older[:_CHECKED_IN_LOGS]:
            if not runtime.log_budget.take():
                break
            try:
                if await runtime.logs.served(service, revision.name, now - _LOG_RETENTION, now):
                    seen.add(revision.name)
                    break
            except LogsUnavailable:
                break
        return frozenset(seen)

    async def _remember(self, runtime: Runtime, invocation: Invocation, service: str, serving: str | None,
                        target: Target, was: str) -> None:
        """Kept as an ended rollout: /history shows it, and the revision rolled away from is not chosen again."""
        now = datetime.now(UTC)
        plan = plan_for(runtime.config, service, "direct")
        why = f"rolled back by <@{invocation.user_id}> to {target.revision} ({target.why}); was {was}"
        rolled = Rollout(id=0, service=service, image=f"{MANUAL_ROLLBACK_IMAGE}{target.revision})",
                         stable=target.revision, candidate=serving or "", plan=plan,
                         requested_by=invocation.user_id, created_at=now, next_check_at=now,
                         traffic=((target.revision, 100),), state=State.ROLLED_BACK, ended_at=now, reason=why)
        channel = runtime.config.slack.channels[runtime.config.slack.deploy_channel]
        await asyncio.to_thread(runtime.store.record_closed, rolled, channel)
