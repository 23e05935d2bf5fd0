"""The instance metadata server a Cloud Run container reaches at metadata.google.internal.

Modelled on https://cloud.google.com/run/docs/container-contract#metadata-server and the Compute Engine
metadata docs (https://cloud.google.com/compute/docs/metadata/querying-metadata): every request must carry
`Metadata-Flavor: Google` or it is refused with 403, and every answer carries that header back (google-auth's
ping checks it). It serves what google-auth asks for (google/auth/compute_engine/_metadata.py, credentials.py):
the ping at `/`, the default service account (directory, email, access token, ID token), the project's ID and
number, and the region as Cloud Run answers it, `projects/PROJECT-NUMBER/regions/REGION`. A program is pointed
here by GCE_METADATA_HOST (host:port of the `computeMetadata/v1/` root) and GCE_METADATA_IP (the ping).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from sandbox.access_tokens import AccessTokens
from sandbox.idtoken import IdTokenIssuer

FLAVOR = {"Metadata-Flavor": "Google"}
_ROOT = "/computeMetadata/v1/"
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


@dataclass
class MetadataServer:
    """What one instance sees: its project and region, and the service account it runs as."""

    project: str
    project_number: str
    region: str
    email: str
    issuer: IdTokenIssuer
    access_tokens: AccessTokens
    identity_requests: int = 0
    token_requests: int = 0
    pings: int = 0

    def access_token(self) -> str:
        """A fresh access token for the attached service account: what the token endpoint serves, and what a test
        that plays a caller on this instance (gcloud, an operator's script) authenticates with."""
        self.token_requests += 1
        return self.access_tokens.issue(self.email)

    def account(self, name: str) -> bool:
        """`default` and the account's own email both name the attached service account."""
        return name in ("default", self.email)


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="application/text", headers=FLAVOR)


@web.middleware
async def _flavored(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Without `Metadata-Flavor: Google` the request may come from anything that can be made to fetch a URL
    (a proxy, an SSRF); the metadata server refuses it with 403."""
    if request.headers.get("Metadata-Flavor") != "Google":
        return _text("Missing required header \"Metadata-Flavor\": \"Google\"\n", 403)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        return _text(f"{exc.reason}\n", exc.status)
    response.headers.update(FLAVOR)
    return response


def metadata_app(server: MetadataServer) -> web.Application:
    async def ping(request: web.Request) -> web.Response:
        server.pings += 1
        return _text("computeMetadata/\n")

    async def project_id(request: web.Request) -> web.Response:
        return _text(server.project)

    async def project_number(request: web.Request) -> web.Response:
        return _text(server.project_number)

    async def region(request: web.Request) -> web.Response:
        return _text(f"projects/{server.project_number}/regions/{server.region}")

    async def account(request: web.Request) -> web.Response:
        """The directory: its entries, or with `?recursive=true` the JSON google-auth reads the email from."""
        if not server.account(request.match_info["account"]):
            raise web.HTTPNotFound()
        if request.query.get("recursive") == "true":
            return web.json_response({"aliases": ["default"], "email": server.email, "scopes": list(_SCOPES)},
                                     headers=FLAVOR)
        return _text("aliases\nemail\nidentity\nscopes\ntoken\n")

    async def email(request: web.Request) -> web.Response:
        if not server.account(request.match_info["account"]):
            raise web.HTTPNotFound()
        return _text(server.email)

    async def token(request: web.Request) -> web.Response:
        if not server.account(request.match_info["account"]):
            raise web.HTTPNotFound()
        return web.json_response({"access_token": server.access_token(),
                                  "expires_in": server.issuer.limits.access_token_lifetime_s,
                                  "token_type": "Bearer"}, headers=FLAVOR)

    async def identity(request: web.Request) -> web.Response:
        """An ID token for `audience` (required); `format=standard|full` only decides about claims this
        sandbox does not model (the Compute Engine instance's), so both return the same claims."""
        if not server.account(request.match_info["account"]):
            raise web.HTTPNotFound()
        audience = request.query.get("audience", "")
        if not audience:
            return _text("non-empty audience parameter required\n", 400)
        if request.query.get("format", "standard") not in ("standard", "full"):
            return _text("format must be one of: standard, full\n", 400)
        server.identity_requests += 1
        return _text(server.issuer.mint(audience=audience, email=server.email))

    app = web.Application(middlewares=[_flavored])
    app.router.add_get("/", ping)
    app.router.add_get(_ROOT + "project/project-id", project_id)
    app.router.add_get(_ROOT + "project/numeric-project-id", project_number)
    app.router.add_get(_ROOT + "instance/region", region)
    accounts = _ROOT + "instance/service-accounts/{account}/"
    app.router.add_get(accounts, account)
    app.router.add_get(accounts + "email", email)
    app.router.add_get(accounts + "token", token)
    app.router.add_get(accounts + "identity", identity)
    return app

