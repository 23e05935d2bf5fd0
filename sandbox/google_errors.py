"""Google's JSON error body, the shape google-api-core turns into typed exceptions.

Google attaches typed details to many errors (google.rpc.ErrorInfo on PERMISSION_DENIED, BadRequest
field violations on INVALID_ARGUMENT: https://cloud.google.com/apis/design/errors, "Error details");
google-api-core exposes them as `exc.details`, and an ErrorInfo as `exc.reason`/`exc.domain`/`exc.metadata`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

RPC_CODE = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


class GoogleError(Exception):
    """Raised by an emulator's logic; the route turns it into Google's error JSON."""

    def __init__(self, status: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details or [])

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.status, 500)

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.http_status, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def rpc_status(self) -> dict[str, Any]:
        """The google.rpc.Status a failed long-running operation carries in its `error` field."""
        status: dict[str, Any] = {"code": RPC_CODE[self.status], "message": self.message}
        if self.details:
            status["details"] = self.details
        return status

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.http_status)


def error_info(reason: str, domain: str, metadata: dict[str, str]) -> dict[str, Any]:
    """A google.rpc.ErrorInfo detail, as Google's JSON carries it."""
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": domain,
            "metadata": metadata}


def bad_request(field: str, description: str) -> dict[str, Any]:
    """A google.rpc.BadRequest detail naming the offending field."""
    return {"@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": description}]}


@web.middleware
async def google_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every emulator answers failures the way Google's front end does, never with an HTML page."""
    try:
        return await handler(request)
    except GoogleError as exc:
        return exc.response()
    except web.HTTPNotFound:
        return GoogleError("NOT_FOUND", f"The requested URL {request.path} was not found on this server.").response()
    except web.HTTPMethodNotAllowed:
        return GoogleError("UNIMPLEMENTED", f"Method {request.method} is not supported for {request.path}.").response()
