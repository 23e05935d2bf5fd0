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
learns nothing of what exists.
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
from sandbox.cloudrun import rfc3339
from sandbox.faults import Faults
from sandbox.google_errors import GoogleError, google_errors
from sandbox.google_json import parse_body, respond
from sandbox.iam import Authorize, allow_all

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


def secretmanager_app(manager: SecretManager, faults: Faults | None = None) -> web.Application:
    injected = faults or Faults()

    async def dispatch(request: web.Request) -> web.Response:
        await injected.google(method_of(request))
        match = _PATH.match(request.path)
        if match is None:
            raise web.HTTPNotFound()
        if match["project"] not in (manager.project, manager.project_number):
            raise GoogleError("PERMISSION_DENIED", f"Permission 'secretmanager.secrets.list' denied for "
                              f"resource 'projects/{match['project']}' (or it may not exist).")
        name, version_ref, verb = match["secret"], match["version"], match["verb"]
        method = request.method
        if verb == "access":
            resource = request.path.removeprefix("/v1/").removesuffix(":access")
            manager.authorize("secretmanager.versions.access", resource)
        if name is None:
            if method == "GET":
                items = [manager.secret_json(s) for _, s in sorted(manager.secrets.items())]
                return respond(request, _PROTO["ListSecretsResponse"], {"secrets": items, "totalSize": len(items)}
                               if items else {})
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
            return respond(request, _PROTO["ListSecretVersionsResponse"],
                           {"versions": items, "totalSize": len(items)} if items else {})
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

    app = web.Application(middlewares=[google_errors])
    app.router.add_route("*", "/v1/{rest:.*}", dispatch)
    return app


async def _payload(request: web.Request) -> dict[str, Any]:
    body = await request.json() if await request.text() else {}
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, dict) or "data" not in payload:
        raise GoogleError("INVALID_ARGUMENT", "payload.data is required.")
    return payload
