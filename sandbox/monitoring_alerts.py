"""Cloud Monitoring's alert notifications to a webhook channel, sent to the bot as Google sends them.

The control API's `POST /alerts/monitoring` fires one: an incident of an alerting policy's condition on a Cloud Run
service opens or closes, and the channel POSTs it to the next bot URL (round-robin) at `/alerts/monitoring`.

What is modelled, and where it comes from:
- the payload is schema version 1.2 (https://cloud.google.com/monitoring/support/notification-options#webhooks):
  `{"incident": {...}, "version": "1.2"}` with incident_id, scoping_project_id/number, url, severity, started_at
  and ended_at in whole epoch seconds, state "open"/"closed", resource, metric, metadata, policy_name,
  policy_user_labels, condition_name, condition, documentation, summary, the fields of Google's example;
- `ended_at` is null while the incident is open ("this will be null when it is an open message",
  https://support.stackdriver.com/customer/en/portal/articles/1491775-configuring-webhooks), and the closing
  notification carries the same incident_id;
- the resource is `cloud_run_revision` with project_id, service_name, revision_name, location, configuration_name
  (https://cloud.google.com/monitoring/api/resources#tag_cloud_run_revision);
- a policy's documentation: content "may not exceed 8,192 Unicode characters and may not exceed more than 10,240
  bytes", mime_type "text/markdown" (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies
  #documentation), a subject of at most 255 characters (https://docs.cloud.google.com/monitoring/alerts/doc-variables);
- authentication as the channel is configured (`ChannelLimits`): token authentication puts the token in the URL's
  query string, `?auth_token=...` ("Token Authentication requires a query string parameter in the endpoint URL and
  a key that the server expects to be secret between itself and Monitoring"); Basic authentication sends the
  username and password, and "Cloud Monitoring requires your server to return a 401 response with the proper
  WWW-Authenticate header" (both https://docs.cloud.google.com/error-reporting/docs/notifications).

Not documented, so chosen strict and marked as assumptions: Basic credentials go only in answer to a 401 that
carries `WWW-Authenticate: Basic` (the challenge Google requires), unless `preemptive_basic`; a notification is
sent once, never retried, and counts as delivered only on a 2xx; the channel waits `timeout_s` for an answer.

The token lives in the world's Secret Manager and in the channel's configuration here, as in Google; nothing
recorded for `/state` contains it.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp

SCHEMA_VERSION = "1.2"
PATH = "/alerts/monitoring"
BASIC_USERNAME = "cloud-monitoring"
RESOURCE_TYPE = "cloud_run_revision"
MIME_TYPE = "text/markdown"
_SPEC_KEYS = frozenset({"policy", "condition", "service", "state", "incident_id", "summary", "documentation",
                        "observed_value", "threshold_value"})

State = Literal["open", "closed"]


@dataclass
class ChannelLimits:
    """The webhook notification channel, registered by the world as the limit group `monitoring_webhook`."""

    # Token authentication: "a query string parameter in the endpoint URL", `?auth_token=...`
    # (https://docs.cloud.google.com/error-reporting/docs/notifications, "Token authentication").
    token_auth: bool = True
    # Basic authentication with the token as the password (same page, "Basic authentication").
    basic_auth: bool = False
    # Assumption: credentials only after the 401 + WWW-Authenticate that Google requires; true sends them at once.
    preemptive_basic: bool = False
    # Assumption: Google publishes no timeout for webhook channels; 5 s is what it asks of another webhook
    # receiver ("reply with an HTTP response status code of 200 within 5 seconds", https://developers.google.com
    # /analytics/devguides/reporting/data/v1/rest/v1alpha/WebhookNotification).
    timeout_s: float = 5.0
    # AlertPolicy.Documentation.content: "may not exceed 8,192 Unicode characters and may not exceed more than
    # 10,240 bytes when encoded in UTF-8" (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/
    # projects.alertPolicies#documentation).
    documentation_max_chars: int = 8192
    documentation_max_bytes: int = 10240
    # "Subjects are limited to 255 characters" (https://docs.cloud.google.com/monitoring/alerts/doc-variables).
    subject_max_chars: int = 255


class NotificationError(Exception):
    """A notification Google would never send (an unknown service, closing what is not open); `status` is the
    control API's answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Incident:
    incident_id: str
    policy: str
    condition: str
    service: str
    revision: str
    policy_id: str
    condition_id: str
    started_at: int
    ended_at: int | None = None

    @property
    def state(self) -> State:
        return "open" if self.ended_at is None else "closed"


@dataclass
class Delivery:
    status: int
    attempts: int
    error: str | None


class MonitoringAlerts:
    """The project's alerting incidents and its one webhook channel. `revision_of(service)` names the revision that
    serves most of a service's traffic, or None for a service that does not exist."""

    def __init__(self, project: str, project_number: str, region: str, *, token: str, bot_urls: Sequence[str],
                 revision_of: Callable[[str], str | None], limits: ChannelLimits) -> None:
        self.project = project
        self.project_number = project_number
        self.region = region
        self.token = token
        self.revision_of = revision_of
        self.limits = limits
        self.sent: list[dict[str, Any]] = []
        self._incidents: dict[str, Incident] = {}
        self._next_url = itertools.cycle(bot_urls)

    def __repr__(self) -> str:
        return f"MonitoringAlerts({self.project!r}, ...)"

    async def notify(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Open or close an incident and send its notification; what the bot answered, and what was sent."""
        incident, state = self._incident(spec)
        payload = self.payload(incident, spec)
        url = next(self._next_url, None)
        delivery = Delivery(0, 0, "no bot URL is configured") if url is None else await self._deliver(url, payload)
        self.sent.append({"at": time.time(), "incident_id": incident.incident_id, "policy": incident.policy,
                          "condition": incident.condition, "service": incident.service, "state": state,
                          "bot_url": url, "auth": self._auth_kinds(), "attempts": delivery.attempts,
                          "status": delivery.status, "delivered": 200 <= delivery.status < 300,
                          "error": delivery.error})
        return {"status": delivery.status, "attempts": delivery.attempts, "error": delivery.error,
                "incident_id": incident.incident_id, "payload": payload}

    def _incident(self, spec: Mapping[str, Any]) -> tuple[Incident, State]:
        unknown = set(spec) - _SPEC_KEYS
        if unknown:
            raise NotificationError(400, f"unknown field(s) {', '.join(sorted(unknown))}; known: "
                                         f"{', '.join(sorted(_SPEC_KEYS))}")
        policy, condition, service = (_required_text(spec, key) for key in ("policy", "condition", "service"))
        state = spec.get("state")
        if state not in ("open", "closed"):
            raise NotificationError(400, 'state must be "open" or "closed"')
        revision = self.revision_of(service)
        if revision is None:
            raise NotificationError(404, f"no service named {service!r} serving traffic")
        incident = self._find(spec.get("incident_id"), policy, condition, service)
        now = int(time.time())
        if state == "open":
            if incident is None:
                incident = Incident(_optional_text(spec, "incident_id") or _incident_id(), policy, condition, service,
                                    revision, _numeric_id(), _numeric_id(), started_at=now)
                self._incidents[incident.incident_id] = incident
            elif incident.state == "closed":
                raise NotificationError(409, f"incident {incident.incident_id} is closed; an alert that fires again "
                                             "opens a new incident")
            return incident, "open"
        if incident is None or incident.state == "closed":
            raise NotificationError(409, f"no open incident of {policy!r}/{condition!r} on {service} to close")
        incident.ended_at = now
        return incident, "closed"

    def _find(self, incident_id: Any, policy: str, condition: str, service: str) -> Incident | None:
        """The incident named, or else the open one of this condition on this service (Google keeps one open
        incident per condition and time series, and notifies again for it)."""
        if incident_id is not None:
            if not isinstance(incident_id, str) or not incident_id:
                raise NotificationError(400, "incident_id must be a non-empty string")
            found = self._incidents.get(incident_id)
            if found is not None and (found.policy, found.condition, found.service) != (policy, condition, service):
                raise NotificationError(409, f"incident {incident_id} is of {found.policy!r}/{found.condition!r} "
                                             f"on {found.service}")
            return found
        return next((i for i in reversed(self._incidents.values())
                     if (i.policy, i.condition, i.service) == (policy, condition, service) and i.state == "open"), None)

    def payload(self, incident: Incident, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Schema version 1.2, field for field as Google's example lists them."""
        project = self.project
        labels = {"project_id": project, "service_name": incident.service, "revision_name": incident.revision,
                  "location": self.region, "configuration_name": incident.service}
        body: dict[str, Any] = {
            "incident_id": incident.incident_id,
            "scoping_project_id": project,
            "scoping_project_number": int(self.project_number),
            "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/{incident.incident_id}"
                   f"?project={project}",
            "severity": "no severity",
            "started_at": incident.started_at,
            "ended_at": incident.ended_at,
            "state": incident.state,
            "resource_id": "",
            "resource_name": f"{project} {incident.revision}",
            "resource_display_name": incident.revision,
            "resource_type_display_name": "Cloud Run Revision",
            "resource": {"type": RESOURCE_TYPE, "labels": labels},
            "metric": {"type": "run.googleapis.com/request_count", "displayName": "Request Count", "labels": {}},
            "metadata": {"system_labels": {}, "user_labels": {}},
            "policy_name": incident.policy,
            "policy_user_labels": {},
            "condition_name": incident.condition,
            "condition": {"name": f"projects/{project}/alertPolicies/{incident.policy_id}"
                                  f"/conditions/{incident.condition_id}",
                          "displayName": incident.condition},
            "summary": _optional_text(spec, "summary") or _summary(incident, project),
        }
        documentation = self._documentation(spec.get("documentation"))
        if documentation is not None:
            body["documentation"] = documentation
        for key in ("observed_value", "threshold_value"):
            value = _optional_text(spec, key)
            if value is not None:
                body[key] = value
        return {"incident": body, "version": SCHEMA_VERSION}

    def _documentation(self, given: Any) -> dict[str, Any] | None:
        if given is None:
            return None
        found = {"content": given} if isinstance(given, str) else given
        if not isinstance(found, dict) or set(found) - {"content", "mime_type", "subject"}:
            raise NotificationError(400, "documentation is a string or {\"content\", \"mime_type\", \"subject\"}")
        content, mime_type, subject = found.get("content"), found.get("mime_type", MIME_TYPE), found.get("subject")
        limits = self.limits
        if not isinstance(content, str) or len(content) > limits.documentation_max_chars \
                or len(content.encode("utf-8")) > limits.documentation_max_bytes:
            raise NotificationError(400, f"documentation.content is a string of at most "
                                         f"{limits.documentation_max_chars} characters and "
                                         f"{limits.documentation_max_bytes} bytes")
        if mime_type != MIME_TYPE:
            raise NotificationError(400, f"documentation.mime_type must be {MIME_TYPE!r}, the only one Google takes")
        documentation = {"content": content, "mime_type": mime_type}
        if subject is not None:
            if not isinstance(subject, str) or len(subject) > limits.subject_max_chars:
                raise NotificationError(400, f"documentation.subject is at most {limits.subject_max_chars} characters")
            documentation["subject"] = subject
        return documentation

    def _auth_kinds(self) -> list[str]:
        return [kind for kind, on in (("token", self.limits.token_auth), ("basic", self.limits.basic_auth)) if on]

    async def _deliver(self, bot_url: str, payload: dict[str, Any]) -> Delivery:
        target = f"{bot_url}{PATH}"
        if self.limits.token_auth:
            target += "?" + urlencode({"auth_token": self.token})
        body = json.dumps(payload).encode()
        basic = _basic(BASIC_USERNAME, self.token) if self.limits.basic_auth else None
        timeout = aiohttp.ClientTimeout(total=self.limits.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                first = basic if self.limits.preemptive_basic else None
                status, challenge = await _post(session, target, body, first)
                if basic is None or first is not None or status != 401:
                    return Delivery(status, 1, None)
                if not challenge.lower().startswith("basic"):
                    return Delivery(status, 1, "401 without WWW-Authenticate: Basic, so no credentials were sent")
                status, _ = await _post(session, target, body, basic)
                return Delivery(status, 2, None)
            except TimeoutError:
                return Delivery(0, 1, f"no answer within {self.limits.timeout_s:g} s")
            except aiohttp.ClientError as exc:
                return Delivery(0, 1, f"unreachable: {type(exc).__name__}")


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, authorization: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status, response.headers.get("WWW-Authenticate", "")


def _basic(user: str, password: str) -> str:
    """RFC 7617: `Basic` and the base64 of `user:password` in UTF-8."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _required_text(spec: Mapping[str, Any], key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise NotificationError(400, f"{key} is required: a non-empty string")
    return value


def _optional_text(spec: Mapping[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is not None and not isinstance(value, str):
        raise NotificationError(400, f"{key} must be a string")
    return value


def _summary(incident: Incident, project: str) -> str:
    if incident.state == "open":
        return f"{incident.condition} for {project} {incident.revision} is firing."
    return f"{incident.condition} for {project} {incident.revision} returned to normal."


def _incident_id() -> str:
    """Google's ids look like `0.opqiw61fsv7p` (the schema's example)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "0." + "".join(secrets.choice(alphabet) for _ in range(12))


def _numeric_id() -> str:
    """Alerting policies and conditions are named by long decimal ids (`alertPolicies/1234567890123456789`)."""
    return str(secrets.randbelow(9 * 10**18) + 10**18)
