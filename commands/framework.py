"""How every request runs, slash command or button: one guarded pipeline, prepare -> authorize -> accept -> work.

`prepare` turns the request into a Plan, or an Invalid answer: for a command, the grammar and its parser, pure and
fast, so the answer rides in the ack itself; for a button, its payload read and what it names looked up again,
never trusted from the message. The policy is asked on every request, and a Plan may check the state it acts on
once the person is known to be allowed (a stale button). Each request leaves one audit row: `invalid` or `refused`
at once, otherwise `accepted`, then `ok` or `failed` once the work ends. The work runs after the ack (Slack gives
3 seconds) and reports through the response_url while Slack takes it, ephemerally once it is spent or expired.
A bug never reaches Slack as a traceback or a 500: the person gets a reference that is also in the audit row and
the logs, and nothing half-done is left unsaid.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Generic, TypeVar

from bot.adapters.cloudrun import CloudRunGateway
from bot.adapters.logs import LogsGateway
from bot.adapters.prober import Prober
from bot.adapters.slack import SlackGateway
from bot.adapters.store import AuditEntry, Store
from bot.adapters.usergroups import MembersUnread, UserGroups
from bot.config import Config
from bot.domain.policy import Grant, Refused, decide
from bot.engine.budget import ReadBudget
from bot.engine.digests import Digests
from bot.engine.incidents import IncidentEngine
from bot.engine.stats import Stats
from bot.render.mrkdwn import echoed, printable
from bot.runbooks import RunbookLinker
from commands.grammar import MAX_TEXT, Args, UserError, tokenize

log = logging.getLogger(__name__)

Request = TypeVar("Request")


@dataclass(frozen=True)
class Invocation:
    command: str
    text: str
    user_id: str
    user_name: str
    channel_id: str
    response_url: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Invocation:
        return cls(command=str(body.get("command", "")), text=str(body.get("text", "")).strip(),
                   user_id=str(body.get("user_id", "")), user_name=str(body.get("user_name", "")),
                   channel_id=str(body.get("channel_id", "")), response_url=str(body.get("response_url", "")))


def storable(text: str, limit: int) -> str:
    """`text` as a database column takes it: PostgreSQL's text refuses NUL, UTF-8 has no lone surrogates (a JSON
    payload may carry one), and a row holds at most `limit` characters of what someone typed."""
    clean = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return clean if len(clean) <= limit else clean[:limit] + f"… ({len(clean):,} characters)"


@dataclass
class Runtime:
    """Everything a command acts with; built once by the composition root."""

    config: Config
    slack: SlackGateway
    prober: Prober
    cloudrun: CloudRunGateway
    store: Store
    runbook_link: RunbookLinker
    wake: Callable[[], None]
    logs: LogsGateway
    log_budget: ReadBudget
    incidents: IncidentEngine
    digests: Digests
    usergroups: UserGroups
    stats: Stats

    @property
    def grants(self) -> tuple[Grant, ...]:
        roles = self.config.roles
        return (*(Grant(name, frozenset(role.members), frozenset(role.may), frozenset(role.services))
                  for name, role in roles.items()),
                *(Grant(team.role, frozenset({team.group}), frozenset(roles[team.role].may), frozenset(team.services),
                        team=name)
                  for name, team in self.config.teams.items()))

    async def groups_of(self, user_id: str) -> frozenset[str]:
        """The Slack user groups `user_id` is in, as last read from Slack (bot/adapters/usergroups.py); raises
        MembersUnread, with the groups known so far, while a group the config names has never been read."""
        return await self.usergroups.groups_of(user_id)

    async def audit(self, invocation: Invocation, action: str, service: str | None, outcome: str,
                    detail: str = "") -> int | None:
        """Write the request's row; returns its id (None if the store could not take it)."""
        entry = AuditEntry(user_id=storable(invocation.user_id, 64), user_name=storable(invocation.user_name, 128),
                           channel_id=storable(invocation.channel_id, 64), command=storable(invocation.command, 128),
                           text=storable(invocation.text, MAX_TEXT), action=storable(action, 64), service=service,
                           outcome=outcome, detail=storable(detail, 500))
        try:
            return (await asyncio.to_thread(self.store.record, entry)).id
        except Exception:
            log.exception("could not write the audit entry for %s", invocation.command)
            return None

    async def finish_audit(self, entry_id: int | None, outcome: str, detail: str = "") -> None:
        if entry_id is None:
            return
        try:
            await asyncio.to_thread(self.store.finish, entry_id, outcome, storable(detail, 500))
        except Exception:
            log.exception("could not finish audit entry %s as %s", entry_id, outcome)


class Command(ABC, Generic[Request]):
    name: ClassVar[str]
    summary: ClassVar[str]
    usage: ClassVar[str]
    examples: ClassVar[tuple[str, ...]]
    details: ClassVar[str] = ""
    action: ClassVar[str | None]
    """The policy action this command needs; None for commands anyone may use (help)."""

    @property
    def slash(self) -> str:
        return f"/{self.name}"

    @abstractmethod
    def parse(self, args: Args, config: Config) -> Request | UserError: ...

    def target(self, request: Request) -> str | None:
        """The service the policy decides about; None for fleet-wide or read-only commands."""
        return None

    async def locate(self, request: Request, runtime: Runtime) -> Request | Invalid:
        """What a request names only by an id (an incident's number), looked up before the policy is asked, so that
        it is decided on the service it acts on; Invalid when there is no such thing."""
        return request

    def acknowledgement(self, request: Request, config: Config) -> str:
        return ""

    def needs(self, request: Request) -> str | None:
        """The policy action this request needs: the command's, unless a subcommand needs another."""
        return self.action

    async def check(self, request: Request, invocation: Invocation, runtime: Runtime) -> Invalid | None:
        """Once the person is allowed: what the request acts on, looked at now (a decided request)."""
        return None

    @abstractmethod
    async def act(self, request: Request, invocation: Invocation, runtime: Runtime) -> None: ...


Ack = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Invalid:
    """A request not understood: `problem` for the audit row, `answer` for the person."""

    action: str
    problem: str
    answer: str
    outcome: str = "invalid"
    """`refused` when the request was understood but this person may not do it now (a requester's own approval)."""


@dataclass(frozen=True)
class Plan:
    """A request understood: what the policy is asked (`needs`; None: anyone may) about which service, and the work.
    `check`, if given, looks at the state the work would act on once the person may act (a stale button)."""

    action: str
    service: str | None
    needs: str | None
    work: Callable[[], Awaitable[None]]
    acknowledgement: str = ""
    check: Callable[[], Awaitable[Invalid | None]] | None = None


class Answer:
    """Where a request's answers go. A slash command's first answer rides in its ack, which Slack shows at once; a
    button is acked bare at once (Slack takes no answer in a block_actions response), so everything it says goes to
    the response_url. An answer that cannot be delivered is logged, never raised: the audit row still tells."""

    def __init__(self, runtime: Runtime, invocation: Invocation, ack: Ack | None) -> None:
        self._runtime = runtime
        self._invocation = invocation
        self._ack = ack

    async def __call__(self, text: str) -> None:
        if self._ack is not None:
            ack, self._ack = self._ack, None
            await ack(text=text)
            return
        if not text or not self._invocation.response_url.startswith(("https://", "http://")):
            return
        try:
            await self._runtime.slack.respond(self._invocation.response_url, text)
        except Exception:
            log.exception("could not answer %s about %s", self._invocation.user_id, self._invocation.command)


Prepare = Callable[[], Awaitable[Plan | Invalid]]


async def guarded(runtime: Runtime, invocation: Invocation, prepare: Prepare, answer: Answer) -> str:
    """The one pipeline every command and button goes through; returns the request's final outcome."""
    action, service, entry = invocation.command, None, None
    with runtime.slack.answering(invocation.response_url, invocation.channel_id, invocation.user_id):
        try:
            prepared = await prepare()
            action = prepared.action
            if isinstance(prepared, Invalid):
                return await _invalid(runtime, invocation, prepared, None, answer)
            service = prepared.service
            if prepared.needs is not None:
                try:
                    groups, unread = await runtime.groups_of(invocation.user_id), frozenset[str]()
                except MembersUnread as exc:
                    groups, unread = exc.known, exc.unread
                decision = decide(runtime.grants, invocation.user_id, groups, prepared.needs, service, unread=unread)
                if isinstance(decision, Refused):
                    advice = "" if decision.unread else " Ask someone who has it, or the on-call."
                    await answer(f":no_entry: {decision.message()}{advice}")
                    await runtime.audit(invocation, action, service, "refused", decision.message())
                    return "refused"
            stale = await prepared.check() if prepared.check else None
            if stale is not None:
                return await _invalid(runtime, invocation, stale, service, answer)
            await answer(prepared.acknowledgement)
            entry = await runtime.audit(invocation, action, service, "accepted")
            await prepared.work()
        except Exception as exc:
            reference = secrets.token_hex(4)
            log.exception("%s failed (ref %s)", invocation.command, reference)
            detail = f"ref {reference}: {type(exc).__name__}: {exc}"
            if entry is None:
                await runtime.audit(invocation, action, service, "failed", detail)
            else:
                await runtime.finish_audit(entry, "failed", detail)
            await answer(f":x: `{_shown(invocation)}` failed on our side (ref `{reference}` in the bot's logs). "
                         "Try again, or `/status` to see where things stand.")
            return "failed"
    await runtime.finish_audit(entry, "ok")
    return "ok"


async def _invalid(runtime: Runtime, invocation: Invocation, invalid: Invalid, service: str | None,
                   answer: Answer) -> str:
    await answer(invalid.answer)
    await runtime.audit(invocation, invalid.action, service, invalid.outcome, invalid.problem)
    return invalid.outcome


def _shown(invocation: Invocation) -> str:
    """The request as the person would recognise it, short enough to quote back."""
    said = printable(f"{invocation.command} {invocation.text}").strip()
    return echoed(said if len(said) <= 80 else said[:79] + "…")


def _parsed(command: Command[Any], invocation: Invocation, config: Config) -> Any:
    """The grammar, then the command's own parser (pure, before the ack): its request, or Invalid."""
    args = tokenize(invocation.text, command.usage)
    request = args if isinstance(args, UserError) else command.parse(args, config)
    if isinstance(request, UserError):
        return Invalid(command.action or command.name, request.problem,
                       request.text() + f"\nUsage: `{command.usage}` · `/help {command.name}` explains it.")
    return request


def _plan(command: Command[Any], request: Any, invocation: Invocation, runtime: Runtime) -> Plan:
    return Plan(command.action or command.name, command.target(request), command.needs(request),
                partial(command.act, request, invocation, runtime), command.acknowledgement(request, runtime.config),
                check=partial(command.check, request, invocation, runtime))


def plan_command(command: Command[Any], invocation: Invocation, runtime: Runtime) -> Plan | Invalid:
    """A slash command's request as its words alone say it (nothing looked up)."""
    request = _parsed(command, invocation, runtime.config)
    return request if isinstance(request, Invalid) else _plan(command, request, invocation, runtime)


async def plan_located(command: Command[Any], invocation: Invocation, runtime: Runtime) -> Plan | Invalid:
    """A slash command's request, with what it names by an id looked up (Command.locate) before the policy."""
    request = _parsed(command, invocation, runtime.config)
    if isinstance(request, Invalid):
        return request
    located = await command.locate(request, runtime)
    return located if isinstance(located, Invalid) else _plan(command, located, invocation, runtime)


async def handle(command: Command[Any], body: Mapping[str, Any], ack: Ack, runtime: Runtime) -> str:
    invocation = Invocation.from_body(body)

    async def prepare() -> Plan | Invalid:
        return await plan_located(command, invocation, runtime)

    return await guarded(runtime, invocation, prepare, Answer(runtime, invocation, ack))
