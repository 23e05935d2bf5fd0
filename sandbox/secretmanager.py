"""Secret Manager v1 over REST JSON: secrets, versions, :addVersion and :access.

Names in responses carry the project *number*, as the real service returns them; requests may use
the project id or the number. Payload checksums are CRC32C, checked on :addVersion as Google does.

`latest` is "an alias to the most recently created SecretVersion" whatever its state, so accessing it fails
when that version is disabled or destroyed instead of falling back to an older one
(https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access); Google's
refusal is FAILED_PRECONDITION "Secret Version [projects/N/secrets/S/versions/V] is in DISABLED state."
(external-secrets/external-secrets#4042, google-github-actions/get-secretmanager-secrets#268). Access needs
secretmanager.versions.access on the version named ("Authorization requires the following IAM permission on
the specified resource name", same page), checked before the secret is looked up, so a caller without it
learns nothing of what exists. Every other method asks for its own permission the same way, on the resource it
names (the project for ListSecrets and CreateSecret), so a principal with only roles/secretmanager.secretAccessor
("Allows accessing the payload of secrets": secretmanager.versions.access alone,
https://cloud.google.com/iam/docs/roles-permissions/secretmanager; https://cloud.google.com/secret-manager/docs/
access-control) may read payloads and nothing else: no list, get, create, add, disable or delete.

ListSecrets and ListSecretVersions page and filter: "If set to 0, the server decides the number of results to
return. If the number is greater than 25000, it is capped at 25000" (ListSecretsRequest.page_size,
https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/list); `filter` is the subset in
`sandbox.secret_filter`.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.cloud import secretmanager_v1
from google.protobuf.message import Message

from bot.checksum import crc32c
from sandbox.access_tokens import AccessTokens, authenticated
from sandbox.cloudrun import rfc3339
from sandbox.faults import Faults
from sandbox.google_errors import GoogleError, google_errors
from sandbox.google_json import parse_body, respond
from sandbox.iam import Authorize, Iam, allow_all
from sandbox.secret_filter import SecretFilterError, parse

_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)(?:/locations/(?P<location>[^/]+))?/secrets"
    r"(?:/(?P<secret>[^/:]+)(?::(?P<secret_verb>addVersion))?"
    r"(?:/versions(?:/(?P<version>[^/:]+)(?::(?P<verb>access|enable|disable|destroy))?)?)?)?$"
)
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

METHODS = ("ListSecrets", "CreateSecret", "GetSecret", "UpdateSecret", "DeleteSecret", "AddSecretVersion",
           "ListSecretVersions", "GetSecretVersion", "AccessSecretVersion", "EnableSecretVersion",
           "DisableSecretVersion", "DestroySecretVersion")
"""The v1 API's methods (SecretManagerService's RPC names), as `POST /faults` takes them."""

_SECRET_METHODS = {"GET": "GetSecret", "PATCH": "UpdateSecret", "DELETE": "DeleteSecret"}

PERMISSIONS = {
    "ListSecrets": "secretmanager.secrets.list", "CreateSecret": "secretmanager.secrets.create",
    "GetSecret": "secretmanager.secrets.get", "UpdateSecret": "secretmanager.secrets.update",
    "DeleteSecret": "secretmanager.secrets.delete", "AddSecretVersion": "secretmanager.versions.add",
    "ListSecretVersions": "secretmanager.versions.list", "GetSecretVersion": "secretmanager.versions.get",
    "AccessSecretVersion": "secretmanager.versions.access", "EnableSecretVersion": "secretmanager.versions.enable",
    "DisableSecretVersion": "secretmanager.versions.disable",
    "DestroySecretVersion": "secretmanager.versions.destroy",
}
"""The permission each method needs, as the Secret Manager roles reference names them
(https://cloud.google.com/iam/docs/roles-permissions/secretmanager)."""

MAX_PAGE_SIZE = 25_000
DEFAULT_PAGE_SIZE = 100
"""What "the server decides" for a page size of 0 here; Google does not publish its figure."""


def method_of(request: web.Request) -> str:
    """The method a request calls, from its path and HTTP method ("" for none: it is answered 404 or 405)."""
    match = _PATH.match(request.path)
    if match is None:
        return ""
    if match["verb"] is not None:
        return f"{match['verb'].capitalize()}SecretVersion"
    if match["version"] is not None:
        return "GetSecretVersion"
    if request.path.endswith("/versions"):
        return "ListSecretVersions"
    if match["secret_verb"] is not None:
        return "AddSecretVersion"
    if match["secret"] is not None:
        return _SECRET_METHODS.get(request.method, "")
    return {"GET": "ListSecrets", "POST": "CreateSecret"}.get(request.method, "")


@dataclass
class Version:
    number: int
    data: bytes
    create_time: str
    state: str = "ENABLED"
    checksummed: bool = False
    destroy_time: str = ""


@dataclass
class Secret:
    name: str
    create_time: str
    labels: dict[str, str] = field(default_factory=dict)
    versions: list[Version] = field(default_factory=list)


class SecretManager:
    def __init__(self, project: str, project_number: str, authorize: Authorize = allow_all) -> None:
        self.project = project
        self.project_number = project_number
        self.authorize = authorize
        self.secrets: dict[str, Secret] = {}
        self.accesses: list[tuple[float, str]] = []

    def put(self, name: str, value: bytes) -> None:
        """Create the secret if needed and add a version: how the world seeds the bot's credentials."""
        secret = self.secrets.setdefault(name, Secret(name=name, create_time=rfc3339()))
        secret.versions.append(Version(len(secret.versions) + 1, value, rfc3339()))

    def secret(self, name: str) -> Secret:
        found = self.secrets.get(name)
        if found is None:
            raise GoogleError("NOT_FOUND", f"Secret [projects/{self.project_number}/secrets/{name}] not found "
                              "or has no versions.")
        return found

    def version(self, secret: Secret, ref: str) -> Version:
        if ref == "latest":  # the most recently created, whatever its state
            if not secret.versions:
                raise GoogleError("NOT_FOUND", f"Secret [{self.secret_path(secret)}] not found or has no versions.")
            return secret.versions[-1]
        if not ref.isdigit() or not 0 < int(ref) <= len(secret.versions):
            raise GoogleError("NOT_FOUND", f"Secret Version [{self.secret_path(secret)}/versions/{ref}] not found.")
        return secret.versions[int(ref) - 1]

    def secret_path(self, secret: Secret) -> str:
        return f"projects/{self.project_number}/secrets/{secret.name}"

    def secret_json(self, secret: Secret) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.secret_path(secret), "replication": {"automatic": {}},
                                "createTime": secret.create_time,
                                "etag": f'"{len(secret.versions)}{abs(hash(secret.name)) % 10**6:06d}"'}
        if secret.labels:
            body["labels"] = dict(secret.labels)
        return body

    def version_json(self, secret: Secret, version: Version) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"{self.secret_path(secret)}/versions/{version.number}",
            "createTime": version.create_time,
            "state": version.state,
            "replicationStatus": {"automatic": {}},
            "etag": f'"{version.number}{len(version.state)}"',
            "clientSpecifiedPayloadChecksum": version.checksummed,
        }
        if version.destroy_time:
            body["destroyTime"] = version.destroy_time
        return body


_PROTO: dict[str, type[Message]] = {
    "Secret": type(secretmanager_v1.Secret.pb(secretmanager_v1.Secret())),
    "SecretVersion": type(secretmanager_v1.SecretVersion.pb(secretmanager_v1.SecretVersion())),
    "ListSecretsResponse": type(secretmanager_v1.ListSecretsResponse.pb(secretmanager_v1.ListSecretsResponse())),
    "ListSecretVersionsResponse": type(
        secretmanager_v1.ListSecretVersionsResponse.pb(secretmanager_v1.ListSecretVersionsResponse())
    ),
    "AccessSecretVersionResponse": type(
        secretmanager_v1.AccessSecretVersionResponse.pb(secretmanager_v1.AccessSecretVersionResponse())
    ),
}


def secretmanager_app(manager: SecretManager, faults: Faults | None = None,
                      tokens: AccessTokens | None = None) -> web.Application:
    injected = faults or Faults()

    async def dispatch(request: web.Request) -> web.Response:
        called = method_of(request)
        await injected.google(called)
        match = _PATH.match(request.path)
        if match is None:
            raise web.HTTPNotFound()
        if called:
            manager.authorize(PERMISSIONS[called], _resource(request.path))
        if match["project"] not in (manager.project, manager.project_number):
            raise Iam.denial(PERMISSIONS.get(called, "secretmanager.secrets.list"), _resource(request.path))
        name, version_ref, verb = match["secret"], match["version"], match["verb"]
        method = request.method
        if name is None:
            if method == "GET":
                rows = [({"name": manager.secret_path(s), **_labels(s.labels)}, manager.secret_json(s))
                        for _, s in sorted(manager.secrets.items())]
                return respond(request, _PROTO["ListSecretsResponse"], _listing(request, rows, "secrets"))
            if method == "POST":
                secret_id = request.query.get("secretId", "")
                if not _SECRET_ID.match(secret_id):
                    raise GoogleError("INVALID_ARGUMENT", "secret_id must be 1-255 letters, digits, '-' or '_'.")
                if secret_id in manager.secrets:
                    raise GoogleError("ALREADY_EXISTS", f"Secret [{manager.project_number}/{secret_id}] "
                                      "already exists.")
                body = await parse_body(request, _PROTO["Secret"])
                if "replication" not in body:
                    raise GoogleError("INVALID_ARGUMENT", "Secret.replication is required.")
                secret = Secret(name=secret_id, create_time=rfc3339(), labels=body.get("labels", {}))
                manager.secrets[secret_id] = secret
                return respond(request, _PROTO["Secret"], manager.secret_json(secret))
            raise web.HTTPMethodNotAllowed(method, ["GET", "POST"])
        secret = manager.secret(name)
        if match["secret_verb"] == "addVersion":
            body = await _payload(request)
            data = base64.b64decode(body.get("data", ""))
            checksum = body.get("dataCrc32c")
            if checksum is not None and int(checksum) != crc32c(data):
                raise GoogleError("INVALID_ARGUMENT", "The checksum in field SecretPayload.data_crc32c did not "
                                  "match the data; the payload may have been corrupted in transit.")
            version = Version(len(secret.versions) + 1, data, rfc3339(), checksummed=checksum is not None)
            secret.versions.append(version)
            return respond(request, _PROTO["SecretVersion"], manager.version_json(secret, version))
        if version_ref is None and request.path.endswith("/versions"):
            items = [manager.version_json(secret, v) for v in reversed(secret.versions)]
            rows = [({"name": item["name"], "state": item["state"]}, item) for item in items]
            return respond(request, _PROTO["ListSecretVersionsResponse"], _listing(request, rows, "versions"))
        if version_ref is None:
            if method == "GET":
                return respond(request, _PROTO["Secret"], manager.secret_json(secret))
            if method == "DELETE":
                del manager.secrets[name]
                return web.json_response({})
            if method == "PATCH":
                body = await parse_body(request, _PROTO["Secret"])
                mask = request.query.get("updateMask", "")
                if not mask:
                    raise GoogleError("INVALID_ARGUMENT", "update_mask is required.")
                if "labels" in mask.split(","):
                    secret.labels = body.get("labels", {})
                return respond(request, _PROTO["Secret"], manager.secret_json(secret))
            raise web.HTTPMethodNotAllowed(method, ["GET", "PATCH", "DELETE"])
        version = manager.version(secret, version_ref)
        if verb == "access":
            if version.state != "ENABLED":
                raise GoogleError("FAILED_PRECONDITION", f"Secret Version [{manager.secret_path(secret)}/versions/"
                                  f"{version.number}] is in {version.state} state.")
            manager.accesses.append((time.time(), name))
            return respond(request, _PROTO["AccessSecretVersionResponse"], {
                "name": f"{manager.secret_path(secret)}/versions/{version.number}",
                "payload": {"data": base64.b64encode(version.data).decode(),
                            "dataCrc32c": str(crc32c(version.data))},
            })
        if verb in ("enable", "disable", "destroy") and method == "POST":
            if version.state == "DESTROYED":
                raise GoogleError("FAILED_PRECONDITION", "A destroyed version cannot change state.")
            version.state = {"enable": "ENABLED", "disable": "DISABLED", "destroy": "DESTROYED"}[verb]
            if verb == "destroy":
                version.data = b""
                version.destroy_time = rfc3339()
            return respond(request, _PROTO["SecretVersion"], manager.version_json(secret, version))
        if verb is None and method == "GET":
            return respond(request, _PROTO["SecretVersion"], manager.version_json(secret, version))
        raise web.HTTPMethodNotAllowed(method, ["GET", "POST"])

    checks = [authenticated(tokens, "secretmanager.googleapis.com",
                            lambda request: f"google.cloud.secretmanager.v1.SecretManagerService.{method_of(request)}")
              ] if tokens is not None else []
    app = web.Application(middlewares=[google_errors, *checks])
    app.router.add_route("*", "/v1/{rest:.*}", dispatch)
    return app


def _resource(path: str) -> str:
    """The resource a request names, the one its permission is checked on: the project for the collection."""
    name = path.removeprefix("/v1/").split(":", 1)[0]
    return name.removesuffix("/secrets") if name.endswith("/secrets") else name


def _labels(labels: dict[str, str]) -> dict[str, str]:
    return {f"labels.{key}": value for key, value in labels.items()}


def _listing(request: web.Request, rows: list[tuple[dict[str, str], dict[str, Any]]], key: str) -> dict[str, Any]:
    """One page of a filtered list. `rows` pairs what the filter sees with the JSON served. totalSize is "The
    total number of Secrets but 0 when the ListSecretsRequest.filter field is set" (ListSecretsResponse); the page
    token is this sandbox's own, an offset, opaque to the client."""
    text = request.query.get("filter", "")
    try:
        keep = parse(text)
    except SecretFilterError as exc:
        raise GoogleError("INVALID_ARGUMENT", str(exc)) from None
    token = request.query.get("pageToken", "")
    try:
        size = int(request.query.get("pageSize") or 0)
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise GoogleError("INVALID_ARGUMENT", "Invalid page_size or page_token.") from None
    if size < 0:
        raise GoogleError("INVALID_ARGUMENT", "page_size must not be negative.")
    size = min(size, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    items = [body for record, body in rows if keep(record)]
    page: dict[str, Any] = {}
    if items[start:start + size]:
        page[key] = items[start:start + size]
    if start + size < len(items):
        page["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    if items and not text:
        page["totalSize"] = len(items)
    return page


async def _payload(request: web.Request) -> dict[str, Any]:
    body = await request.json() if await request.text() else {}
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, dict) or "data" not in payload:
        raise GoogleError("INVALID_ARGUMENT", "payload.data is required.")
    return payload
