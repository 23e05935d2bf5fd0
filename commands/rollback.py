"""`/rollback <service> [to=<revision>]`: all traffic back to a revision known to be good, in one call.

Mid-rollout the reconciler does it (to the revision that served when the deploy started) and the rollout
ends. After a finished deploy the command chooses the revision (`bot.domain.rollback`) and says which and why,
and the reconciler makes the write: a restore row (`bot.domain.rollout.restore`) under the same lease and
fencing as a rollout, pursued until Cloud Run routes it, so there is one writer of traffic. It is kept like a
rollout, so the next `/rollback` never returns to what this one rolled away from. `to=` may name any Ready
revision, with a warning if chatops rolled it back before.
"""

from __future__ import annotations

import asyncio
import difflib
from datetime import UTC, datetime, timedelta

from bot.adapters.cloudrun import CloudRunRefused, CloudRunUnavailable, RevisionInfo
from bot.adapters.logs import LogsUnavailable
from bot.adapters.store import RolloutConflict
from bot.domain.permissions import denied_permission, grant_hint
from bot.domain.rollback import NoTarget, Record, RevisionFacts, Target, candidates, choose, record_of
from bot.domain.rollout import Command as RolloutCommand
from bot.domain.rollout import describe, restore
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
        except CloudRunUnavailable as exc:
            hint = grant_hint(denied_permission(exc.permission, str(exc))) if isinstance(exc, CloudRunRefused) else ""
            return f":x: Nothing was rolled back: {exc}" + (f" ({hint})" if hint else "") + ". Traffic is as it was."
        row = restore(service=service, target=target.revision, serving=serving, why=target.why,
                      user=invocation.user_id, plan=plan_for(runtime.config, service, "direct"), live=view.live,
                      now=datetime.now(UTC))
        channel = runtime.config.slack.channels[runtime.config.slack.deploy_channel]
        try:
            stored = await asyncio.to_thread(runtime.store.create_rollout, row, channel)
        except RolloutConflict as conflict:  # someone's /deploy or /rollback got there first: that one has it
            return await hand_over(runtime, conflict.existing.rollout.id, self.command_for(request, invocation.user_id))
        runtime.wake()
        return (f":rewind: Rolling {service} back: all traffic to `{target.revision}`, because {target.why} (was "
                f"{describe(view.live.traffic)}). Rollout #{stored.rollout.id}'s message says when Cloud Run routes "
                "it; chatops keeps at it until it does.")

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
