"""`/incidents`, `/ack <service>` and `/silence <service> <duration> [reason]`: the alert side, from the keyboard.

`/ack` does what the incident's Acknowledge button does; `/silence` holds a service's alerts through
maintenance, as Alertmanager's silences do, and says so in the alert channel with its end time.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.adapters.incident_store import Silence
from bot.adapters.outbox import Message
from bot.config import Config
from bot.render.blocks import context, header, section
from bot.render.mrkdwn import echoed, escape, printable
from commands.framework import Command, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, check_words, resolve_service

_DURATION = re.compile(r"^([0-9]{1,6})(m|h|d)$")
"""ASCII digits, and few enough that a mistyped number is refused as too long instead of overflowing timedelta."""
_UNIT = {"m": 60, "h": 3600, "d": 86400}
MAX_SILENCE = timedelta(days=7)


def age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "?"
    minutes = int((now - since).total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


@dataclass(frozen=True)
class NoRequest:
    pass


class Incidents(Command[NoRequest]):
    name = "incidents"
    action = "incidents"
    usage = "/incidents"
    summary = "The open incidents: what fails, for how long, and who has them."
    examples = ("/incidents",)

    def parse(self, args: Args, config: Config) -> NoRequest | UserError:
        if args.positional or args.options:
            return UserError("`/incidents` takes nothing after it.", "`/incidents`")
        return NoRequest()

    async def act(self, request: NoRequest, invocation: Invocation, runtime: Runtime) -> None:
        now = datetime.now(UTC)
        found = await asyncio.to_thread(runtime.incidents.incidents.open_incidents)
        title = f"{len(found)} open incident{'s' if len(found) != 1 else ''}"
        blocks = [header(title)]
        for stored in found[:45]:
            incident = stored.incident
            checks = ", ".join(f"`{escape(c.check)}`" for c in incident.checks) or "recovering"
            owners = runtime.config.services[incident.service].owners if incident.service in runtime.config.services \
                else ()
            who = (f"acknowledged by <@{incident.acknowledged_by}>" if incident.acknowledged_by else
                   "not acknowledged" + (" · owners " + " ".join(_mention(o) for o in owners) if owners else ""))
            blocks.append(section(f"*{incident.service}* · #{incident.id} · {checks} · open for "
                                  f"{age(incident.opened_at, now)} · {who}"))
        if len(found) > 45:
            blocks.append(context(f"and {len(found) - 45} more"))
        if not found:
            blocks.append(context("Nothing is failing that the sweeps know of."))
        await runtime.slack.respond(invocation.response_url, title, blocks)


def _mention(member: str) -> str:
    return f"<!subteam^{member}>" if member.startswith("S") else f"<@{member}>"


@dataclass(frozen=True)
class ServiceOnly:
    service: str


class Ack(Command[ServiceOnly]):
    name = "ack"
    action = "ack"
    usage = "/ack <service>"
    summary = "Acknowledge a service's open incident: you have it; escalation stops."
    examples = ("/ack prediction-worker",)

    def parse(self, args: Args, config: Config) -> ServiceOnly | UserError:
        problem = check_words(args, (), self.usage) or check_options(args, (), self.usage)
        if problem:
            return problem
        service = resolve_service(args.target, list(config.services), command="/ack")
        return service if isinstance(service, UserError) else ServiceOnly(service)

    def target(self, request: ServiceOnly) -> str | None:
        return request.service

    async def act(self, request: ServiceOnly, invocation: Invocation, runtime: Runtime) -> None:
        await runtime.slack.respond(invocation.response_url,
                                    await acknowledge(runtime, request.service, invocation.user_id))


async def acknowledge(runtime: Runtime, service: str, user: str) -> str:
    """What /ack and the Acknowledge button both do; returns the answer for the person."""
    before = await asyncio.to_thread(runtime.incidents.incidents.current, service)
    if before is None or not before.incident.is_open:
        return f"{service} has no open incident. `/incidents` lists them."
    if before.incident.acknowledged_by:
        return (f"Incident #{before.incident.id} of {service} is already acknowledged by "
                f"<@{before.incident.acknowledged_by}>.")
    after = await runtime.incidents.acknowledge(service, user)
    if after is None or after.incident.acknowledged_by != user:
        return f"Incident #{before.incident.id} of {service} changed just now; `/incidents` shows where it is."
    return f":ok_hand: You have incident #{after.incident.id} of {service}; escalation stops."


@dataclass(frozen=True)
class SilenceRequest:
    service: str
    duration: timedelta
    reason: str


class SilenceCommand(Command[SilenceRequest]):
    name = "silence"
    action = "silence"
    usage = "/silence <service> <duration: 30m, 2h, 1d> [reason]"
    summary = "Hold a service's alerts during maintenance; the channel is told, with the end time."
    details = "Incidents still count while silenced; one still open when the silence ends is announced then."
    examples = ("/silence nba-grading-service 2h BigQuery maintenance window",)

    def parse(self, args: Args, config: Config) -> SilenceRequest | UserError:
        problem = check_options(args, (), self.usage)
        if problem:
            return problem
        service = resolve_service(args.target, list(config.services), command="/silence")
        if isinstance(service, UserError):
            return service
        if not args.words:
            return UserError("for how long?", f"`/silence {service} 2h maintenance`")
        match = _DURATION.match(args.words[0].lower())
        if match is None:
            return UserError(f"`{echoed(args.words[0])}` is not a duration: write minutes, hours or days like "
                             "`30m`, `2h`, `1d`.", f"`/silence {service} 2h maintenance`")
        duration = timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)])
        if not timedelta(minutes=1) <= duration <= MAX_SILENCE:
            return UserError("a silence lasts between 1 minute and 7 days.", f"`/silence {service} 2h maintenance`")
        return SilenceRequest(service, duration, " ".join(args.words[1:])[:300])

    def target(self, request: SilenceRequest) -> str | None:
        return request.service

    async def act(self, request: SilenceRequest, invocation: Invocation, runtime: Runtime) -> None:
        now = datetime.now(UTC)
        ends = now + request.duration
        why = f": {escape(printable(request.reason))}" if request.reason else ""
        text = (f":mute: <@{invocation.user_id}> silenced *{request.service}*'s alerts until {ends:%Y-%m-%d %H:%M} UTC"
                f"{why}")
        channel = runtime.config.alert_channel_for(request.service)
        told = Message(f"silence:{request.service}:{now.timestamp():.0f}", "post", channel, text, [section(text)])
        await asyncio.to_thread(runtime.incidents.incidents.silence,
                                Silence(request.service, now, ends, request.reason, invocation.user_id), [told])
        runtime.incidents.sent()
        await runtime.slack.respond(invocation.response_url,
                                    f":mute: {request.service} is silenced until {ends:%H:%M} UTC; the alert channel "
                                    "is told.")
