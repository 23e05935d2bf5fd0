"""Cloud Run Admin API v2 over REST JSON, as google-cloud-run's REST transport speaks it.

Request bodies are parsed with the API's own protobuf types, so an unknown or misspelt field is
refused as Google refuses it; responses honour `$alt=json;enum-encoding=int`, which the client sends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from typing import Any

from aiohttp import web
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf.message import Message

from sandbox.cloudrun import CloudRun, Operation
from sandbox.google_errors import GoogleError, google_errors
from sandbox.google_json import parse_body, respond

_ROUTE = re.compile(
    r"^(?:services(?:/(?P<service>[^/:]+)(?:/revisions(?:/(?P<revision>[^/:]+))?)?)?"
    r"|operations(?:/(?P<operation>[^/:]+)(?P<wait>:wait)?)?)$"
)

_PROTO: dict[str, type[Message]] = {
    "Service": type(run_v2.Service.pb(run_v2.Service())),
    "Revision": type(run_v2.Revision.pb(run_v2.Revision())),
    "ListServicesResponse": type(run_v2.ListServicesResponse.pb(run_v2.ListServicesResponse())),
    "ListRevisionsResponse": type(run_v2.ListRevisionsResponse.pb(run_v2.ListRevisionsResponse())),
    "Operation": operations_pb2.Operation,
    "ListOperationsResponse": operations_pb2.ListOperationsResponse,
}


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def _page(request: web.Request, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    size = int(request.query.get("pageSize") or 100)
    if not 0 < size <= 1000:
        raise GoogleError("INVALID_ARGUMENT", "page_size must be between 1 and 1000.")
    token = request.query.get("pageToken", "")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise GoogleError("INVALID_ARGUMENT", f"Invalid page token '{token}'.") from None
    body: dict[str, Any] = {key: items[start:start + size]}
    if start + size < len(items):
        body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    return body


def cloudrun_app(run: CloudRun) -> web.Application:
    async def dispatch(request: web.Request) -> web.Response:
        project, region = request.match_info["project"], request.match_info["region"]
        if (project, region) != (run.project, run.region):
            raise GoogleError("PERMISSION_DENIED", f"Permission denied on resource "
                              f"'projects/{project}/locations/{region}' (or it may not exist).")
        match = _ROUTE.match(request.match_info["rest"])
        if match is None:
            raise web.HTTPNotFound()
        service, revision = match["service"], match["revision"]
        operation, method = match["operation"], request.method
        if operation is not None:
            return await _operation(request, run, operation, bool(match["wait"]))
        if request.match_info["rest"].startswith("operations"):
            return _list_operations(request, run)
        if service is None:
            return await _services(request, run)
        if revision is None and request.match_info["rest"].endswith("/revisions"):
            run.record("ListRevisions", service)
            run.get_service(service)
            items = [run.revision_json(r) for r in run.revisions_of(service)]
            return respond(request, _PROTO["ListRevisionsResponse"], _page(request, items, "revisions"))
        if revision is not None:
            if method == "GET":
                run.record("GetRevision", revision)
                return respond(request, _PROTO["Revision"], run.revision_json(run.get_revision(service, revision)))
            if method == "DELETE":
                run.record("DeleteRevision", revision)
                return respond(request, _PROTO["Operation"], run.operation_json(run.delete_revision(service, revision)))
            raise web.HTTPMethodNotAllowed(method, ["GET", "DELETE"])
        if method == "GET":
            run.record("GetService", service)
            return respond(request, _PROTO["Service"], run.service_json(run.get_service(service)))
        if method == "PATCH":
            run.record("UpdateService", service)
            body = await parse_body(request, _PROTO["Service"])
            mask = [p for p in request.query.get("updateMask", "").split(",") if p]
            done = run.update_service(service, body, update_mask=mask or None,
                                      validate_only=_flag(request, "validateOnly"),
                                      allow_missing=_flag(request, "allowMissing"))
            return respond(request, _PROTO["Operation"], run.operation_json(done))
        if method == "DELETE":
            run.record("DeleteService", service)
            if _flag(request, "validateOnly"):
                run.get_service(service)
                checked = {"name": f"{run.parent}/operations/validate", "done": True}
                return respond(request, _PROTO["Operation"], checked)
            done = run.delete_service(service, request.query.get("etag", ""))
            return respond(request, _PROTO["Operation"], run.operation_json(done))
        raise web.HTTPMethodNotAllowed(method, ["GET", "PATCH", "DELETE"])

    async def _services(request: web.Request, run: CloudRun) -> web.Response:
        if request.method == "GET":
            run.record("ListServices", "*")
            items = [run.service_json(s) for _, s in sorted(run.services.items())]
            return respond(request, _PROTO["ListServicesResponse"], _page(request, items, "services"))
        if request.method == "POST":
            service_id = request.query.get("serviceId", "")
            run.record("CreateService", service_id)
            body = await parse_body(request, _PROTO["Service"])
            done = run.create_service(service_id, body, _flag(request, "validateOnly"))
            return respond(request, _PROTO["Operation"], run.operation_json(done))
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])

    app = web.Application(middlewares=[google_errors])
    app.router.add_route("*", "/v2/projects/{project}/locations/{region}/{rest:.*}", dispatch)
    return app


async def _operation(request: web.Request, run: CloudRun, name: str, wait: bool) -> web.Response:
    full = f"{run.parent}/operations/{name}"
    operation: Operation | None = run.operations.get(full)
    if operation is None:
        raise GoogleError("NOT_FOUND", f"Operation '{full}' not found.")
    if wait and request.method == "POST":
        run.record("WaitOperation", name)
        text = await request.text()
        timeout = _duration(json.loads(text or "{}").get("timeout", "120s"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(operation.finished.wait(), timeout)
        return respond(request, _PROTO["Operation"], run.operation_json(operation))
    if request.method == "GET":
        run.record("GetOperation", name)
        return respond(request, _PROTO["Operation"], run.operation_json(operation))
    if request.method == "DELETE":
        run.record("DeleteOperation", name)
        del run.operations[full]
        return web.json_response({})
    raise web.HTTPMethodNotAllowed(request.method, ["GET", "DELETE", "POST"])


def _list_operations(request: web.Request, run: CloudRun) -> web.Response:
    run.record("ListOperations", "*")
    items = [run.operation_json(op) for op in run.operations.values()]
    return respond(request, _PROTO["ListOperationsResponse"], _page(request, items, "operations"))


def _duration(text: str) -> float:
    if not re.fullmatch(r"\d+(\.\d+)?s", text):
        raise GoogleError("INVALID_ARGUMENT", f"Invalid duration '{text}': write seconds such as '30s'.")
    return min(float(text[:-1]), 120.0)
