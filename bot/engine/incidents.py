"""Where incidents change: sweeps, Cloud Monitoring's notifications, acknowledgements and the passing of time
go through `bot.domain.incidents`, and what it decides is saved with its Slack messages in one transaction.

Two instances may handle the same service at once (a sweep here, an acknowledgement there): the incident's
version makes one of them lose (`Stale`), and the loser reads the incident again and applies its event to the
winner's result, so no event is lost and no message is doubled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bot.adapters.incident_store import IncidentStore, Silence, Stale, StoredIncident
from bot.adapters.outbox import Action, Message
from bot.config import Config
from bot.domain.health import ServiceHealth
from bot.domain.incidents import (
    AlertPolicy,
    Failure,
    Incident,
    Step,
    acknowledge,
    failures_of,
    monitoring,
    observe,
    tick,
)
from bot.domain.monitoring_alert import MonitoringAlert
from bot.render.blocks import section
from bot.render.incident import RunbookLink, incident_message, reply

log = logging.getLogger(__name__)

Event = Callable[[Incident | None, datetime, bool], Step]
"""(the incident as stored, now, silenced) -> what the event makes of it."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def policy_of(config: Config) -> AlertPolicy:
    alerts = config.defaults.alerts
    return AlertPolicy(open_after=alerts.open_after, resolve_after=alerts.resolve_after, cooldown_s=alerts.cooldown,
                       escalate_after_s=alerts.escalate_after, escalation=alerts.escalation)


class IncidentEngine:
    def __init__(self, config: Config, incidents: IncidentStore, runbook: RunbookLink, *,
                 sent: Callable[[], None] = lambda: None, clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.incidents = incidents
        self.runbook = runbook
        self.sent = sent  # wakes the outbox sender
        self.clock = clock
        self.policy = policy_of(config)

    def _messages(self, before: Incident | None, step: Step, stored: StoredIncident) -> list[Message]:
        incident = stored.incident
        channel = stored.channel
        messages: list[Message] = []
        if step.parent:
            settings = self.config.services.get(incident.service)
            drawn = incident_message(incident, self.runbook, owners=settings.owners if settings else (),
                                     oncall=self.config.defaults.alerts.oncall)
            drawn_before = before is not None and before.announced and before.id == incident.id
            action: Action = "update" if drawn_before else "post"
            messages.append(Message(stored.thread_key, action, channel, drawn.text, drawn.blocks, drawn.attachments))
        for line in step.replies:
            said = reply(line)
            messages.append(Message(stored.thread_key, "reply", channel, said.text, said.blocks))
        return messages

    async def apply(self, service: str, event: Event, *, known: StoredIncident | None = None,
                    silences: dict[str, Silence] | None = None) -> StoredIncident | None:
        """Apply one event to the service's incident and save it with its messages; a lost race is retried on
        the winner's result."""
        channel = self.config.alert_channel_for(service) if service in self.config.services else \
            self.config.slack.channels[self.config.slack.deploy_channel]
        stored = known
        for attempt in range(3):
            if attempt or known is None:
                stored = await asyncio.to_thread(self.incidents.current, service)
            now = self.clock()
            if silences is None:
                silences = await asyncio.to_thread(self.incidents.silences, now)
            before = stored.incident if stored is not None else None
            step = event(before, now, service in silences)
            if step.incident == before and not step.parent and not step.replies:
                return stored
            def messages(kept: StoredIncident, b: Incident | None = before, s: Step = step) -> list[Message]:
                return self._messages(b, s, kept)

            try:
                saved = await asyncio.to_thread(self.incidents.save, stored, step.incident,
                                                stored.channel if stored else channel, now, messages, step.cycle)
            except Stale:
                log.info("incident of %s changed under us; applying the event again", service)
                continue
            if step.parent or step.replies:
                self.sent()
            return saved
        log.warning("incident of %s: three lost races in a row; the event waits for the next sweep", service)
        return None

    async def swept(self, healths: Sequence[ServiceHealth]) -> None:
        """One sweep's results for the whole fleet; incidents and silences are read once for all of it."""
        current = await asyncio.to_thread(self.incidents.current_all)
        silences = await asyncio.to_thread(self.incidents.silences, self.clock())
        for health in healths:
            failures = failures_of(health)
            known = current.get(health.service)
            if known is None and not failures:
                continue

            def event(before: Incident | None, now: datetime, silenced: bool, *, h: ServiceHealth = health,
                      f: tuple[Failure, ...] = failures) -> Step:
                return observe(before, h.service, f, now, self.policy, silenced=silenced)

            await self.apply(health.service, event, known=known, silences=silences)

    async def monitoring(self, service: str, check: str, detail: str, incident_id: str, closed: bool) -> None:
        alert = Failure(check, detail, "monitoring", incident_id)

        def event(before: Incident | None, now: datetime, silenced: bool) -> Step:
            return monitoring(before, service, alert, closed, now, self.policy, silenced=silenced)

        await self.apply(service, event)

    async def from_monitoring(self, alert: MonitoringAlert) -> None:
        """A Cloud Monitoring notification. About a service of the fleet: its incident's thread, deduplicated by
        incident id. About anything else: a thread of its own in the deploy channel, opened and closed."""
        doc = alert.documentation
        detail = " ".join(part for part in (alert.summary, doc.subject if doc else None,
                                            doc.content if doc else None) if part)
        check = f"monitoring: {alert.policy}"
        if alert.service is not None and alert.service in self.config.services:
            await self.monitoring(alert.service, check, detail[:1000], alert.incident_id, alert.state == "closed")
            return
        channel = self.config.slack.channels[self.config.slack.deploy_channel]
        key = f"monitoring:{alert.incident_id}"
        if alert.state == "open":
            text = f":rotating_light: Cloud Monitoring: *{alert.policy}* ({alert.condition}) fired: {detail[:2000]}"
            message = Message(key, "post", channel, text, [section(text)])
        else:
            text = f":large_green_circle: Cloud Monitoring closed *{alert.policy}*"
            message = Message(key, "reply", channel, text, [section(text)])
        await asyncio.to_thread(self.incidents.store_messages, [message])
        self.sent()

    async def acknowledge(self, service: str, user: str) -> StoredIncident | None:
        def event(before: Incident | None, now: datetime, silenced: bool) -> Step:
            return acknowledge(before, user, now) if before is not None else Step(None)

        return await self.apply(service, event)

    async def tick(self) -> None:
        """Escalations, and incidents a silence held back once it ends."""
        silences = await asyncio.to_thread(self.incidents.silences, self.clock())
        for stored in await asyncio.to_thread(self.incidents.open_incidents):
            def event(before: Incident | None, now: datetime, silenced: bool) -> Step:
                return tick(before, now, self.policy, silenced=silenced) if before is not None else Step(None)

            await self.apply(stored.incident.service, event, known=stored, silences=silences)
