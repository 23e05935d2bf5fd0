"""`/queue [service]`, `/queue resume <service>`, `/queue cancel <request#>`, `/approve <request#>`, `/deny <request#>
<reason>`, and a deploy request's Approve, Deny and Cancel buttons. `/queue` shows what holds the queue's head now (a
lock, a freeze window), asked of the same change gate the dispatcher asks before it starts it.

Who may approve or deny is the service's `approval.approvers` (a role, or a Slack user group), never the requester;
who may cancel is the requester, or whoever may roll the service back. Those are decided by `deploy_queue` on the
request as it is now (looked up again on every click), and approvals are counted under the request row's lock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bot.adapters.deploy_store import DeployRequests
from bot.adapters.lock_store import LockStore
from bot.adapters.outbox import Message
from bot.adapters.usergroups import MembersUnread
from bot.config import Config
from bot.domain.change_gate import Refusal, gate
from bot.domain.deploy_queue import (
    LastRollout,
    QueuedDeploy,
    RequestState,
    may_approve,
    may_cancel,
    may_deny,
    queue_position,
)
from bot.domain.policy import Allowed, Grant, decide
from bot.engine.request_reporter import told
from bot.render.blocks import Block, context, header, section
from commands.framework import Answer, Command, Invalid, Invocation, Plan, Runtime
from commands.grammar import Args, UserError, check_options, resolve_service

RequestVerb = Literal["approve", "deny", "cancel"]


async def _groups(runtime: Runtime, user: str) -> frozenset[str]:
    """The Slack user groups `user` is in: the one place approvals and cancels ask. A group whose members were never
    read from Slack is not counted as one of them (fail closed): an approval it would allow is refused for now."""
    try:
        return await runtime.groups_of(user)
    except MembersUnread as exc:
        return exc.known


def is_approver(runtime: Runtime, user: str, approvers: str, groups: frozenset[str]) -> bool:
    """Whether `user` is in `approvers`: a role of the config (its members, user groups among them), or a group."""
    role = runtime.config.roles.get(approvers)
    if role is None:
        return approvers in groups
    return Grant(approvers, frozenset(role.members), frozenset(), frozenset()).includes(user, groups)


def may_roll_back(runtime: Runtime, user: str, service: str, groups: frozenset[str]) -> bool:
    return isinstance(decide(runtime.grants, user, groups, "rollback", service), Allowed)


def _refused(action: str, why: str) -> Invalid:
    return Invalid(action, why, f":no_entry: {why}", outcome="refused")


async def _request(runtime: Runtime, request_id: int, action: str) -> QueuedDeploy | Invalid:
    found = await asyncio.to_thread(DeployRequests(runtime.store).get, request_id)
    if found is None:
        return Invalid(action, "no such request", f"There is no deploy request #{request_id}. `/queue` lists them.")
    return found


async def approve(runtime: Runtime, request_id: int, user: str) -> str:
    """Count `user`'s approval; returns what they are told."""
    groups = await _groups(runtime, user)

    def refusal(request: QueuedDeploy) -> str | None:
        return may_approve(request, user, approver=is_approver(runtime, user, request.approvers, groups))

    result = await asyncio.to_thread(DeployRequests(runtime.store).approve, request_id, user, datetime.now(UTC),
                                     refusal, told)
    if isinstance(result, str):
        return f":no_entry: {result}"
    runtime.wake()
    if result.state is RequestState.QUEUED:
        return f":white_check_mark: You approved request #{request_id}; it is queued and starts when nothing is ahead."
    left = result.needed - len(result.approvals)
    return f":white_check_mark: You approved request #{request_id}; it needs {left} more."


async def end(runtime: Runtime, request: QueuedDeploy, state: RequestState, user: str, reason: str) -> str:
    """Deny or cancel a waiting request, said in its thread; returns what the person is told."""
    verb = "denied" if state is RequestState.DENIED else "cancelled"
    because = f": {reason}" if reason else ""
    only = (RequestState.AWAITING,) if state is RequestState.DENIED else (RequestState.AWAITING, RequestState.QUEUED)

    def said(ended: QueuedDeploy) -> list[Message]:
        """The requester hears of it, unless they withdrew a deploy that had no message of its own."""
        if not ended.needed and user == ended.requested_by:
            return told(ended)
        return told(ended, f":no_entry_sign: <@{ended.requested_by}>, request #{ended.id} (`{ended.tag}` to "
                           f"{ended.service}) was {verb} by <@{user}>{because}.")

    ended = await asyncio.to_thread(DeployRequests(runtime.store).end, request.id, state, user, reason,
                                    datetime.now(UTC), said, only_from=only)
    if ended is None:
        return f"Request #{request.id} had moved on already; nothing was {verb}. `/queue {request.service}` shows it."
    runtime.wake()
    return f":ok_hand: Request #{request.id} {verb}; its thread says so."


async def refusal(runtime: Runtime, request: QueuedDeploy, user: str, verb: RequestVerb,
                  action: str = "") -> Invalid | None:
    """Whether `user` may `verb` the request as it is now: the one place buttons and commands ask it. `action` is the
    audit row's, when the command's differs from the verb (`/queue cancel` is `queue`)."""
    groups = await _groups(runtime, user)
    if verb == "approve":
        why = may_approve(request, user, approver=is_approver(runtime, user, request.approvers, groups))
    elif verb == "deny":
        why = may_deny(request, user, approver=is_approver(runtime, user, request.approvers, groups))
    else:
        why = may_cancel(request, user, may_roll_back=may_roll_back(runtime, user, request.service, groups))
    return _refused(action or verb, why) if why else None


async def plan_request_click(verb: RequestVerb, request_id: int, invocation: Invocation, runtime: Runtime,
                             answer: Answer) -> Plan | Invalid:
    """A deploy request's button: what it does to the request as it is now."""
    found = await _request(runtime, request_id, verb)
    if isinstance(found, Invalid):
        return found
    request, user = found, invocation.user_id

    async def check() -> Invalid | None:
        return await refusal(runtime, request, user, verb)

    async def work() -> None:
        if verb == "approve":
            await answer(await approve(runtime, request.id, user))
        else:
            state = RequestState.DENIED if verb == "deny" else RequestState.CANCELLED
            await answer(await end(runtime, request, state, user, ""))

    return Plan(verb, request.service, None, work, check=check)


@dataclass(frozen=True)
class QueueRequest:
    verb: Literal["show", "resume", "cancel"]
    service: str | None = None
    request_id: int = 0


def _request_number(text: str | None, usage: str) -> int | UserError:
    digits = (text or "").removeprefix("#")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return UserError("give the request's number, as `/queue` lists it.", f"`{usage}`")
    return int(digits)


class QueueCommand(Command[QueueRequest]):
    name = "queue"
    action = "queue"
    usage = "/queue [service] | /queue resume <service> | /queue cancel <request#>"
    summary = "See the deploys waiting for their turn or for approval; resume a held queue, or cancel a request."
    details = ("A /deploy of a service whose rollout is in progress waits in its queue and starts when that one ends. "
               "When a rollout is rolled back or fails, the queue holds until `/queue resume <service>`. A request "
               "can be cancelled by whoever asked for it, or by someone who may roll the service back. Seeing the "
               "queue needs `status`; resuming needs `queue`.")
    examples = ("/queue", "/queue prediction-worker", "/queue resume prediction-worker", "/queue cancel 12")

    def parse(self, args: Args, config: Config) -> QueueRequest | UserError:
        problem = check_options(args, (), self.usage)
        if problem:
            return problem
        first = (args.target or "").lower()
        if first in ("resume", "cancel"):
            if len(args.positional) != 2:
                return UserError(f"`/queue {first}` takes one {'service' if first == 'resume' else 'request number'}.",
                                 f"`/queue {first} {'prediction-worker' if first == 'resume' else '12'}`")
            if first == "cancel":
                number = _request_number(args.positional[1], self.usage)
                return number if isinstance(number, UserError) else QueueRequest("cancel", request_id=number)
            service = resolve_service(args.positional[1], list(config.services), command="/queue resume")
            return service if isinstance(service, UserError) else QueueRequest("resume", service)
        if len(args.positional) > 1:
            return UserError("`/queue` takes at most one service.", f"`{self.usage}`")
        if args.target is None:
            return QueueRequest("show")
        service = resolve_service(args.target, list(config.services), command="/queue")
        return service if isinstance(service, UserError) else QueueRequest("show", service)

    def target(self, request: QueueRequest) -> str | None:
        return request.service

    def needs(self, request: QueueRequest) -> str | None:
        return {"show": "status", "resume": "queue", "cancel": None}[request.verb]

    async def check(self, request: QueueRequest, invocation: Invocation, runtime: Runtime) -> Invalid | None:
        if request.verb != "cancel":
            return None
        found = await _request(runtime, request.request_id, "queue")
        if isinstance(found, Invalid):
            return found
        return await refusal(runtime, found, invocation.user_id, "cancel", "queue")

    async def act(self, request: QueueRequest, invocation: Invocation, runtime: Runtime) -> None:
        requests = DeployRequests(runtime.store)
        if request.verb == "cancel":
            found = await asyncio.to_thread(requests.get, request.request_id)
            text = "" if found is None else await end(runtime, found, RequestState.CANCELLED, invocation.user_id, "")
            await runtime.slack.respond(invocation.response_url, text or "That request is gone; nothing to cancel.")
        elif request.verb == "resume":
            await runtime.slack.respond(invocation.response_url, await self.resume(request.service or "",
                                                                                   invocation, runtime))
        else:
            blocks = await self.shown(request.service, runtime)
            await runtime.slack.respond(invocation.response_url, "The deploy queue", blocks)

    async def resume(self, service: str, invocation: Invocation, runtime: Runtime) -> str:
        requests = DeployRequests(runtime.store)
        last = await asyncio.to_thread(requests.last_rollout, service)
        if last is None or not last.failed:
            return (f"The queue of {service} is not held: it starts the next deploy when no rollout is in progress. "
                    f"`/queue {service}` shows it.")
        if not await asyncio.to_thread(requests.resume, service, last.id, invocation.user_id, datetime.now(UTC)):
            return f"The queue of {service} was resumed already after rollout #{last.id}."
        runtime.wake()
        return (f":arrow_forward: Resumed the queue of {service} (held after rollout #{last.id} "
                f"{last.state.replace('_', ' ')}): the next deploy starts now, if one waits.")

    async def shown(self, service: str | None, runtime: Runtime) -> list[Block]:
        requests = DeployRequests(runtime.store)
        waiting = await asyncio.to_thread(requests.waiting, service)
        services = [service] if service else sorted({r.service for r in waiting})
        scope = service or "the fleet"
        blocks: list[Block] = [header(f"Deploy queue: {scope}")]
        now = datetime.now(UTC)
        locks = await LockStore(runtime.store).locks(now)
        for name in services:
            mine = [r for r in waiting if r.service == name]
            last = await asyncio.to_thread(requests.last_rollout, name)
            held = last is not None and last.failed and bool(mine) and not await asyncio.to_thread(
                requests.resumed, name, last.id)
            head = next((r for r in mine if r.state is RequestState.QUEUED), None)
            gated = None if head is None else gate(
                service=name, user=head.requested_by, now=now, locks=locks, freezes=runtime.config.freeze_windows(),
                override=head.override, may_override=bool(head.override))
            waits = "; ".join(gated.held) if isinstance(gated, Refusal) else ""
            blocks.append(section("\n".join(_queue_lines(name, mine, last, held, waits))))
        if len(blocks) == 1:
            blocks.append(section(f"Nothing is queued or awaiting approval for {scope}."))
        blocks.append(context("`/queue resume <service>` · `/queue cancel <request#>` · `/approve <request#>` · "
                              "`/deny <request#> <reason>`"))
        return blocks[:50]


def _queue_lines(service: str, waiting: list[QueuedDeploy], last: LastRollout | None, held: bool,
                 waits: str = "") -> list[str]:
    """`waits`: what holds the queue's head now (a lock, a freeze window), as the dispatcher's change gate sees it."""
    running = last is not None and last.open
    lines = [f"*{service}*"]
    if running and last is not None:
        lines.append(f"#1 rollout #{last.id} of `{last.tag}` by <@{last.requested_by}>, in progress")
    elif held and last is not None:
        lines.append(f":octagonal_sign: held since rollout #{last.id} of `{last.tag}` "
                     f"{last.state.replace('_', ' ')}: `/queue resume {service}`")
    for request in waiting:
        if request.state is RequestState.QUEUED:
            position = queue_position(waiting, request.id, running)
            waiting_on = f" · waits: {waits}" if waits and position == 1 else ""
            lines.append(f"#{position} request #{request.id}: `{request.tag}` by <@{request.requested_by}>"
                         f"{waiting_on}")
        else:
            lines.append(f"awaiting approval: request #{request.id}: `{request.tag}` by <@{request.requested_by}> "
                         f"({len(request.approvals)} of {request.needed})")
    if len(lines) == 1:
        lines.append("nothing waiting")
    return lines


async def _decidable(runtime: Runtime, request_id: int, user: str, verb: RequestVerb) -> Invalid | None:
    """Whether `user` may approve or deny request #`request_id` as it is now: the typed commands' check."""
    found = await _request(runtime, request_id, verb)
    return found if isinstance(found, Invalid) else await refusal(runtime, found, user, verb)


@dataclass(frozen=True)
class ApproveRequest:
    request_id: int


class Approve(Command[ApproveRequest]):
    name = "approve"
    action = None
    usage = "/approve <request#>"
    summary = "Approve a deploy that awaits approval: the request's Approve button, typed."
    details = ("Only the service's approvers may approve, never the requester; each person counts once. Once enough "
               "have approved, the deploy joins the queue and starts when nothing is ahead of it.")
    examples = ("/approve 12",)

    def parse(self, args: Args, config: Config) -> ApproveRequest | UserError:
        problem = check_options(args, (), self.usage)
        if problem:
            return problem
        number = _request_number(args.target, self.usage)
        if isinstance(number, UserError):
            return number
        if args.words:
            return UserError("`/approve` takes the request's number only.", f"`/approve {number}`")
        return ApproveRequest(number)

    async def check(self, request: ApproveRequest, invocation: Invocation, runtime: Runtime) -> Invalid | None:
        return await _decidable(runtime, request.request_id, invocation.user_id, "approve")

    async def act(self, request: ApproveRequest, invocation: Invocation, runtime: Runtime) -> None:
        await runtime.slack.respond(invocation.response_url,
                                    await approve(runtime, request.request_id, invocation.user_id))


@dataclass(frozen=True)
class DenyRequest:
    request_id: int
    reason: str


class Deny(Command[DenyRequest]):
    name = "deny"
    action = None
    usage = "/deny <request#> <reason>"
    summary = "Deny a deploy that awaits approval, with the reason its requester will read."
    details = "Only the service's approvers may deny, never the requester (who cancels with `/queue cancel`)."
    examples = ("/deny 12 not before tip-off: the props batch runs at 7",)

    def parse(self, args: Args, config: Config) -> DenyRequest | UserError:
        number = _request_number(args.target, self.usage)
        if isinstance(number, UserError):
            return number
        reason = " ".join([*args.words, *(f"{k}={v}" for k, v in args.options.items())]).strip()
        if not reason:
            return UserError("say why: the requester reads the reason.", f"`/deny {number} not before tip-off`")
        return DenyRequest(number, reason[:500])

    async def check(self, request: DenyRequest, invocation: Invocation, runtime: Runtime) -> Invalid | None:
        return await _decidable(runtime, request.request_id, invocation.user_id, "deny")

    async def act(self, request: DenyRequest, invocation: Invocation, runtime: Runtime) -> None:
        found = await asyncio.to_thread(DeployRequests(runtime.store).get, request.request_id)
        text = "That request is gone; nothing to deny." if found is None else await end(
            runtime, found, RequestState.DENIED, invocation.user_id, request.reason)
        await runtime.slack.respond(invocation.response_url, text)
