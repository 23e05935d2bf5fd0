"""Faults on demand: an emulated Google or Slack method misbehaves until told otherwise (`POST /faults`).

A fault names one method by the name its API gives it (Cloud Run's `UpdateService`, Secret Manager's
`AccessSecretVersion`, Logging's `ListLogEntries`, Monitoring's `ListTimeSeries`, Slack's `chat.postMessage`),
and says what a call to it gets instead of its answer:
- `status`: the error that API answers with. Google's is its JSON error body (google_errors.py) with the canonical
  code the HTTP status maps to ("HTTP Mapping: 503 Service Unavailable" for UNAVAILABLE and so on,
  https://cloud.google.com/apis/design/errors#error_codes, google.rpc.Code), or over gRPC that code itself.
  Slack's is `{"ok": false, "error": ...}`: Slack documents no 5xx body, only that "other errors can be returned
  in the case where the service is down" (https://api.slack.com/methods/api.test), so 500 answers its
  `internal_error` ("likely due to a transient issue on our end") and 503 its `service_unavailable`, with that
  HTTP status (an assumption); 429 is `ratelimited` with "a Retry-After HTTP header containing the number of
  seconds until you can retry" (https://docs.slack.dev/apis/web-api/rate-limits); 200 answers a given error;
- `latency_ms`: the answer, faulted or not, comes that much later;
- `hang`: no answer at all, until the client gives up (or the world stops);
- `drop` (Slack): the connection is closed without an answer, as a reset or a proxy that went away does; the
  client sees the server disconnect.
`lands` (Slack) makes the fault strike after the call has done its work: a message is posted, and only its
answer is lost (`drop`, `hang`) or replaced (`status`), so the client cannot know that it landed. Slack's own
`internal_error` says as much: "It's possible some aspect of the operation succeeded before the error was raised"
(https://docs.slack.dev/reference/methods/chat.postMessage#errors). Without `lands` a faulted call never reaches
the emulator: it changes nothing and is not counted as served.
`count` faults the next N calls, `probability` each call with that chance, neither every call until
`DELETE /faults`. Every fault set, and every call one hits, is logged (logger `sandbox.faults`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from sandbox.google_errors import GoogleError

log = logging.getLogger(__name__)

Kind = Literal["google", "slack"]

GOOGLE_CODES: dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ABORTED",
    429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
"""HTTP status -> the canonical code google.rpc.Code maps to it; where several share a status (400, 409, 500) the
fault may name the code instead (`"status": "FAILED_PRECONDITION"`)."""

_GOOGLE_MESSAGES: dict[str, str] = {
    "UNAVAILABLE": "The service is currently unavailable.",
    "INTERNAL": "Internal error encountered.",
    "RESOURCE_EXHAUSTED": "Resource has been exhausted (e.g. check quota).",
    "PERMISSION_DENIED": "The caller does not have permission",
    "DEADLINE_EXCEEDED": "The request deadline was exceeded.",
    "UNAUTHENTICATED": "Request had invalid authentication credentials.",
}
"""Messages as Google's front ends word them for errors that are not about the request; the wording is seen in
client logs, not documented (an assumption). Other codes get google.rpc.Code's description of them."""

_CODE_WORDS: dict[str, str] = {
    "INVALID_ARGUMENT": "The client specified an invalid argument.",
    "FAILED_PRECONDITION": "The operation was rejected because the system is not in a state required for the "
                           "operation's execution.",
    "OUT_OF_RANGE": "The operation was attempted past the valid range.",
    "NOT_FOUND": "Some requested entity was not found.",
    "ALREADY_EXISTS": "The entity that a client attempted to create already exists.",
    "ABORTED": "The operation was aborted, typically due to a concurrency issue.",
    "CANCELLED": "The operation was cancelled, typically by the caller.",
    "UNIMPLEMENTED": "The operation is not implemented or is not supported/enabled in this service.",
    "UNKNOWN": "Unknown error.",
    "DATA_LOSS": "Unrecoverable data loss or corruption.",
}

SLACK_ERRORS: dict[int, str] = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}
"""Slack's error for each HTTP status a fault may answer with; 200 takes the error the fault names."""

_FIELDS = ("method", "status", "count", "probability", "latency_ms", "hang", "drop", "lands", "error", "retry_after")


class FaultError(ValueError):
    """A fault the control API refuses; the message says what to send instead."""


@dataclass(frozen=True)
class Api:
    """One emulated API, the kind of errors it answers with, and its methods' names."""

    name: str
    kind: Kind
    methods: tuple[str, ...]


@dataclass
class Fault:
    id: int
    method: str
    kind: Kind
    status: int | None  # the HTTP status answered; None: the call is only delayed (latency_ms) or hangs
    error: str  # Google's canonical code or Slack's error; "" without a status
    count: int | None
    probability: float | None
    latency_ms: float
    hang: bool
    retry_after: int | None
    drop: bool = False
    lands: bool = False
    hits: int = 0

    @property
    def spent(self) -> bool:
        return self.count is not None and self.hits >= self.count

    def describe(self) -> str:
        what = "hang" if self.hang else "drop the connection" if self.drop else (
            f"{self.status} {self.error}" if self.status is not None else "answer")
        what = f"land, then {what}" if self.lands else what
        late = f" after {self.latency_ms:g} ms" if self.latency_ms else ""
        often = (f"the next {self.count} calls" if self.count is not None else
                 f"each call with p={self.probability:g}" if self.probability is not None else "every call")
        return f"{self.method}: {what}{late}, {often}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "method": self.method, "api": self.kind, "status": self.status,
                "error": self.error, "count": self.count, "probability": self.probability,
                "latency_ms": self.latency_ms, "hang": self.hang, "drop": self.drop, "lands": self.lands,
                "retry_after": self.retry_after,
                "hits": self.hits, "spent": self.spent}


class Faults:
    """The faults in force, shared by every emulator of a world; each emulator asks it at the top of its dispatch."""

    def __init__(self, apis: Sequence[Api] = (), *, seed: str = "faults") -> None:
        self.apis = tuple(apis)
        self._kinds: dict[str, Kind] = {method: api.kind for api in self.apis for method in api.methods}
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)
        self._stopping = asyncio.Event()

    def add(self, body: Mapping[str, Any]) -> Fault:
        """A fault from the control API's body; raises FaultError naming what is wrong."""
        unknown = sorted(set(body) - set(_FIELDS))
        if unknown:
            raise FaultError(f"unknown field {unknown[0]!r}; a fault has {', '.join(_FIELDS)}")
        method = body.get("method")
        if not isinstance(method, str) or method not in self._kinds:
            known = "; ".join(f"{api.name}: {', '.join(api.methods)}" for api in self.apis)
            raise FaultError(f"unknown method {method!r}; known: {known}")
        kind = self._kinds[method]
        hang, drop, lands = (body.get(name, False) for name in ("hang", "drop", "lands"))
        if not all(isinstance(flag, bool) for flag in (hang, drop, lands)):
            raise FaultError("hang, drop and lands are true or false")
        if (drop or lands) and kind != "slack":
            raise FaultError("drop and lands are for Slack's methods")
        latency = _number(body, "latency_ms", 0.0)
        count = body.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise FaultError("count is a whole number >= 1: how many of the next calls fail")
        probability = body.get("probability")
        if probability is not None and (isinstance(probability, bool) or not isinstance(probability, int | float)
                                        or not 0 < probability <= 1):
            raise FaultError("probability is a number in (0, 1]: the chance each call fails")
        if count is not None and probability is not None:
            raise FaultError("send count or probability, not both")
        if (hang or drop) and body.get("status") is not None:
            raise FaultError("a hanging or dropped call never answers, so it takes no status")
        if hang and drop:
            raise FaultError("send hang or drop, not both")
        status, error = (None, "") if body.get("status") is None else (
            _google_status(body["status"]) if kind == "google" else _slack_status(body["status"], body.get("error")))
        if body.get("error") is not None and (kind == "google" or status is None):
            raise FaultError("error is the Slack error code a status answers with; a Google method's follows from "
                             "its status")
        if lands and status == 429:
            raise FaultError("a 429 says Slack did not act on the call, so it cannot land")
        retry_after = body.get("retry_after")
        if retry_after is not None and (kind != "slack" or status != 429 or isinstance(retry_after, bool)
                                        or not isinstance(retry_after, int) or retry_after < 0):
            raise FaultError("retry_after is the whole seconds of a Slack 429's Retry-After header")
        if status is None and not hang and not drop and not latency:
            raise FaultError("a fault needs a status, hang, drop, or latency_ms")
        fault = Fault(next(self._ids), method, kind, status, error, count,
                      None if probability is None else float(probability), latency, hang,
                      (1 if retry_after is None else retry_after) if status == 429 and kind == "slack" else None,
                      drop=drop, lands=lands)
        self._faults.append(fault)
        log.warning("fault #%d set: %s", fault.id, fault.describe())
        return fault

    def clear(self) -> list[Fault]:
        """Take every fault away; returns them with how many calls each hit. Calls already hanging stay hung."""
        cleared, self._faults = self._faults, []
        log.warning("faults cleared: %s", "; ".join(f"#{f.id} {f.method} hit {f.hits}" for f in cleared) or "none")
        return cleared

    def listing(self) -> list[dict[str, Any]]:
        return [fault.to_json() for fault in self._faults]

    def stop(self) -> None:
        """The world is stopping: hung calls end (with UNAVAILABLE), so servers can shut down."""
        self._stopping.set()

    async def google(self, method: str) -> None:
        """Raises the GoogleError a fault answers `method` with, after its latency; returns when none applies."""
        fault = await self._strike(method, landed=False)
        if fault is None or (fault.status is None and not fault.hang):
            return
        code = "UNAVAILABLE" if fault.hang else fault.error
        raise GoogleError(code, _GOOGLE_MESSAGES.get(code) or _CODE_WORDS.get(code, code))

    async def slack(self, method: str, request: web.Request, *, landed: bool = False) -> web.Response | None:
        """Slack's answer to `method` under a fault, after its latency; None when none applies. Asked before the
        call is served, and again once it has landed (`landed`), for the faults that strike then."""
        fault = await self._strike(method, landed=landed)
        if fault is None or (fault.status is None and not fault.hang and not fault.drop):
            return None
        if fault.drop:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)  # written nowhere: the connection is gone
        status, error = (503, "service_unavailable") if fault.hang else (fault.status or 200, fault.error)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return web.json_response({"ok": False, "error": error}, status=status, headers=headers)

    async def _strike(self, method: str, *, landed: bool) -> Fault | None:
        """The fault that takes this call, if any (the oldest that applies), after its latency; a hang waits here."""
        fault = next((f for f in self._faults if f.method == method and not f.spent and f.lands == landed and
                      (f.probability is None or self._rng.random() < f.probability)), None)
        if fault is None:
            return None
        fault.hits += 1
        log.warning("fault #%d hits call %d to %s", fault.id, fault.hits, fault.describe())
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.hang:
            await self._stopping.wait()
        return fault


def _number(body: Mapping[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultError(f"{name} is a number >= 0")
    return float(value)


def _google_status(status: object) -> tuple[int, str]:
    """(HTTP status, canonical code) from either; a code names one exactly where several share a status."""
    if isinstance(status, str) and status in _CODE_WORDS.keys() | GOOGLE_CODES.values():
        return GoogleError(status, "").http_status, status
    if isinstance(status, int) and not isinstance(status, bool) and status in GOOGLE_CODES:
        return status, GOOGLE_CODES[status]
    statuses = ", ".join(f"{code} ({name})" for code, name in GOOGLE_CODES.items())
    raise FaultError(f"status {status!r} is none of Google's: {statuses}, or a canonical code such as "
                     "FAILED_PRECONDITION")


def _slack_status(status: object, error: object) -> tuple[int, str]:
    if isinstance(status, bool) or status not in (200, *SLACK_ERRORS):
        raise FaultError(f"status {status!r}: a Slack fault answers 200 (with an error), "
                         f"{', '.join(str(s) for s in SLACK_ERRORS)}")
    assert isinstance(status, int)
    if error is None:
        if status == 200:
            raise FaultError("a Slack fault with status 200 names its error, e.g. \"fatal_error\"")
        return status, SLACK_ERRORS[status]
    if not isinstance(error, str) or not error or not error.replace("_", "").isalnum() or not error.islower():
        raise FaultError("error is a Slack error code such as \"internal_error\"")
    return status, error
