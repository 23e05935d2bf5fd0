"""Cloud Run Admin API v2 over REST JSON, as google-cloud-run's REST transport speaks it.

Request bodies are parsed with the API's own protobuf types, so an unknown or misspelt field is
refused as Google refuses it; responses honour `$alt=json;enum-encoding=int`, which the client sends.

Every method asks IAM first, with the permission Google's reference names for it
(https://cloud.google.com/run/docs/reference/iam/permissions), so a caller without it gets
PERMISSION_DENIED whether or not the resource exists (https://google.aip.dev/211).
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
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.longrunning import operations_pb2
from google.protobuf.message import Message

from sandbox.access_tokens import AccessTokens, authenticated
from sandbox.cloudrun import CloudRun, Operation
from sandbox.faults import Faults
from sandbox.google_errors import GoogleError, google_errors
from sandbox.google_json import parse_body, respond
from sandbox.iam import Iam

_ROUTE = re.compile(
    r"^(?:services(?:/(?P<service>[^/:]+)(?P<verb>:getIamPolicy|:setIamPolicy|:testIamPermissions)?"
    r"(?:/revisions(?:/(?P<revision>[^/:]+))?)?)?"
    r"|operations(?:/(?P<operation>[^/:]+)(?P<wait>:wait)?)?)$"
)

_PROTO: dict[str, type[Message]] = {
    "Service": type(run_v2.Service.pb(run_v2.Service())),
    "Revision": type(run_v2.Revision.pb(run_v2.Revision())),
    "ListServicesResponse": type(run_v2.ListServicesResponse.pb(run_v2.ListServicesResponse())),
    "ListRevisionsResponse": type(run_v2.ListRevisionsResponse.pb(run_v2.ListRevisionsResponse())),
    "Operation": operations_pb2.Operation,
    "ListOperationsResponse": operations_pb2.ListOperationsResponse,
    "Policy": policy_pb2.Policy,
    "SetIamPolicyRequest": iam_policy_pb2.SetIamPolicyRequest,
    "TestIamPermissionsRequest": iam_policy_pb2.TestIamPermissionsRequest,
    "TestIamPermissionsResponse": iam_policy_pb2.TestIamPermissionsResponse,
}


METHODS = ("ListServices", "CreateService", "GetService", "UpdateService", "DeleteService", "ListRevisions",
           "GetRevision", "DeleteRevision", "GetIamPolicy", "SetIamPolicy", "TestIamPermissions", "ListOperations",
           "GetOperation", "WaitOperation", "DeleteOperation")
"""The v2 API's methods, by the names `CloudRun.record` counts them under (and `POST /faults` takes)."""

_VERBS = {":getIamPolicy": "GetIamPolicy", ":setIamPolicy": "SetIamPolicy", ":testIamPermissions": "TestIamPermissions"}
_SERVICES = {"GET": "ListServices", "POST": "CreateService"}
_ITEM = {"GET": "Get", "PATCH": "Update", "DELETE": "Delete"}


def method_of(request: web.Request) -> str:
    """The method a request calls, from its path and HTTP method ("" for none: it is answered 404 or 405)."""
    rest = request.match_info.get("rest", "")
    match = _ROUTE.match(rest)
    if match is None:
        return ""
    if match["operation"] is not None:
        return "WaitOperation" if match["wait"] else _item(request.method, "Operation")
    if rest == "operations":
        return "ListOperations"
    if match["verb"] is not None:
        return _VERBS[match["verb"]]
    if match["revision"] is not None:
        return _item(request.method, "Revision")
    if rest.endswith("/revisions"):
        return "ListRevisions"
    if match["service"] is not None:
        return _item(request.method, "Service")
    return _SERVICES.get(request.method, "")


_PERMISSION = {
    "ListServices": "run.services.list", "CreateService": "run.services.create", "GetService": "run.services.get",
    "UpdateService": "run.services.update", "DeleteService": "run.services.delete",
    "ListRevisions": "run.revisions.list", "GetRevision": "run.revisions.get", "DeleteRevision": "run.revisions.delete",
    "GetIamPolicy": "run.services.getIamPolicy", "SetIamPolicy": "run.services.setIamPolicy",
    "ListOperations": "run.operations.list", "GetOperation": "run.operations.get",
    "WaitOperation": "run.operations.get", "DeleteOperation": "run.operations.delete",
}
"""The permission each method asks for (https://cloud.google.com/run/docs/reference/iam/permissions)."""


def _elsewhere(request: web.Request, location: str, rest: str) -> web.Response:
    """A location of another project (or region) holds nothing the bot was granted, so every method is denied
    there with the same PERMISSION_DENIED and ErrorInfo as a missing role at home (https://google.aip.dev/211:
    the permission is checked before existence). testIamPermissions needs no permission and answers the
    permissions held, which there are none."""
    method = method_of(request)
    if method == "TestIamPermissions":
        return respond(request, _PROTO["TestIamPermissionsResponse"], {})
    permission = _PERMISSION.get(method)
    if permission is None:
        raise web.HTTPMethodNotAllowed(request.method, [])
    name = f"{location}/{rest}".split(":", 1)[0]
    resource = name.removesuffix("/services").removesuffix("/revisions").removesuffix("/operations")
    raise Iam.denial(permission, resource)


def _item(http_method: str, noun: str) -> str:
    verb = _ITEM.get(http_method)
    return f"{verb}{noun}" if verb else ""


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


_MAX_PAGE = 1000
_DEFAULT_PAGE = 100


def _page(request: web.Request, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """One page under AIP-158 (https://google.aip.dev/158): "If the user specifies page_size greater than the
    maximum permitted by the API, the API should coerce the size to the maximum permitted page size"; 0 or
    none means the API's default; "If the user specifies a negative value for page_size, the API must send an
    INVALID_ARGUMENT error"."""
    try:
        size = int(request.query.get("pageSize") or 0)
    except ValueError:
        raise GoogleError("INVALID_ARGUMENT", f"Invalid page_size '{request.query['pageSize']}'.") from None
    if size < 0:
        raise GoogleError("INVALID_ARGUMENT", "page_size must not be negative.")
    size = min(size, _MAX_PAGE) or _DEFAULT_PAGE
    token = request.query.get("pageToken", "")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise GoogleError("INVALID_ARGUMENT", f"Invalid page token '{token}'.") from None
    body: dict[str, Any] = {key: items[start:start + size]}
    if start + size < len(items):
        body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    return body


def _rpc(request: web.Request) -> str:
    """The full RPC name of a request, as Google's ErrorInfo metadata names it."""
    method = method_of(request)
    if "Operation" in method:
        return f"google.longrunning.Operations.{method}"
    return f"google.cloud.run.v2.{'Revisions' if 'Revision' in method else 'Services'}.{method}"


def cloudrun_app(run: CloudRun, faults: Faults | None = None, tokens: AccessTokens | None = None) -> web.Application:
    authorize = run.iam.authorize
    injected = faults or Faults()

    async def dispatch(request: web.Request) -> web.Response:
        await injected.google(method_of(request))
        project, region = request.match_info["project"], request.match_info["region"]
        rest = request.match_info["rest"]
        match = _ROUTE.match(rest)
        if match is None:
            raise web.HTTPNotFound()
        if (project, region) != (run.project, run.region):
            return _elsewhere(request, f"projects/{project}/locations/{region}", rest)
        service, revision, verb = match["service"], match["revision"], match["verb"]
        if match["operation"] is not None:
            return await _operation(request, run, match["operation"], bool(match["wait"]))
        if rest.startswith("operations"):
            return _list_operations(request, run)
        if service is None:
            return await _services(request, run)
        if verb is not None:
            if revision is not None or rest.endswith("/revisions"):
                raise web.HTTPNotFound()
            return await _iam_policy(request, run, service, verb)
        if revision is None and rest.endswith("/revisions"):
            run.record("ListRevisions", service)
            authorize("run.revisions.list", run.parent if service == "-" else run.service_path(service))
            if service != "-":
                run.get_service(service)
            items = [run.revision_json(r) for r in run.listed_revisions(service, _flag(request, "showDeleted"))]
            return respond(request, _PROTO["ListRevisionsResponse"], _page(request, items, "revisions"))
        if revision is not None:
            return _revision(request, run, service, revision)
        return await _service(request, run, service)

    async def _services(request: web.Request, run: CloudRun) -> web.Response:
        if request.method == "GET":
            run.record("ListServices", "*")
            authorize("run.services.list", run.parent)
            items = [run.service_json(s) for _, s in sorted(run.services.items())]
            return respond(request, _PROTO["ListServicesResponse"], _page(request, items, "services"))
        if request.method == "POST":
            service_id = request.query.get("serviceId", "")
            run.record("CreateService", service_id)
            authorize("run.services.create", run.service_path(service_id) if service_id else run.parent)
            body = await parse_body(request, _PROTO["Service"])
            done = run.create_service(service_id, body, _flag(request, "validateOnly"))
            return respond(request, _PROTO["Operation"], run.operation_json(done))
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])

    async def _service(request: web.Request, run: CloudRun, service: str) -> web.Response:
        path = run.service_path(service)
        if request.method == "GET":
            run.record("GetService", service)
            authorize("run.services.get", path)
            return respond(request, _PROTO["Service"], run.service_json(run.get_service(service)))
        if request.method == "PATCH":
            run.record("UpdateService", service)
            missing = service not in run.services and _flag(request, "allowMissing")
            # allowMissing: "The caller must have 'run.services.create' permissions if this is set to true and
            # the Service does not exist" (UpdateServiceRequest.allow_missing).
            authorize("run.services.create" if missing else "run.services.update", path)
            body = await parse_body(request, _PROTO["Service"])
            mask = [p.strip() for p in request.query.get("updateMask", "").split(",") if p.strip()]
            done = run.update_service(service, body, update_mask=mask or None,
                                      validate_only=_flag(request, "validateOnly"), allow_missing=missing,
                                      force_new_revision=_flag(request, "forceNewRevision"))
            return respond(request, _PROTO["Operation"], run.operation_json(done))
        if request.method == "DELETE":
            run.record("DeleteService", service)
            authorize("run.services.delete", path)
            if _flag(request, "validateOnly"):
                run.get_service(service)
                checked = {"name": f"{run.parent}/operations/validate", "done": True}
                return respond(request, _PROTO["Operation"], checked)
            done = run.delete_service(service, request.query.get("etag", ""))
            return respond(request, _PROTO["Operation"], run.operation_json(done))
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PATCH", "DELETE"])

    def _revision(request: web.Request, run: CloudRun, service: str, revision: str) -> web.Response:
        path = run.revision_path(service, revision)
        if request.method == "GET":
            run.record("GetRevision", revision)
            authorize("run.revisions.get", path)
            return respond(request, _PROTO["Revision"], run.revision_json(run.get_revision(service, revision)))
        if request.method == "DELETE":
            run.record("DeleteRevision", revision)
            authorize("run.revisions.delete", path)
            done = run.delete_revision(service, revision, etag=request.query.get("etag", ""),
                                       validate_only=_flag(request, "validateOnly"))
            return respond(request, _PROTO["Operation"], run.operation_json(done))
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "DELETE"])

    async def _iam_policy(request: web.Request, run: CloudRun, service: str, verb: str) -> web.Response:
        """services:getIamPolicy / :setIamPolicy / :testIamPermissions, with google.iam.v1 messages."""
        path = run.service_path(service)
        if verb == ":getIamPolicy" and request.method == "GET":
            run.record("GetIamPolicy", service)
            authorize("run.services.getIamPolicy", path)
            run.get_service(service)
            version = request.query.get("options.requestedPolicyVersion", "0")
            if version not in ("0", "1", "3"):
                # "Valid values are 0, 1, and 3. Requests specifying an invalid value will be rejected."
                raise GoogleError("INVALID_ARGUMENT", f"Invalid requested policy version {version}: valid "
                                  "values are 0, 1 and 3.")
            return respond(request, _PROTO["Policy"], run.iam.policy(path).to_json())
        if verb == ":setIamPolicy" and request.method == "POST":
            run.record("SetIamPolicy", service)
            authorize("run.services.setIamPolicy", path)
            run.get_service(service)
            body = await parse_body(request, _PROTO["SetIamPolicyRequest"])
            policy = body.get("policy", {})
            updated = run.iam.set_policy(path, policy.get("bindings", []), policy.get("etag", ""))
            return respond(request, _PROTO["Policy"], updated.to_json())
        if verb == ":testIamPermissions" and request.method == "POST":
            # "There are no permissions required for making this API call"; "Permissions with wildcards (such as
            # `*` or `storage.*`) are not allowed" (run.v2 discovery document, services.testIamPermissions).
            run.record("TestIamPermissions", service)
            body = await parse_body(request, _PROTO["TestIamPermissionsRequest"])
            asked = list(body.get("permissions", []))
            if any("*" in p for p in asked):
                raise GoogleError("INVALID_ARGUMENT", "Permissions with wildcards (such as '*' or 'run.*') "
                                  "are not allowed.")
            held = run.iam.test_permissions(path, asked)
            return respond(request, _PROTO["TestIamPermissionsResponse"], {"permissions": held} if held else {})
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])

    async def _operation(request: web.Request, run: CloudRun, name: str, wait: bool) -> web.Response:
        full = f"{run.parent}/operations/{name}"
        permission = {"DELETE": "run.operations.delete"}.get(request.method, "run.operations.get")
        authorize(permission, full)
        operation: Operation | None = run.operations.get(full)
        if operation is None:
            raise GoogleError("NOT_FOUND", f"Operation '{full}' not found.")
        if wait and request.method == "POST":
            run.record("WaitOperation", name)
            text = await request.text()
            timeout = json.loads(text or "{}").get("timeout")
            seconds = run.wait_seconds(operation, None if timeout is None else _duration(timeout))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(operation.finished.wait(), seconds)
            return respond(request, _PROTO["Operation"], run.operation_json(operation))
        if request.method == "GET" and not wait:
            run.record("GetOperation", name)
            return respond(request, _PROTO["Operation"], run.operation_json(operation))
        if request.method == "DELETE" and not wait:
            run.record("DeleteOperation", name)
            del run.operations[full]
            return web.json_response({})
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "DELETE", "POST"])

    def _list_operations(request: web.Request, run: CloudRun) -> web.Response:
        run.record("ListOperations", "*")
        authorize("run.operations.list", run.parent)
        items = [run.operation_json(op) for op in run.operations.values()]
        return respond(request, _PROTO["ListOperationsResponse"], _page(request, items, "operations"))

    checks = [authenticated(tokens, "run.googleapis.com", _rpc)] if tokens is not None else []
    app = web.Application(middlewares=[google_errors, *checks])
    app.router.add_route("*", "/v2/projects/{project}/locations/{region}/{rest:.*}", dispatch)
    return app


def _duration(text: str) -> float:
    if not re.fullmatch(r"\d+(\.\d+)?s", text):
        raise GoogleError("INVALID_ARGUMENT", f"Invalid duration '{text}': write seconds such as '30s'.")
    return float(text[:-1])
