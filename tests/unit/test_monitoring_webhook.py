"""Cloud Monitoring's webhook notifications as the bot reads them: schema version 1.2
(https://cloud.google.com/monitoring/support/notification-options#webhooks) parsed strictly, and only the
channel's secret admitted, from the query string (`?auth_token=...`) or a Basic password, as Google sends them
(https://docs.cloud.google.com/error-reporting/docs/notifications, "Token authentication", "Basic authentication")."""

from __future__ import annotations

import base64
import copy
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.adapters.monitoring_webhook import MalformedAlert, WebhookAuth, basic_password, parse_alert
from bot.domain.monitoring_alert import Documentation

GOOGLE_EXAMPLE: dict[str, Any] = {
    "incident": {
        "incident_id": "0.opqiw61fsv7p",
        "scoping_project_id": "internal-project",
        "scoping_project_number": 12345,
        "url": "https://console.cloud.google.com/monitoring/alerting/incidents/0.lxfiw61fsv7p?project=internal-project",
        "severity": "no severity",
        "started_at": 1577840461,
        "ended_at": 1577877071,
        "state": "closed",
        "resource_id": "11223344",
        "resource_name": "internal-project gke-cluster-1-default-pool-e2df4cbd-dgp3",
        "resource_display_name": "gke-cluster-1-default-pool-e2df4cbd-dgp3",
        "resource_type_display_name": "VM Instance",
        "resource": {"type": "gce_instance",
                     "labels": {"instance_id": "11223344", "project_id": "internal-project", "zone": "us-central1-c"}},
        "metric": {"type": "compute.googleapis.com/instance/cpu/utilization", "displayName": "CPU utilization",
                   "labels": {"instance_name": "the name of the VM instance"}},
        "metadata": {"system_labels": {"labelkey": "labelvalue"}, "user_labels": {"labelkey": "labelvalue"}},
        "policy_name": "Monitor-Project-Cluster",
        "policy_user_labels": {"user-label-1": "important label", "user-label-2": "another label"},
        "condition_name": "VM Instance - CPU utilization [MAX]",
        "threshold_value": "0.9",
        "observed_value": "0.835",
        "condition": {"name": "projects/internal-project/alertPolicies/1234567890123456789"
                              "/conditions/1234567890123456789",
                      "displayName": "VM Instance - CPU utilization [MAX]"},
        "documentation": {"content": "TEST ALERT", "mime_type": "text/markdown", "subject": "ALERT - No severity",
                          "links": [{"displayName": "Playbook", "url": "https://example.com/playbook"}]},
        "summary": "CPU utilization for internal-project gke-cluster-1-16-default-pool-e2df4cbd-dgp3 returned to "
                   "normal with a value of 0.835.",
    },
    "version": "1.2",
}
"""Google's own example of a version 1.2 notification (the page above), links shortened."""


def cloud_run(**incident: Any) -> dict[str, Any]:
    """Google's example, moved to a Cloud Run revision and opened (ended_at is null while open)."""
    payload = copy.deepcopy(GOOGLE_EXAMPLE)
    payload["incident"].update({
        "state": "open", "ended_at": None,
        "resource": {"type": "cloud_run_revision", "labels": {
            "project_id": "internal-project", "service_name": "prediction-worker",
            "revision_name": "prediction-worker-00002-abc", "location": "us-west2",
            "configuration_name": "prediction-worker"}},
        **incident})
    return payload


def encoded(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def test_googles_example_reads_as_a_closed_incident_on_no_cloud_run_service() -> None:
    alert = parse_alert(encoded(GOOGLE_EXAMPLE))
    assert (alert.incident_id, alert.state, alert.service) == ("0.opqiw61fsv7p", "closed", None)
    assert (alert.policy, alert.condition) == ("Monitor-Project-Cluster", "VM Instance - CPU utilization [MAX]")
    assert alert.started_at == datetime(2020, 1, 1, 1, 1, 1, tzinfo=UTC)
    assert alert.ended_at == datetime.fromtimestamp(1577877071, UTC)
    assert alert.documentation == Documentation("TEST ALERT", "text/markdown", "ALERT - No severity")
    assert alert.url.startswith("https://console.cloud.google.com/monitoring/alerting/incidents/")


def test_an_open_incident_on_a_cloud_run_revision_names_its_service() -> None:
    alert = parse_alert(encoded(cloud_run(documentation=None)))
    assert (alert.state, alert.service, alert.ended_at, alert.documentation) == (
        "open", "prediction-worker", None, None)


def test_what_the_policys_author_wrote_is_escaped_for_slack() -> None:
    """Name, condition, summary and documentation reach Slack; a `<!here>` in them must not page a channel
    (https://api.slack.com/reference/surfaces/formatting#escaping). The ids, the URL and the service stay as sent."""
    alert = parse_alert(encoded(cloud_run(
        policy_name="5xx <!channel>", condition_name="rate > 1% & rising", summary="<@U07ONCALL01> is paged",
        documentation={"content": "<!here> roll back", "mime_type": "text/markdown", "subject": "<!everyone>"})))
    assert (alert.policy, alert.condition, alert.summary) == (
        "5xx &lt;!channel&gt;", "rate &gt; 1% &amp; rising", "&lt;@U07ONCALL01&gt; is paged")
    assert alert.documentation == Documentation("&lt;!here&gt; roll back", "text/markdown", "&lt;!everyone&gt;")
    assert (alert.incident_id, alert.service) == ("0.opqiw61fsv7p", "prediction-worker")


def test_fields_google_adds_later_are_ignored() -> None:
    payload = cloud_run(apigee_url="https://example.com", log_match={"any": "thing"})
    assert parse_alert(encoded(payload)).incident_id == "0.opqiw61fsv7p"


def _without(key: str) -> dict[str, Any]:
    payload = cloud_run()
    del payload["incident"][key]
    return payload


MALFORMED: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"incident=open", "not JSON"),
    "not UTF-8": (b"\xff\xfe{", "not JSON"),
    "an array": (b"[]", "not a JSON object"),
    "another schema version": (encoded({**cloud_run(), "version": "1.1"}), "version must be '1.2'"),
    "no version": (encoded({"incident": cloud_run()["incident"]}), "version"),
    "no incident": (encoded({"version": "1.2"}), "incident must be an object"),
    "a state in capitals": (encoded(cloud_run(state="OPEN")), "incident.state"),
    "an unknown state": (encoded(cloud_run(state="acknowledged")), "incident.state"),
    "started_at as text": (encoded(cloud_run(started_at="2020-01-01T00:00:00Z")), "incident.started_at"),
    "started_at true": (encoded(cloud_run(started_at=True)), "incident.started_at"),
    "started_at negative": (encoded(cloud_run(started_at=-1)), "incident.started_at"),
    "started_at beyond any calendar": (encoded(cloud_run(started_at=10**20)), "incident.started_at"),
    "no started_at": (encoded(_without("started_at")), "incident.started_at"),
    "closed without ended_at": (encoded(cloud_run(state="closed")), "incident.ended_at"),
    "an empty incident_id": (encoded(cloud_run(incident_id="")), "incident.incident_id"),
    "no policy_name": (encoded(_without("policy_name")), "incident.policy_name"),
    "no condition_name": (encoded(_without("condition_name")), "incident.condition_name"),
    "no summary": (encoded(_without("summary")), "incident.summary"),
    "no url": (encoded(_without("url")), "incident.url"),
    "a Cloud Run revision without its service": (
        encoded(cloud_run(resource={"type": "cloud_run_revision", "labels": {"revision_name": "r"}})),
        "incident.resource.labels.service_name"),
    "a resource that is not an object": (encoded(cloud_run(resource="cloud_run_revision")), "incident.resource"),
    "documentation as text": (encoded(cloud_run(documentation="runbook")), "incident.documentation"),
    "documentation without mime_type": (encoded(cloud_run(documentation={"content": "x"})),
                                        "incident.documentation.mime_type"),
    "a subject that is not text": (encoded(cloud_run(documentation={"content": "x", "mime_type": "text/markdown",
                                                                    "subject": 3})),
                                   "incident.documentation.subject"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_notification_is_refused_naming_the_field(name: str) -> None:
    body, field = MALFORMED[name]
    with pytest.raises(MalformedAlert, match=field.replace(".", r"\.").replace("[", r"\[")):
        parse_alert(body)


def test_a_refusal_never_repeats_the_value_it_refuses() -> None:
    secret = secrets.token_hex(16)
    with pytest.raises(MalformedAlert) as refused:
        parse_alert(encoded(cloud_run(state=secret)))
    assert secret not in str(refused.value)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def token() -> str:
    return secrets.token_urlsafe(32)


def test_the_token_in_the_query_string_is_admitted(token: str) -> None:
    assert WebhookAuth(token).admits([token], None)


def test_the_token_as_basic_password_is_admitted_whatever_the_username(token: str) -> None:
    assert WebhookAuth(token).admits([], basic("cloud-monitoring", token))
    assert WebhookAuth(token).admits([], basic("", token))
    assert WebhookAuth(token).admits([], basic("anyone", token).replace("Basic", "basic"))


@pytest.mark.parametrize("case", ["nothing", "a wrong token", "one character changed", "a prefix", "a longer token",
                                  "two tokens", "a wrong password", "the token as username", "a bearer token",
                                  "broken base64", "no colon"])
def test_anything_but_the_secret_is_refused(token: str, case: str) -> None:
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    query, authorization = {
        "nothing": ([], None),
        "a wrong token": ([secrets.token_urlsafe(32)], None),
        "one character changed": ([changed], None),
        "a prefix": ([token[:16]], None),
        "a longer token": ([token + "x"], None),
        "two tokens": ([token, token], None),
        "a wrong password": ([], basic("cloud-monitoring", changed)),
        "the token as username": ([], basic(token, "")),
        "a bearer token": ([], f"Bearer {token}"),
        "broken base64": ([], "Basic " + token),
        "no colon": ([], "Basic " + base64.b64encode(token.encode()).decode()),
    }[case]
    assert not WebhookAuth(token).admits(query, authorization)


def test_basic_password_reads_rfc_7617_credentials() -> None:
    assert basic_password(basic("user", "pa:ss")) == "pa:ss"
    assert basic_password(basic("user", "")) == ""
    assert basic_password(None) is None


def test_the_secret_is_not_in_the_holders_repr(token: str) -> None:
    assert token not in repr(WebhookAuth(token))
