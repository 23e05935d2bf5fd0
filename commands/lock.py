"""`/lock <service|all> [for <duration>] <reason>` and `/unlock <service|all> [reason]`: say "not now" to everyone
else's deploys of a service, and take it back.

A lock names who holds it, why and until when (without `for`: until unlocked). Its holder may still deploy; anyone
else's `/deploy`, `/promote` and `/resume` are refused, saying so (commands/change_control.py). Breaking someone else's
lock takes the `override` action, and is announced in the deploy channel and audited. Rollbacks and pauses never
ask about locks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.adapters.lock_store import LockStore
from bot.adapters.outbox import Message
from bot.config import Config
from bot.domain.change_gate import ALL, Lock
from bot.render.blocks import actions, section
from bot.render.change_control import unlock_button
from bot.render.mrkdwn import echoed
from commands.change_control import may, reason_of
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, resolve_service

_DURATION = re.compile(r"^(\d{1,4})(m|h|d)$")
_UNIT = {"m": 60, "h": 3600, "d": 86400}
LONGEST = timedelta(days=30)


@dataclass(frozen=True)
class LockRequest:
    service: str  # a service, or `all`
    reason: str
    duration: timedelta | None = None


def _what(service: str) -> str:
    return "every service" if service == ALL else f"*{service}*"


class LockCommand(Command[LockRequest]):
    name = "lock"
    action = "lock"
    usage = "/lock <service|all> [for <duration: 30m, 2h, 1d>] <reason>"
    summary = ("Hold a service (or all of them): others' deploys, promotions and resumes are refused until you "
               "unlock it or it ends. Rollbacks and pauses still work.")
    details = ("Without `for`, the lock holds until `/unlock`. You may still deploy what you locked. Someone with the "
               "`override` permission can deploy past it (`override=\"why\"`) or break it (`/unlock`); both are "
               "announced in the deploy channel.")
    examples = ("/lock prediction-worker for 2h model retraining in progress", "/lock all release freeze for 1.4")

    def parse(self, args: Args, config: Config) -> LockRequest | UserError:
        problem = check_options(args, (), self.usage)
        if problem:
            return problem
        service = resolve_service(args.target, list(config.services), command="/lock", allow_all=True)
        if isinstance(service, UserError):
            return service
        words = list(args.words)
        duration = None
        if words and words[0].lower() == "for":
            match = _DURATION.match(words[1].lower()) if len(words) > 1 else None
            if match is None:
                got = f"`{echoed(words[1])}` is not" if len(words) > 1 else "`for` needs"
                return UserError(f"{got} a duration: write minutes, hours or days like `30m`, `2h`, `1d`.",
                                 f"`/lock {service} for 2h <reason>`")
            duration = timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)])
            if not timedelta(minutes=1) <= duration <= LONGEST:
                return UserError("a lock with `for` lasts between 1 minute and 30 days; without `for` it holds until "
                                 "unlocked.", f"`/lock {service} for 2h <reason>`")
            words = words[2:]
        reason = reason_of(" ".join(words))
        if not reason:
            return UserError("say why, so that whoever is refused knows.", f"`/lock {service} for 2h <reason>`")
        return LockRequest(service, reason, duration)

    def target(self, request: LockRequest) -> str | None:
        return None if request.service == ALL else request.service

    async def act(self, request: LockRequest, invocation: Invocation, runtime: Runtime) -> None:
        now = datetime.now(UTC)
        user = invocation.user_id
        lock = Lock(request.service, user, request.reason, now, now + request.duration if request.duration else None)
        text = (f":lock: <@{user}> locked {_what(request.service)} {lock.ends}: {request.reason}. Deploys by others "
                f"are refused until then; `/unlock {request.service}` releases it.")
        held = await LockStore(runtime.store).take(lock, [_told(runtime, request.service, now, text, lock)])
        if held.holder != user:
            await runtime.slack.respond(invocation.response_url, (
                f":lock: {_what(request.service)} is already {held.spoken()}. Ask <@{held.holder}> to "
                f"`/unlock {request.service}`; someone with the `override` permission can break it."))
            return
        runtime.incidents.sent()
        await runtime.slack.respond(invocation.response_url,
                                    f":lock: Locked {_what(request.service)} {lock.ends}; the deploy channel is told.")


@dataclass(frozen=True)
class UnlockRequest:
    """`drawn`: when the lock an Unlock button was drawn for was taken; that lock, and no later one, is released."""

    service: str
    reason: str = ""
    drawn: datetime | None = None


class UnlockCommand(Command[UnlockRequest]):
    name = "unlock"
    action = "lock"
    usage = "/unlock <service|all> [reason]"
    summary = "Release a lock. Breaking someone else's needs the `override` permission and is announced."
    examples = ("/unlock prediction-worker", "/unlock all incident over")

    def parse(self, args: Args, config: Config) -> UnlockRequest | UserError:
        problem = check_options(args, (), self.usage)
        if problem:
            return problem
        service = resolve_service(args.target, list(config.services), command="/unlock", allow_all=True)
        if isinstance(service, UserError):
            return service
        return UnlockRequest(service, reason_of(" ".join(args.words)))

    def target(self, request: UnlockRequest) -> str | None:
        return None if request.service == ALL else request.service

    async def act(self, request: UnlockRequest, invocation: Invocation, runtime: Runtime) -> None:
        now = datetime.now(UTC)
        user = invocation.user_id
        store = LockStore(runtime.store)
        held = next((lock for lock in await store.locks(now) if lock.service == request.service), None)
        if held is not None and request.drawn is not None and held.since != request.drawn:
            await runtime.slack.respond(invocation.response_url, (
                f"That button was for an earlier lock on {_what(request.service)}; it is now {held.spoken()}. "
                f"Nothing was done: `/unlock {request.service}` releases the lock that holds now."))
            return
        if held is None:
            await runtime.slack.respond(invocation.response_url, f"{_what(request.service)} is not locked; nothing "
                                                                 "to do. `/status` shows the locks.")
            return
        why = f": {request.reason}" if request.reason else ""
        if held.holder == user:
            text = f":unlock: <@{user}> unlocked {_what(request.service)}{why}."
        else:
            allowed, roles = await may(runtime, user, "override", self.target(request))
            if not allowed:
                needed = " or ".join(f"*{role}*" for role in roles) or "a role with the `override` action"
                refusal = (f":no_entry: {_what(request.service)} is {held.spoken()}. Breaking someone else's lock "
                           f"needs the {needed} role: ask <@{held.holder}> to `/unlock {request.service}`, or "
                           "someone who has it.")
                await runtime.audit(invocation, "override", self.target(request), "refused", refusal)
                await runtime.slack.respond(invocation.response_url, refusal)
                return
            text = (f":warning: <@{user}> broke <@{held.holder}>'s lock on {_what(request.service)}{why} (it was "
                    f"{held.spoken()}).")
        if not await store.release(held, now, [_told(runtime, request.service, now, text)]):
            await runtime.slack.respond(invocation.response_url, f"The lock on {_what(request.service)} changed "
                                                                 "meanwhile; `/status` shows it now.")
            return
        if held.holder != user:
            await runtime.audit(invocation, "override", self.target(request), "ok",
                                f"broke <@{held.holder}>'s lock ({held.reason}){why}")
        runtime.incidents.sent()
        await runtime.slack.respond(invocation.response_url, f":unlock: Unlocked {_what(request.service)}; the "
                                                             "deploy channel is told.")


def _told(runtime: Runtime, service: str, now: datetime, text: str, taken: Lock | None = None) -> Message:
    """The deploy channel's line; a lock taken carries its Unlock button."""
    channel = runtime.config.slack.channels[runtime.config.slack.deploy_channel]
    blocks = [section(text)] + ([actions(unlock_button(taken))] if taken is not None else [])
    return Message(f"lock:{service}:{now.timestamp():.6f}", "post", channel, text, blocks)
