"""The sandbox's control API: declare what images and revisions do, and read the world's state.

    POST  /images              {"image", "error_rate", "latency_ms", "failing_checks", "down", "start", "start_ms",
                               "error_message", "silent_errors", "upload_time", "build_time"}: silent_errors, 5xx
                               that the code does not log (sandbox/behaviour.py); the image is in Artifact Registry
                               (sandbox/artifact_registry.py), uploaded at `upload_time` (RFC 3339; by default half
                               an hour ago), and the answer's "registry" is its DockerImage (null: not a
                               LOCATION-docker.pkg.dev reference)
    PATCH /revisions/<name>    the same fields, for one running revision
    PATCH /services/<name>     {"requests_per_s": 5}: the simulated traffic rate
    GET   /state               services, revisions and behaviours, Admin API calls, probe and log counts
    GET   /limits              the published figures every emulator enforces, by group
    PATCH /limits/<group>      {"figure": value, ...}: change some of them (tests and benches do)
    GET   /iam                 {"member", "roles"}: the bot's service account and its project-level roles
    PUT   /iam                 {"roles": [...]}: replace those roles (an unknown role is refused, naming it)
    POST  /alerts/monitoring   {"policy", "condition", "service", "state": "open"|"closed", "incident_id"?,
                               "summary"?, "documentation"?, "observed_value"?, "threshold_value"?}: Cloud
                               Monitoring notifies the bot's webhook (sandbox/monitoring_alerts.py); answers
                               {"status": <bot's HTTP status, 0 if unreachable>, "attempts", "error",
                               "incident_id", "payload"}
    POST   /faults             {"method", "status"?, "count"? | "probability"?, "latency_ms"?, "hang"? | "drop"?,
                               "lands"?, "error"?, "retry_after"?}: the method misbehaves (sandbox/faults.py); an
                               unknown method is refused with the known ones
    GET    /faults             {"faults": [...]}: those in force, with the calls each hit
    DELETE /faults             {"cleared": [...]}: take them all away
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from sandbox.artifact_registry import ArtifactRegistry
from sandbox.behaviour import BehaviourError, Behaviours
from sandbox.cloudrun import CloudRun
from sandbox.faults import FaultError, Faults
from sandbox.fleet import Fleet
from sandbox.iam import Iam, RoleError
from sandbox.limits import LimitError, Limits
from sandbox.monitoring_alerts import MonitoringAlerts, NotificationError


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body must be a JSON object")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    return body


def control_app(run: CloudRun, behaviours: Behaviours, fleet: Fleet, limits: Limits,
                extra_state: Callable[[], dict[str, Any]], *, iam: Iam, alerts: MonitoringAlerts,
                faults: Faults, registry: ArtifactRegistry) -> web.Application:

    async def declare_image(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        image = body.pop("image", None)
        if not isinstance(image, str) or not image:
            return _error(400, "image is required, e.g. \"us-west2-docker.pkg.dev/p/r/svc:v3\"")
        times: dict[str, float] = {}
        for name in ("upload_time", "build_time"):
            value = body.pop(name, None)
            if value is None:
                continue
            try:
                moment = datetime.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                moment = None
            if moment is None or moment.utcoffset() is None:
                return _error(400, f"{name} is an RFC 3339 time with its offset, e.g. \"2026-11-30T09:00:00Z\"")
            times[name] = moment.timestamp()
        try:
            behaviour = behaviours.declare_image(image, body)
        except BehaviourError as exc:
            return _error(400, str(exc))
        pushed = registry.push(image, **times)
        return web.json_response({"image": image, **behaviour.to_json(),
                                  "registry": pushed.to_json() if pushed else None})

    async def patch_revision(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        revision = run.revisions.get(name)
        if revision is None:
            return _error(404, f"no revision named {name!r}")
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        try:
            behaviour = behaviours.patch_revision(name, revision.image, body)
        except BehaviourError as exc:
            return _error(400, str(exc))
        return web.json_response({"revision": name, **behaviour.to_json()})

    async def patch_service(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in run.services:
            return _error(404, f"no service named {name!r}")
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        rate = body.get("requests_per_s")
        if set(body) != {"requests_per_s"} or not isinstance(rate, int | float) or rate < 0:
            return _error(400, "send {\"requests_per_s\": N} with N >= 0")
        fleet.specs[name] = dataclasses.replace(fleet.spec(name), requests_per_s=float(rate))
        return web.json_response({"service": name, "requests_per_s": float(rate)})

    async def state(request: web.Request) -> web.Response:
        services = {}
        for name, service in sorted(run.services.items()):
            services[name] = {
                "traffic": service.traffic,
                "traffic_statuses": service.traffic_statuses,
                "traffic_history": run.traffic_history(name),
                "latest_ready": service.latest_ready,
                "latest_created": service.latest_created,
                "generation": service.generation,
                "etag": service.etag,
                "private": iam.private(name),
                "requests_per_s": fleet.spec(name).requests_per_s,
                "revisions": [{"name": r.name, "image": r.image, "state": r.state,
                               "behaviour": fleet.behaviour(r.name).to_json()} for r in run.revisions_of(name)],
            }
        writes = ("CreateService", "UpdateService", "DeleteService", "DeleteRevision")
        return web.json_response({
            "services": services,
            "admin_api": {
                "requests": dict(run.counts),
                "writes": sum(run.counts[m] for m in writes),
                "calls": [{"at": c.at, "method": c.method, "target": c.target} for c in run.calls[-500:]],
            },
            "images": {image: b.to_json() for image, b in behaviours.images.items()},
            "probes": fleet.probes,
            **extra_state(),
        })

    async def get_limits(request: web.Request) -> web.Response:
        return web.json_response(limits.to_json())

    async def patch_limits(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        try:
            group = limits.patch(request.match_info["group"], body)
        except LimitError as exc:
            return _error(400, str(exc))
        return web.json_response(group)

    async def get_iam(request: web.Request) -> web.Response:
        return web.json_response({"member": iam.member, "roles": iam.roles})

    async def put_iam(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        roles = body.get("roles")
        if set(body) != {"roles"} or not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            return _error(400, "send {\"roles\": [\"roles/run.developer\", ...]}")
        try:
            iam.set_roles(roles)
        except RoleError as exc:
            return _error(400, str(exc))
        return web.json_response({"member": iam.member, "roles": iam.roles})

    async def monitoring_alert(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        try:
            sent = await alerts.notify(body)
        except NotificationError as exc:
            return _error(exc.status, str(exc))
        return web.json_response(sent)

    async def add_fault(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        try:
            fault = faults.add(body)
        except FaultError as exc:
            return _error(400, str(exc))
        return web.json_response(fault.to_json(), status=201)

    async def list_faults(request: web.Request) -> web.Response:
        return web.json_response({"faults": faults.listing()})

    async def clear_faults(request: web.Request) -> web.Response:
        return web.json_response({"cleared": [fault.to_json() for fault in faults.clear()]})

    app = web.Application()
    app.router.add_post("/faults", add_fault)
    app.router.add_get("/faults", list_faults)
    app.router.add_delete("/faults", clear_faults)
    app.router.add_post("/alerts/monitoring", monitoring_alert)
    app.router.add_get("/iam", get_iam)
    app.router.add_put("/iam", put_iam)
    app.router.add_get("/limits", get_limits)
    app.router.add_patch("/limits/{group}", patch_limits)
    app.router.add_post("/images", declare_image)
    app.router.add_patch("/revisions/{name}", patch_revision)
    app.router.add_patch("/services/{name}", patch_service)
    app.router.add_get("/state", state)
    return app
