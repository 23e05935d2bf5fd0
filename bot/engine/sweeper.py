"""The periodic health sweep: at each fire time, one instance probes the whole fleet and hands the results to
the incident engine. The results are kept for the digests, so a digest says what the last sweep saw rather
than probing the fleet again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.adapters.cloudrun import CloudRunGateway, CloudRunUnavailable
from bot.adapters.incident_store import IncidentStore
from bot.adapters.prober import Prober
from bot.config import Config
from bot.domain.health import FleetHealth
from bot.engine.fleet_health import probe_fleet
from bot.engine.incidents import IncidentEngine

log = logging.getLogger(__name__)

JOB = "sweep"


class Sweeper:
    def __init__(self, config: Config, cloudrun: CloudRunGateway, prober: Prober, incidents: IncidentStore,
                 engine: IncidentEngine, owner: str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
                 ) -> None:
        self.config = config
        self.cloudrun = cloudrun
        self.prober = prober
        self.incidents = incidents
        self.engine = engine
        self.owner = owner
        self.clock = clock
        self.latest: FleetHealth | None = None
        self.latest_at: datetime | None = None
        self.swept = 0  # sweeps this instance ran: tests and benches read it

    async def run(self, fire: datetime, late: bool) -> None:
        if not await asyncio.to_thread(self.incidents.claim_run, JOB, fire, self.owner, self.clock()):
            return  # another instance has this fire time
        try:
            fleet = await probe_fleet(self.config, self.cloudrun, self.prober)
        except CloudRunUnavailable as exc:
            log.warning("sweep of %s skipped: %s", fire.isoformat(), exc)
            return
        self.latest, self.latest_at = fleet, self.clock()
        self.swept += 1
        await self.engine.swept(fleet.services)
