"""DORA's five figures from the store, with the images' upload times from Artifact Registry: for `/stats` and the
digest. The figures themselves are `bot.domain.dora`'s; this reads what they need, once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.adapters.artifacts import Artifacts
from bot.adapters.incident_store import IncidentStore
from bot.adapters.store import Store
from bot.domain.dora import REWORK_WINDOW, Figures, Incident, fleet_and_services, images_to_read, records_of


@dataclass(frozen=True)
class Report:
    fleet: Figures
    services: tuple[Figures, ...]
    unknown_why: str
    """Why some images' upload times are unknown ("" when all are known)."""


class Stats:
    def __init__(self, store: Store, incidents: IncidentStore, artifacts: Artifacts, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.incidents = incidents
        self.artifacts = artifacts
        self.clock = clock

    async def report(self, services: Sequence[str], period: timedelta, now: datetime | None = None) -> Report:
        """The fleet of `services` and each of them, over the `period` before `now`. Rollouts and incidents are read
        from a rework window earlier, so what came just before the period decides what its deploys were."""
        now = now or self.clock()
        since = now - period
        wanted = set(services)
        rollouts = [r for r in await asyncio.to_thread(self.store.ended_since, since - REWORK_WINDOW)
                    if r.service in wanted]
        uploads = await self.artifacts.upload_times(images_to_read(rollouts, since))
        cycles = await asyncio.to_thread(self.incidents.cycles_since, since - REWORK_WINDOW)
        still_open = await asyncio.to_thread(self.incidents.open_incidents)
        incidents = [Incident(c.service, c.detected_at, c.resolved_at) for c in cycles]
        incidents += [Incident(s.incident.service, s.incident.detected_at or s.incident.opened_at or now)
                      for s in still_open]
        records = records_of(rollouts, {image: upload.upload_time for image, upload in uploads.items()})
        fleet, each = fleet_and_services(records, list(services), since=since, now=now, incidents=incidents)
        why = "; ".join(sorted({u.why for u in uploads.values() if u.upload_time is None and u.why}))
        return Report(fleet, each, why)
