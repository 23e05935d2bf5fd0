"""`/timeline <service|#incident>` and the incident's Timeline button: a Markdown postmortem draft uploaded to the
incident's thread.

The draft is built from what is kept anyway (bot/domain/timeline.py) and linked message by message with
chat.getPermalink, with a chart of its checks' history; both go out as outbox `upload` rows of the incident's
thread, so each is shared once, after everything the thread said before it, by whichever instance sends the outbox.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.adapters.incident_store import StoredIncident
from bot.adapters.outbox import Message, Outbox
from bot.config import Config
from bot.domain.timeline import Change, Said, Timeline, build, check_spans
from bot.render.chart_data import IncidentHistory
from bot.render.timeline import timeline_markdown
from commands.framework import Command, Invalid, Invocation, Runtime
from commands.grammar import Args, UserError, check_options, check_words, resolve_service

_INCIDENT = re.compile(r"#([0-9]{1,18})")
_LINKS_AT_ONCE = 4
ROLLOUTS_READ = 50
"""The service's latest rollouts looked at for deploys and rollbacks near the incident."""


@dataclass(frozen=True)
class TimelineRequest:
    service: str | None
    incident_id: int | None = None


class TimelineCommand(Command[TimelineRequest]):
    name = "timeline"
    action = "timeline"
    usage = "/timeline <service|#incident>"
    summary = "Upload an incident's timeline to its thread, as a Markdown postmortem draft."
    details = ("With a service: its open incident, else its last one. `#12` names incident 12, and is decided on "
               "that incident's service, as its Timeline button is.")
    examples = ("/timeline prediction-worker", "/timeline #12")

    def parse(self, args: Args, config: Config) -> TimelineRequest | UserError:
        problem = check_words(args, (), self.usage) or check_options(args, (), self.usage)
        if problem:
            return problem
        numbered = _INCIDENT.fullmatch(args.target or "")
        if numbered is not None:
            return TimelineRequest(None, int(numbered.group(1)))
        service = resolve_service(args.target, list(config.services), command="/timeline")
        return service if isinstance(service, UserError) else TimelineRequest(service)

    def target(self, request: TimelineRequest) -> str | None:
        return request.service

    async def locate(self, request: TimelineRequest, runtime: Runtime) -> TimelineRequest | Invalid:
        if request.incident_id is None:
            return request
        found = await asyncio.to_thread(runtime.incidents.incidents.by_id, request.incident_id)
        if found is None:
            return Invalid("timeline", "no such incident",
                           f"There is no incident #{request.incident_id}. `/incidents` lists the open ones.")
        return TimelineRequest(found.incident.service, request.incident_id)

    async def act(self, request: TimelineRequest, invocation: Invocation, runtime: Runtime) -> None:
        incidents = runtime.incidents.incidents
        if request.incident_id is not None:
            found = await asyncio.to_thread(incidents.by_id, request.incident_id)
            missing = f"There is no incident #{request.incident_id}. `/incidents` lists the open ones."
        else:
            found = await asyncio.to_thread(incidents.current, request.service or "")
            missing = f"{request.service} has had no incident. `/incidents` lists the open ones."
        await runtime.slack.respond(invocation.response_url,
                                    missing if found is None else await share_timeline(runtime, found))


async def share_timeline(runtime: Runtime, stored: StoredIncident) -> str:
    """Queue the incident's timeline for its thread; returns the answer for the person who asked."""
    incident = stored.incident
    if not incident.announced:
        return f"Incident #{incident.id} of {incident.service} has no thread yet (it was silenced from the start)."
    now = datetime.now(UTC)
    sent = await asyncio.to_thread(Outbox(runtime.store).said, stored.thread_key)
    rollouts = await asyncio.to_thread(runtime.store.rollouts, service=incident.service, limit=ROLLOUTS_READ)
    said = [Said(s.at, s.text, s.channel, s.ts, s.first) for s in sent if s.ts]
    changes = [Change(r.rollout.id, r.rollout.created_at,
                      (f"rollback to `{r.rollout.candidate}`" if r.rollout.is_restore
                       else f"deploy of `{r.rollout.candidate}` ({r.rollout.image})")
                      + f" by <@{r.rollout.requested_by}>, {r.rollout.state.value.replace('_', ' ')}",
                      r.rollout.state.value, r.rollout.ended_at, r.rollout.is_restore, r.channel, r.message_ts or "")
               for r in rollouts]
    timeline = build(incident, said, changes, now)
    links = await _permalinks(runtime, timeline)
    file = {"filename": f"incident-{incident.id}-timeline.md",
            "title": f"Incident #{incident.id} of {incident.service}: timeline", "markdown":
                timeline_markdown(timeline, links)}
    message = Message(stored.thread_key, "upload", stored.channel, "", file=file)
    chart = Message(stored.thread_key, "upload", stored.channel, "",
                    file={"filename": f"incident-{incident.id}-checks.png",
                          "title": f"Incident #{incident.id} of {incident.service}: check history",
                          "chart": "incident", "data": history(timeline, now).to_json()})
    await asyncio.to_thread(runtime.incidents.incidents.store_messages, [message, chart])
    runtime.incidents.sent()
    return (f":memo: The timeline of incident #{incident.id} ({incident.service}) and its check history are on "
            "their way to its thread.")


def history(timeline: Timeline, now: datetime) -> IncidentHistory:
    """The chart of the incident's checks: their failing spans, and when it was acknowledged, escalated, resolved."""
    marked = ("acknowledged", "escalated", "resolved")
    return IncidentHistory(timeline.service, timeline.incident_id,
                           tuple((s.check, s.start.isoformat(), s.end.isoformat())
                                 for s in check_spans(timeline, now)),
                           tuple((e.kind, e.at.isoformat()) for e in timeline.entries if e.kind in marked))


async def _permalinks(runtime: Runtime, timeline: Timeline) -> dict[tuple[str, str], str]:
    wanted = list(dict.fromkeys((e.channel, e.ts) for e in timeline.entries if e.channel and e.ts))
    slots = asyncio.Semaphore(_LINKS_AT_ONCE)

    async def one(channel: str, ts: str) -> str | None:
        async with slots:
            return await runtime.slack.permalink(channel, ts)

    found = await asyncio.gather(*(one(channel, ts) for channel, ts in wanted))
    return {key: url for key, url in zip(wanted, found, strict=True) if url}
