"""The fleet's own HTTP surface: every revision answers /health, /ready and /health/deep.

A service's URL is `<fleet>/<service>` and a tag's is `<fleet>/<tag>---<service>`, mirroring Cloud
Run's `<tag>---<service>-<hash>.a.run.app`. Requests to the service URL are split by the routed
traffic percentages; a tag URL always reaches its revision. Bodies follow the seeds' health module:
overall status, the revision that answered (what `K_REVISION` says), and one entry per check.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.behaviour import Behaviour, Behaviours
from sandbox.cloudrun import CloudRun, rfc3339

DEEP_ONLY = frozenset({"vegas_line_coverage", "heartbeat", "grading_completeness", "recent_predictions"})
"""Data-quality checks are too slow for a readiness probe; the seeds run them only at /health/deep."""

_DETAILS: dict[str, tuple[str, str]] = {
    "bigquery": ("SELECT 1 on nba-props-platform succeeded",
                 "403 Access Denied: User does not have bigquery.jobs.create permission in project "
                 "nba-props-platform"),
    "gcs_bucket": ("gs://nba-scraped-data is readable",
                   "404 gs://nba-scraped-data not found or not readable by the service account"),
    "gcs_model_file": ("gs://nba-props-platform-models/catboost/v8/model.cbm found (41.2 MB)",
                       "model file gs://nba-props-platform-models/catboost/v8/model.cbm not found"),
    "model_config": ("CATBOOST_VERSION=v8 and CATBOOST_V8_MODEL_PATH are set",
                     "CATBOOST_VERSION is not set; the worker cannot choose a model"),
    "firestore": ("write and read of health_checks/probe succeeded",
                  "Firestore write to health_checks/probe failed: 504 Deadline Exceeded"),
    "pubsub": ("topic nba-phase4-precompute-complete is reachable",
               "Pub/Sub publish to nba-phase4-precompute-complete failed: 404 Resource not found"),
    "environment": ("required variables set: GCP_PROJECT_ID, ENVIRONMENT",
                    "missing required environment variables: GCP_PROJECT_ID"),
    "vegas_line_coverage": ("94.1% of today's player props have a Vegas line (target 90%)",
                            "Vegas line coverage 61.3% is below the 90% target"),
    "heartbeat": ("last processor heartbeat 42 s ago", "no processor heartbeat for 2 h 13 min"),
    "grading_completeness": ("100% of yesterday's predictions graded",
                             "only 71% of yesterday's predictions graded (expected 100%)"),
}


@dataclass(frozen=True)
class ServiceSpec:
    """What the sandbox needs to know to impersonate one service of the fleet."""

    checks: tuple[str, ...] = ("bigquery",)
    liveness: str = "/health"
    readiness: str = "/ready"
    deep: str = "/health/deep"
    requests_per_s: float = 2.0


@dataclass
class Fleet:
    run: CloudRun
    behaviours: Behaviours
    specs: dict[str, ServiceSpec]
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    probes: int = 0

    def spec(self, service: str) -> ServiceSpec:
        return self.specs.get(service, ServiceSpec())

    def behaviour(self, revision: str) -> Behaviour:
        found = self.run.revisions.get(revision)
        return self.behaviours.of(revision, found.image if found else "")

    def pick_revision(self, service: str) -> str | None:
        """A request to the service URL lands on a revision in proportion to the routed percentages."""
        shares = self.run.routed_share(service)
        if not shares:
            return None
        names = list(shares)
        return self.rng.choices(names, weights=[shares[n] for n in names])[0]

    def checks_of(self, service: str, behaviour: Behaviour, deep: bool) -> list[dict[str, Any]]:
        names = list(self.spec(service).checks)
        names += [c for c in behaviour.failing_checks if c not in names]
        checks = []
        for name in names:
            if name in DEEP_ONLY and not deep:
                continue
            failing = name in behaviour.failing_checks
            ok, bad = _DETAILS.get(name, (f"{name} check passed", f"{name} check failed"))
            duration = round(self.rng.uniform(3, 40) * (4 if deep else 1), 1)
            checks.append({"name": name, "status": "fail" if failing else "pass",
                           "duration_ms": duration, "detail": bad if failing else ok})
        return checks

    def health_body(self, service: str, revision: str, path: str) -> tuple[int, dict[str, Any]]:
        spec = self.spec(service)
        behaviour = self.behaviour(revision)
        found = self.run.revisions.get(revision)
        version = found.image.rpartition(":")[2] if found and ":" in found.image.rpartition("/")[2] else "latest"
        base = {"service": service, "revision": revision, "version": version, "timestamp": rfc3339()}
        if path == spec.liveness:
            return 200, {"status": "healthy", **base}
        checks = self.checks_of(service, behaviour, deep=path == spec.deep)
        failed = sum(1 for c in checks if c["status"] == "fail")
        body = {
            "status": ("unhealthy" if failed else ("ready" if path == spec.readiness else "healthy")),
            **base,
            "checks": checks,
            "checks_run": len(checks),
            "checks_passed": len(checks) - failed,
            "checks_failed": failed,
            "total_duration_ms": round(sum(c["duration_ms"] for c in checks), 1),
        }
        return (503 if failed else 200), body


def fleet_app(fleet: Fleet) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        host, path = request.match_info["host"], "/" + request.match_info["path"]
        resolved = fleet.run.resolve_host(host)
        if resolved is None:
            return web.Response(status=404, content_type="text/html",
                                text="<html><body><h1>Error: Page not found</h1><p>The requested URL was "
                                     "not found on this server.</p></body></html>")
        service, tagged = resolved
        revision = tagged or fleet.pick_revision(service)
        if revision is None:
            return web.Response(status=503, text="Service Unavailable: no revision is serving traffic.")
        behaviour = fleet.behaviour(revision)
        fleet.probes += 1
        if behaviour.down:
            # No instance answers: the connection drops, as a crashed container behind the front end does.
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        started = time.perf_counter()
        if behaviour.latency_ms:
            await asyncio.sleep(behaviour.latency_ms / 1000)
        spec = fleet.spec(service)
        headers = {"X-Served-By": revision,
                   "Server-Timing": f"app;dur={(time.perf_counter() - started) * 1000:.1f}"}
        if path in (spec.liveness, spec.readiness, spec.deep):
            status, body = fleet.health_body(service, revision, path)
            return web.json_response(body, status=status, headers=headers)
        if fleet.rng.random() < behaviour.error_rate:
            return web.json_response({"error": "internal error"}, status=500, headers=headers)
        return web.json_response({"ok": True, "revision": revision}, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{host}/{path:.*}", handle)
    return app
