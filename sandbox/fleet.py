"""The fleet's own HTTP surface: every revision answers /health, /ready and /health/deep.

A service's URL is `<fleet>/<service>` and a tag's is `<fleet>/<tag>---<service>`, mirroring Cloud
Run's `<tag>---<service>-<hash>.a.run.app`. Requests to the service URL are split by the routed
traffic percentages; a tag URL always reaches its revision. Bodies follow the seeds' health module:
overall status, the revision that answered (what `K_REVISION` says), and one entry per check.

In front of every service sits Cloud Run's IAM check (https://cloud.google.com/run/docs/securing/managing-access,
https://cloud.google.com/run/docs/authenticating/service-to-service): a service whose invoker policy does not
admit allUsers answers, on its URL and on its tag URLs alike, only requests whose `Authorization: Bearer` ID
token is valid, is meant for the service (its URL, https://cloud.google.com/run/docs/configuring/custom-audiences)
and names a member that may invoke it. The simulated background traffic does not pass through here.
"""

from __future__ import annotations

import asyncio
import html
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.behaviour import Behaviour, Behaviours
from sandbox.cloudrun import CloudRun, rfc3339
from sandbox.idtoken import InvalidToken

MayInvoke = Callable[[str, str | None], bool]
"""(service, the caller's email, or None for a caller without a token) -> may the caller invoke the service.
`may_invoke(service, None)` is true exactly when the service's invoker policy admits allUsers."""

Verify = Callable[[str], Mapping[str, Any]]
"""A bearer token -> its claims, or InvalidToken when it is not a valid Google-signed ID token."""

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


def _front_end_error(status: int, title: str, message: str) -> web.Response:
    """Cloud Run's front end answers a refused request with an HTML page, never reaching the container.
    Bodies as Cloud Run sends them: google/adk-python#3814 (401) and
    GoogleCloudPlatform/cloud-code-intellij#3133 (403)."""
    return web.Response(status=status, content_type="text/html", charset="utf-8", text=(
        '<html><head>\n<meta http-equiv="content-type" content="text/html;charset=utf-8">\n'
        f"<title>{status} {title}</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n"
        f"<h1>Error: {title}</h1>\n<h2>{message}</h2>\n<h2></h2>\n</body></html>\n"))


def forbidden(path: str) -> web.Response:
    """403: no credentials at all, or a valid token of a member without run.routes.invoke. Cloud Run logs the
    first as "The request was not authenticated. Either allow unauthenticated invocations or set the proper
    Authorization header." (kkom/gdrive-backup#36, a GET answered 403)."""
    return _front_end_error(403, "Forbidden", f"Your client does not have permission to get URL "
                                              f"<code>{html.escape(path)}</code> from this server.")


def unauthorized(path: str) -> web.Response:
    """401: a bearer token that cannot be accepted: not Google-signed, expired, or for another audience
    (GoogleCloudPlatform/cloud-run-proxy#10: audience "demo" fails with 401;
    GoogleCloudPlatform/cloud-networking-solutions#78: an `aud` that is not the service's URL gets 401)."""
    return _front_end_error(401, "Unauthorized", f"Your client does not have permission to the requested URL "
                                                 f"<code>{html.escape(path)}</code>.")


@dataclass
class Fleet:
    run: CloudRun
    behaviours: Behaviours
    specs: dict[str, ServiceSpec]
    verify: Verify
    may_invoke: MayInvoke
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    probes: int = 0
    refused: int = 0

    def spec(self, service: str) -> ServiceSpec:
        return self.specs.get(service, ServiceSpec())

    def behaviour(self, revision: str) -> Behaviour:
        found = self.run.revisions.get(revision)
        return self.behaviours.of(revision, found.image if found else "")

    def audiences(self, service: str) -> frozenset[str]:
        """What `aud` the service accepts, with or without the trailing slash Google's samples use ("Example
        `audience` value (Cloud Run): https://my-cloud-run-service.run.app/",
        https://cloud.google.com/run/docs/authenticating/service-to-service): its URL, and the URL of each of its
        tags. Reading chosen: "an audience (aud) claim matching the receiving service's *.run.app URL"
        (https://cloud.google.com/run/docs/configuring/custom-audiences) names a URL of the service, not the one
        URL shown as `uri`; a tag URL, `https://TAG---SERVICE-HASH.a.run.app`
        (https://cloud.google.com/run/docs/rollouts-rollbacks-traffic-migration), is a *.run.app URL of
        that same service, and the page's purpose, stopping a token meant for one service being replayed against
        another, holds since a tag's URL reaches only its own service. A token for a tag URL is therefore
        accepted on the service URL and on every tag URL of the service (audiences are per service and "apply to
        all serving revisions", same page), never on another service."""
        urls = [self.run.url_for(service)]
        found = self.run.services.get(service)
        if found is not None:
            urls += [self.run.tag_url(service, status["tag"]) for status in found.traffic_statuses if status.get("tag")]
        return frozenset(url + slash for url in urls for slash in ("", "/"))

    def refusal(self, service: str, path: str, authorization: str | None) -> web.Response | None:
        """Cloud Run's IAM check in front of a service: None lets the request through."""
        if self.may_invoke(service, None):
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return forbidden(path)
        try:
            claims = self.verify(token.strip())
        except InvalidToken:
            return unauthorized(path)
        if claims.get("aud") not in self.audiences(service):
            return unauthorized(path)
        email = claims.get("email")
        if not isinstance(email, str) or not self.may_invoke(service, email):
            return forbidden(path)
        return None

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
        refused = fleet.refusal(service, path, request.headers.get("Authorization"))
        if refused is not None:
            fleet.refused += 1
            return refused
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
