"""What a revision does when it runs: declared per image, overridable per revision.

This is the sandbox's fault-injection surface. The control API writes it; Cloud Run (start-up) and
the fleet (health endpoints, simulated traffic) read it. Images nobody declared behave healthily.

`silent_errors`: the revision answers its failing requests with 500 and its code logs nothing about them. Cloud
Run still writes a request log for every request it serves ("Request logs ... are created automatically",
https://cloud.google.com/run/docs/logging), whose `httpRequest.status` is the answer's status
(https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry#HttpRequest); the container logs are only
what the code writes. Many services log a failure at INFO, or not at all: the request log is then the only
evidence of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

StartMode = Literal["ok", "fail", "hang"]


@dataclass(frozen=True)
class Behaviour:
    error_rate: float = 0.0
    latency_ms: float = 20.0
    failing_checks: tuple[str, ...] = ()
    down: bool = False
    start: StartMode = "ok"
    start_ms: float | None = None
    error_message: str | None = None
    """What the revision's own code logs at ERROR for a failed request, as written; None: the service's usual line."""
    silent_errors: bool = False  # 5xx answers only in Cloud Run's request logs, no line from the code

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failing_checks"] = list(self.failing_checks)
        return data


class BehaviourError(ValueError):
    """A control request that does not describe a behaviour; the message names the field."""


_FIELDS = {"error_rate", "latency_ms", "failing_checks", "down", "start", "start_ms", "error_message",
           "silent_errors"}
_MOST_MESSAGE = 4000


def apply_patch(base: Behaviour, patch: dict[str, Any]) -> Behaviour:
    unknown = set(patch) - _FIELDS
    if unknown:
        raise BehaviourError(f"unknown field(s) {sorted(unknown)}; known: {sorted(_FIELDS)}")
    changes: dict[str, Any] = {}
    if "error_rate" in patch:
        rate = patch["error_rate"]
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
            raise BehaviourError("error_rate is a fraction between 0 and 1, e.g. 0.2")
        changes["error_rate"] = float(rate)
    if "latency_ms" in patch:
        latency = patch["latency_ms"]
        if not isinstance(latency, int | float) or isinstance(latency, bool) or latency < 0:
            raise BehaviourError("latency_ms is a non-negative number of milliseconds")
        changes["latency_ms"] = float(latency)
    if "failing_checks" in patch:
        checks = patch["failing_checks"]
        if not isinstance(checks, list) or not all(isinstance(c, str) and c for c in checks):
            raise BehaviourError("failing_checks is a list of check names, e.g. [\"bigquery\"]")
        changes["failing_checks"] = tuple(checks)
    for flag in ("down", "silent_errors"):
        if flag in patch:
            if not isinstance(patch[flag], bool):
                raise BehaviourError(f"{flag} is true or false")
            changes[flag] = patch[flag]
    if "start" in patch:
        if patch["start"] not in ("ok", "fail", "hang"):
            raise BehaviourError("start is one of ok, fail, hang")
        changes["start"] = patch["start"]
    if "start_ms" in patch:
        start_ms = patch["start_ms"]
        if start_ms is not None and (not isinstance(start_ms, int | float) or start_ms < 0):
            raise BehaviourError("start_ms is a non-negative number of milliseconds")
        changes["start_ms"] = None if start_ms is None else float(start_ms)
    if "error_message" in patch:
        message = patch["error_message"]
        if message is not None and (not isinstance(message, str) or not message or len(message) > _MOST_MESSAGE):
            raise BehaviourError(f"error_message is the line logged for a failed request, 1 to {_MOST_MESSAGE} "
                                 "characters, or null for the service's usual one")
        changes["error_message"] = message
    return replace(base, **changes)


@dataclass
class Behaviours:
    """Per-image declarations and per-revision overrides; a revision's own override wins."""

    default: Behaviour = field(default_factory=Behaviour)
    images: dict[str, Behaviour] = field(default_factory=dict)
    revisions: dict[str, Behaviour] = field(default_factory=dict)

    def declare_image(self, image: str, patch: dict[str, Any]) -> Behaviour:
        behaviour = apply_patch(self.default, patch)
        self.images[image] = behaviour
        return behaviour

    def patch_revision(self, revision: str, image: str, patch: dict[str, Any]) -> Behaviour:
        behaviour = apply_patch(self.of(revision, image), patch)
        self.revisions[revision] = behaviour
        return behaviour

    def of(self, revision: str, image: str) -> Behaviour:
        if revision in self.revisions:
            return self.revisions[revision]
        return self.images.get(image, self.default)
