"""A Cloud Monitoring incident as the bot sees it: which policy and condition fired for which service, opened or
closed, and what the policy's documentation tells the responder.

Google sends one notification when an incident opens and one when it closes, both with the same `incident_id`
(https://cloud.google.com/monitoring/support/notification-options#webhooks, schema version 1.2), so the id is
what ties the two together; deciding what a repeated or out-of-order notification means is the incident
engine's job, not this type's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

IncidentState = Literal["open", "closed"]


@dataclass(frozen=True)
class Documentation:
    """The alerting policy's documentation, as the policy's author wrote it for whoever is paged."""

    content: str
    mime_type: str
    subject: str | None


@dataclass(frozen=True)
class MonitoringAlert:
    """`service` is the Cloud Run service named by the incident's `cloud_run_revision` resource, or None when
    the policy watches something else (an uptime check, a load balancer)."""

    incident_id: str
    policy: str
    condition: str
    service: str | None
    state: IncidentState
    started_at: datetime
    ended_at: datetime | None
    summary: str
    documentation: Documentation | None
    url: str


OnAlert = Callable[[MonitoringAlert], Awaitable[None]]
"""What the bot does with an authenticated, well-formed alert."""
