"""OAuth 2 access tokens: issued by the metadata server, required by every Google API of the world.

Google's APIs answer a call without credentials, or with a bearer token that is not a live access token, with
401 UNAUTHENTICATED before anything else (no IAM check, no lookup). The shapes are Google's, as users have
posted them: "Request is missing required authentication credential. Expected OAuth 2 access token, login
cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/
devconsole-project." with ErrorInfo reason CREDENTIALS_MISSING (googleapis/google-api-php-client#1528,
reactmore/morelab#17), and "Request had invalid authentication credentials. Expected OAuth 2 access token, ..."
with reason ACCESS_TOKEN_TYPE_UNSUPPORTED for a token that is no access token
(GoogleCloudPlatform/cloud-logging-data-source-plugin#126), ErrorInfo domain googleapis.com and metadata
{service, method}. The answer carries `WWW-Authenticate: Bearer realm="https://accounts.google.com/"`, as
RFC 6750 (section 3) asks of a bearer-token resource server.

The tokens accepted are exactly those the metadata server issued (`/computeMetadata/v1/instance/
service-accounts/default/token`, https://cloud.google.com/run/docs/container-contract#metadata-server), until they
expire (IdentityLimits.access_token_lifetime_s). An expired one is refused with reason ACCESS_TOKEN_EXPIRED; an
access-token-shaped string the world never issued with no ErrorInfo (Google's reason for it is not published).
Tokens are opaque random strings kept only in memory; each maps to the service account it was issued for.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sandbox.google_errors import GoogleError, error_info

_SEE = "See https://developers.google.com/identity/sign-in/web/devconsole-project."
_EXPECTED = "Expected OAuth 2 access token, login cookie or other valid authentication credential."
MISSING = f"Request is missing required authentication credential. {_EXPECTED} {_SEE}"
INVALID = f"Request had invalid authentication credentials. {_EXPECTED} {_SEE}"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}


@dataclass
class AccessTokens:
    """The live access tokens: token -> (service account email, expiry)."""

    lifetime_s: Callable[[], float]
    clock: Callable[[], float] = time.time
    _issued: dict[str, tuple[str, float]] = field(default_factory=dict)

    def issue(self, email: str) -> str:
        token = f"ya29.{secrets.token_urlsafe(96)}"
        self._issued[token] = (email, self.clock() + self.lifetime_s())
        return token

    def caller(self, authorization: str | None, service: str, method: str) -> str:
        """The email a request's `Authorization` header authenticates, or the 401 Google answers."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        where = {"service": service, "method": method}
        if scheme.lower() != "bearer" or not token:
            raise GoogleError("UNAUTHENTICATED", MISSING, [error_info("CREDENTIALS_MISSING", "googleapis.com", where)])
        issued = self._issued.get(token)
        if issued is None:
            details = [] if token.startswith("ya29.") else [
                error_info("ACCESS_TOKEN_TYPE_UNSUPPORTED", "googleapis.com", where)]
            raise GoogleError("UNAUTHENTICATED", INVALID, details)
        email, expires = issued
        if self.clock() >= expires:
            raise GoogleError("UNAUTHENTICATED", INVALID, [error_info("ACCESS_TOKEN_EXPIRED", "googleapis.com", where)])
        return email


def authenticated(tokens: AccessTokens, service: str, rpc_of: Callable[[web.Request], str]) -> Middleware:
    """A middleware asking for a live access token before the API's own handler runs; `rpc_of` names the
    request's method as Google's ErrorInfo does (google.cloud.run.v2.Services.GetService)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            tokens.caller(request.headers.get("Authorization"), service, rpc_of(request))
        except GoogleError as refused:
            response = refused.response()
            response.headers.update(CHALLENGE)
            return response
        return await handler(request)

    return check
