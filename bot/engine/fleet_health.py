"""The whole fleet's health, once: the one way `/health all`, the sweeper and digests probe every service."""

from __future__ import annotations

from collections.abc import Sequence

from bot.adapters.cloudrun import CloudRunGateway
from bot.adapters.prober import Prober, Target
from bot.config import Config
from bot.domain.health import FleetHealth, ServiceHealth, Status, classify


def missing(config: Config, service: str) -> ServiceHealth:
    reason = f"not found in Cloud Run ({config.project}/{config.region})"
    return ServiceHealth(service, Status.UNREACHABLE, reason, ())


async def probe_fleet(config: Config, cloudrun: CloudRunGateway, prober: Prober,
                      services: Sequence[str] | None = None) -> FleetHealth:
    """Every configured service (or those named), probed concurrently; raises CloudRunUnavailable when the
    services' URLs cannot be listed."""
    urls = await cloudrun.service_urls()
    names = list(services if services is not None else config.services)
    known = [name for name in names if name in urls]
    # A service's URL is also the audience of the ID token that opens it.
    probed = await prober.probe_many([Target(urls[name], config.health_for(name), urls[name]) for name in known])
    found = {name: classify(name, probes) for name, probes in zip(known, probed, strict=True)}
    return FleetHealth(tuple(found.get(name) or missing(config, name) for name in names))
