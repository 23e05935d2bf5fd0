"""`/deploy`, `/silence` and `/rollback` typed with no arguments open a modal; its Submit is the typed command.

The slash command is acked bare at once and the modal opened from config alone, so `views.open` lands within the
trigger's 3 seconds whatever Google takes. A submission is read into the words the command would have been typed
with (`/deploy <service> <strategy> tag=<tag>`) and parsed by the command's own parser before the 3 s answer: a
problem goes back on the field that caused it (`response_action: errors`, audited `invalid`, no message). A valid
one closes the modal and runs commands/framework.py's `guarded` pipeline exactly as the typed command does (policy,
locks and freezes, approvals, audit), answering through the response_url of the command that opened the modal.
Each value must be one word (a reason excepted): a tag such as `v1 dry-run` cannot smuggle words into the command.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bot.adapters.store import StoredRollout
from bot.adapters.views import ViewsGateway
from bot.config import Config
from bot.render.modals import (
    DEPLOY_CALLBACK,
    DURATION_BLOCK,
    IMAGE_BLOCK,
    OVERRIDE_BLOCK,
    REASON_BLOCK,
    REVISION_BLOCK,
    ROLLBACK_CALLBACK,
    SERVICE_BLOCK,
    SILENCE_CALLBACK,
    STRATEGY_BLOCK,
    Origin,
    RevisionChoice,
    deploy_modal,
    rollback_modal,
    service_options,
    silence_modal,
)
from commands.deploy import Deploy, plan_summary
from commands.framework import Ack, Answer, Command, Invalid, Invocation, Plan, Runtime, guarded, plan_located
from commands.grammar import UserError, as_value, tokenize
from commands.incidents import SilenceCommand
from commands.rollback import Rollback

STRATEGIES = ("canary", "direct")
_SPLITS = re.compile(r"[\s\"'\u201c\u201d\u2018\u2019]")
"""What would make one value more than one word to the grammar: blanks and quotes (straight or curly)."""
FREE_TEXT = (REASON_BLOCK, OVERRIDE_BLOCK)
"""Fields of free text, typed as one quoted word (grammar.as_value): blanks and quotes are theirs to hold."""
Field = tuple[str, str]
"""(block_id, the words it stands for in the typed command)."""


def values_of(view: Mapping[str, Any]) -> dict[str, str]:
    """Each field's entry by block_id: a text input's value, a select's chosen option's value."""
    state = view.get("state") if isinstance(view.get("state"), Mapping) else {}
    values = state.get("values") if isinstance(state, Mapping) else None
    found: dict[str, str] = {}
    for block_id, actions in (values.items() if isinstance(values, Mapping) else ()):
        for entered in (actions.values() if isinstance(actions, Mapping) else ()):
            if not isinstance(entered, Mapping):
                continue
            chosen = entered.get("selected_option")
            value = chosen.get("value") if isinstance(chosen, Mapping) else entered.get("value")
            if isinstance(value, str) and value.strip():
                found[str(block_id)] = value.strip()
    return found


def deploy_fields(values: Mapping[str, str]) -> list[Field]:
    image = values.get(IMAGE_BLOCK, "")
    given = f"image={image}" if "/" in image or "@" in image else f"tag={image}" if image else ""
    why = values.get(OVERRIDE_BLOCK, "")
    return [(SERVICE_BLOCK, values.get(SERVICE_BLOCK, "")), (STRATEGY_BLOCK, values.get(STRATEGY_BLOCK, "")),
            (IMAGE_BLOCK, given), (OVERRIDE_BLOCK, f"override={as_value(why)}" if why else "")]


def silence_fields(values: Mapping[str, str]) -> list[Field]:
    why = values.get(REASON_BLOCK, "")
    return [(SERVICE_BLOCK, values.get(SERVICE_BLOCK, "")), (DURATION_BLOCK, values.get(DURATION_BLOCK, "")),
            (REASON_BLOCK, as_value(why) if why else "")]


def rollback_fields(values: Mapping[str, str]) -> list[Field]:
    revision = values.get(REVISION_BLOCK, "")
    return [(SERVICE_BLOCK, values.get(SERVICE_BLOCK, "")), (REVISION_BLOCK, f"to={revision}" if revision else "")]


def typed(fields: Sequence[Field]) -> str:
    return " ".join(words for _, words in fields if words)


def field_errors(command: Command[Any], fields: Sequence[Field], config: Config) -> dict[str, str]:
    """What is wrong, on the field that caused it: the first field whose words, added to those before it, make the
    command's parser give the problem the whole command gets. Empty when the command parses."""
    for block_id, words in fields:
        if block_id not in FREE_TEXT and _SPLITS.search(words):
            return {block_id: "One word, please: no spaces or quotes."}
    problem = _problem(command, typed(fields), config)
    if problem is None:
        return {}
    for end in range(1, len(fields) + 1):
        if _problem(command, typed(fields[:end]), config) == problem:
            return {fields[end - 1][0]: problem}
    return {fields[-1][0]: problem}


def _problem(command: Command[Any], text: str, config: Config) -> str | None:
    args = tokenize(text, command.usage)
    parsed = args if isinstance(args, UserError) else command.parse(args, config)
    return parsed.problem.replace("`", "") if isinstance(parsed, UserError) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def invocation_of(command: Command[Any], body: Mapping[str, Any], text: str) -> Invocation:
    """The typed command the submission stands for, answered where the modal was opened from."""
    user, origin = _mapping(body.get("user")), Origin.read(_mapping(body.get("view")).get("private_metadata"))
    return Invocation(command=command.slash, text=text, user_id=str(user.get("id", "")),
                      user_name=str(user.get("username") or user.get("name") or ""),
                      channel_id=origin.channel, response_url=origin.response_url)


FIELDS = {DEPLOY_CALLBACK: deploy_fields, SILENCE_CALLBACK: silence_fields, ROLLBACK_CALLBACK: rollback_fields}
COMMANDS: dict[str, Command[Any]] = {DEPLOY_CALLBACK: Deploy(), SILENCE_CALLBACK: SilenceCommand(),
                                     ROLLBACK_CALLBACK: Rollback()}


async def open_modal(command: Command[Any], body: Mapping[str, Any], ack: Ack, runtime: Runtime) -> bool:
    """Open the command's modal if it was typed with no arguments and has one; False to run it as typed."""
    if str(body.get("text", "")).strip() or command.name not in ("deploy", "silence", "rollback"):
        return False
    await ack()
    origin = Origin(str(body.get("channel_id", "")), str(body.get("response_url", "")))
    if command.name == "deploy":
        view = deploy_modal(origin, STRATEGIES, runtime.config.defaults.canary.strategy)
    elif command.name == "silence":
        view = silence_modal(origin)
    else:
        view = rollback_modal(origin)
    refused = await ViewsGateway(runtime.slack.client).open(str(body.get("trigger_id", "")), view)
    if refused is not None:
        await runtime.slack.respond(origin.response_url, (
            f":x: Slack would not open the {command.slash} form ({refused}). Type it instead: `{command.usage}`."))
    return True


async def options(body: Mapping[str, Any], ack: Ack, runtime: Runtime) -> None:
    """The service picker's type-ahead (`block_suggestion`): the fleet's services matching what was typed."""
    await ack(options=service_options(list(runtime.config.services), str(body.get("value", ""))))


async def submit(body: Mapping[str, Any], ack: Ack, runtime: Runtime) -> str:
    """A modal's Submit: errors on the fields, or the modal closed and the typed command's pipeline run; returns
    the outcome as the pipeline (or the audit of an invalid submission) records it."""
    view = _mapping(body.get("view"))
    callback = str(view.get("callback_id", ""))
    command = COMMANDS[callback]
    fields = FIELDS[callback](values_of(view))
    invocation = invocation_of(command, body, typed(fields))
    errors = field_errors(command, fields, runtime.config)
    if errors:
        await ack(response_action="errors", errors=errors)
        await runtime.audit(invocation, command.action or command.name, None, "invalid",
                            "; ".join(errors.values()))
        return "invalid"
    await ack()

    async def prepare() -> Plan | Invalid:
        return await plan_located(command, invocation, runtime)

    return await guarded(runtime, invocation, prepare, Answer(runtime, invocation, None))


async def preview(body: Mapping[str, Any], ack: Ack, runtime: Runtime) -> str | None:
    """Preview plan: the dry run's plan drawn into the deploy modal (`views.update`), nothing changed. A problem
    with the fields is drawn there too; a valid preview is the typed `/deploy ... dry-run` through the pipeline
    (policy, audit), whose work draws the plan. Returns the pipeline's outcome (None when the fields were wrong)."""
    await ack()
    view = _mapping(body.get("view"))
    fields = deploy_fields(values_of(view))
    errors = field_errors(Deploy(), fields, runtime.config)
    args = tokenize(typed(fields), Deploy.usage)
    request = args if isinstance(args, UserError) else Deploy().parse(args, runtime.config)
    origin = Origin.read(view.get("private_metadata"))

    async def draw(lines: list[str]) -> None:
        redrawn = deploy_modal(origin, STRATEGIES, runtime.config.defaults.canary.strategy, plan=lines)
        await ViewsGateway(runtime.slack.client).update(str(view.get("id", "")), view.get("hash"), redrawn)

    if not values_of(view).get(SERVICE_BLOCK):
        await draw([":warning: Choose a service first."])
        return None
    if errors or isinstance(request, UserError):
        await draw([f":warning: {' '.join(errors.values())}"])
        return None
    planned = request

    async def work() -> None:
        stable = await Deploy().stable(runtime, planned.service)
        await draw([f"*Plan: {planned.strategy} deploy of {planned.service}* (dry run)",
                    *plan_summary(runtime, planned, stable)])

    invocation = invocation_of(Deploy(), body, f"{typed(fields)} dry-run")

    async def prepare() -> Plan | Invalid:
        return Plan(Deploy.action, planned.service, Deploy.action, work)

    return await guarded(runtime, invocation, prepare, Answer(runtime, invocation, None))


def revision_choices(serving: str | None, ready: Sequence[str], rollouts: Sequence[StoredRollout]) -> list[
        RevisionChoice]:
    """Ready revisions other than the serving one, each with when chatops last saw it serve: the start of the
    newest rollout it was the stable revision of (rollouts newest first)."""
    last: dict[str, str] = {}
    for stored in rollouts:
        stable = stored.rollout.stable
        if stable and stable not in last:
            last[stable] = f"served {stored.rollout.created_at:%Y-%m-%d %H:%M} UTC"
    return [RevisionChoice(name, last.get(name, "not seen serving by chatops")) for name in ready if name != serving]


async def rollback_service_picked(body: Mapping[str, Any], ack: Ack, runtime: Runtime) -> None:
    """The rollback modal's service was picked: list its Ready revisions in the modal."""
    await ack()
    view = _mapping(body.get("view"))
    service = values_of(view).get(SERVICE_BLOCK, "")
    if service not in runtime.config.services:
        return
    origin = Origin.read(view.get("private_metadata"))
    revisions = await runtime.cloudrun.revisions_of(service)
    serving = (await runtime.cloudrun.read(service)).serving
    rollouts = await asyncio.to_thread(runtime.store.rollouts, service=service, limit=50)
    choices = revision_choices(serving, [r.name for r in revisions if r.ready], rollouts)
    await ViewsGateway(runtime.slack.client).update(str(view.get("id", "")), view.get("hash"),
                                                     rollback_modal(origin, service, choices))
