"""Cloud Monitoring's webhook notifications: who may send one, and what it says.

Google documents two ways for the webhook channel to prove itself
(https://docs.cloud.google.com/error-reporting/docs/notifications, "Basic authentication" and "Token
authentication", the Monitoring webhook channels Error Reporting notifies through):
- token: "Token Authentication requires a query string parameter in the endpoint URL and a key that the server
  expects to be secret between itself and Monitoring", as in `...?auth_token=1234-abcd`;
- basic: "Cloud Monitoring requires your server to return a 401 response with the proper WWW-Authenticate
  header", after which it sends the channel's username and password (RFC 7617).
Either carries the one secret the bot holds; the Basic username is not a secret and is not checked.

The payload is schema version 1.2 (https://cloud.google.com/monitoring/support/notification-options#webhooks).
Fields the bot reads are checked strictly; fields it does not read are ignored, because Google adds fields to
the schema (`severity`, `policy_user_labels`, documentation `links`) without changing its version. What a
policy's author wrote (its name, condition, summary and documentation) is bound for Slack, so it is escaped for
mrkdwn here: a `<!here>` in a policy's documentation must not page a channel.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bot.domain.monitoring_alert import Documentation, IncidentState, MonitoringAlert
from bot.render.mrkdwn import escape

PATH = "/alerts/monitoring"
TOKEN_PARAMETER = "auth_token"
SCHEMA_VERSION = "1.2"
MAX_BODY_BYTES = 256 * 1024
"""Far above a real notification (a policy's documentation is at most 10,240 bytes,
https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies#documentation), far below harm."""

CHALLENGE = {"WWW-Authenticate": 'Basic realm="chatops", charset="UTF-8"'}
"""RFC 7235 section 3.1: a 401 "MUST send a WWW-Authenticate header field"; Monitoring waits for it before it
sends Basic credentials (above)."""

_STATES: tuple[IncidentState, ...] = ("open", "closed")
_CLOUD_RUN = "cloud_run_revision"


class MalformedAlert(ValueError):
    """What is wrong with a notification, naming the field and never repeating its value."""


class WebhookAuth:
    """Holds the channel's secret and nothing else; comparisons take the same time whatever the guess."""

    def __init__(self, token: str) -> None:
        self._token = token.encode("utf-8")

    def __repr__(self) -> str:
        return "WebhookAuth(...)"

    def admits(self, query_tokens: Sequence[str], authorization: str | None) -> bool:
        """`query_tokens`: every `auth_token` in the query string. Two of them are refused: which one counts would
        depend on the framework, and Monitoring sends the URL it was configured with, which has one."""
        if len(query_tokens) > 1:
            return False
        offered = [*query_tokens]
        password = basic_password(authorization)
        if password is not None:
            offered.append(password)
        matches = [hmac.compare_digest(candidate.encode("utf-8"), self._token) for candidate in offered]
        return any(matches)


def basic_password(authorization: str | None) -> str | None:
    """The password of an `Authorization: Basic` header (RFC 7617: the scheme is case-insensitive, the
    credentials base64 of `user:password`), or None if the header is absent or not well-formed."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


def parse_alert(body: bytes) -> MonitoringAlert:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedAlert("the body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedAlert("the body is not a JSON object")
    if data.get("version") != SCHEMA_VERSION:
        raise MalformedAlert(f"version must be {SCHEMA_VERSION!r}")
    incident = _object(data, "incident")
    state = _text(incident, "state")
    if state not in _STATES:
        raise MalformedAlert("incident.state must be 'open' or 'closed'")
    ended_at = _optional_epoch(incident, "ended_at")
    if state == "closed" and ended_at is None:
        raise MalformedAlert("a closed incident needs incident.ended_at")
    return MonitoringAlert(
        incident_id=_text(incident, "incident_id"),
        policy=escape(_text(incident, "policy_name")),
        condition=escape(_text(incident, "condition_name")),
        service=_service(incident),
        state="open" if state == "open" else "closed",
        started_at=_epoch(incident, "started_at"),
        ended_at=ended_at,
        summary=escape(_text(incident, "summary", empty=True)),
        documentation=_documentation(incident),
        url=_text(incident, "url"),
    )


def _service(incident: Mapping[str, Any]) -> str | None:
    resource = incident.get("resource")
    if resource is None:
        return None
    if not isinstance(resource, dict):
        raise MalformedAlert("incident.resource must be an object")
    if resource.get("type") != _CLOUD_RUN:
        return None
    return _text(_object(resource, "labels", "incident.resource"), "service_name", "incident.resource.labels")


def _documentation(incident: Mapping[str, Any]) -> Documentation | None:
    found = incident.get("documentation")
    if found is None:
        return None
    if not isinstance(found, dict):
        raise MalformedAlert("incident.documentation must be an object")
    where = "incident.documentation"
    subject = found.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise MalformedAlert(f"{where}.subject must be a string")
    return Documentation(content=escape(_text(found, "content", where, empty=True)),
                         mime_type=_text(found, "mime_type", where),
                         subject=None if subject is None else escape(subject))


def _object(parent: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise MalformedAlert(f"{_name(where, key)} must be an object")
    return value


def _text(parent: Mapping[str, Any], key: str, where: str = "incident", *, empty: bool = False) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or (not empty and not value):
        raise MalformedAlert(f"{_name(where, key)} must be a{'' if empty else ' non-empty'} string")
    return value


def _epoch(parent: Mapping[str, Any], key: str) -> datetime:
    """Whole seconds since the epoch, as the schema's example shows (`"started_at": 1577840461`)."""
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedAlert(f"incident.{key} must be whole seconds since the epoch")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedAlert(f"incident.{key} is out of range") from None


def _optional_epoch(parent: Mapping[str, Any], key: str) -> datetime | None:
    """`ended_at` is null while the incident is open ("this will be null when it is an open message",
    https://support.stackdriver.com/customer/en/portal/articles/1491775-configuring-webhooks)."""
    return None if parent.get(key) is None else _epoch(parent, key)


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
