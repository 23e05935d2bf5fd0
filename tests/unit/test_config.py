"""chatops.yaml: every mistake is reported with its field path and what to write instead."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_config, parse_config, summary

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "chatops.example.yaml").read_text()


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as failed:
        parse_config(text)
    return {p.path: p.message for p in failed.value.problems}


def test_the_example_fleet_loads_with_the_seeds_services() -> None:
    config = load_config(ROOT / "chatops.example.yaml")
    assert (config.project, config.region) == ("nba-props-platform", "us-west2")
    assert set(config.services) == {
        "prediction-coordinator", "prediction-worker", "mlb-prediction-worker", "nba-admin-dashboard",
        "nba-phase3-analytics-processors", "nba-phase4-precompute-processors", "nba-grading-service"}
    assert config.secrets.slack_bot_token == "slack-bot-token"
    assert config.canary_for("prediction-worker").window == 120.0
    assert config.canary_for("prediction-worker").stages == (5, 50, 100)
    assert config.canary_for("nba-phase4-precompute-processors").stages == (10, 50, 100)
    assert config.canary_for("nba-grading-service").strategy == "direct"
    assert config.alert_channel_for("prediction-worker") == "C07PREDICT1"


def test_an_unknown_key_is_named_with_a_suggestion() -> None:
    found = problems(EXAMPLE.replace("    window: 60s", "    windw: 60s"))
    assert "unknown key 'windw'; did you mean 'window'?" in found["defaults.canary.windw"]


def test_stages_must_rise_to_100() -> None:
    found = problems(EXAMPLE.replace("stages: [10, 50, 100]", "stages: [50, 10, 100]"))
    assert "must rise" in found["services.nba-phase4-precompute-processors.canary.stages"]
    found = problems(EXAMPLE.replace("stages: [5, 50, 100]", "stages: [5, 50]"))
    assert "must end at 100" in found["defaults.canary.stages"]


def test_durations_accept_units_and_refuse_words() -> None:
    assert parse_config(EXAMPLE.replace("window: 60s", "window: 1.5m")).defaults.canary.window == 90.0
    found = problems(EXAMPLE.replace("window: 60s", "window: soon"))
    assert "'90s'" in found["defaults.canary.window"]


def test_actions_must_be_known() -> None:
    found = problems(EXAMPLE.replace("may: [health, status, history, incidents, digest, stats, timeline]",
                                     "may: [health, histroy]"))
    assert "did you mean 'history'" in found["roles.everyone.may"]


def test_references_to_channels_and_services_must_resolve() -> None:
    found = problems(EXAMPLE.replace("alert_channel: predictions", "alert_channel: prediction", 1)
                     .replace("services: [prediction-coordinator,", "services: [prediction-cordinator,"))
    assert "did you mean 'predictions'" in found["services.prediction-coordinator.alert_channel"]
    assert "did you mean 'prediction-coordinator'" in found["digests.1.services"]


def test_every_problem_is_reported_not_just_the_first() -> None:
    found = problems(EXAMPLE.replace("project: nba-props-platform", "project: NBA")
                     .replace("C07ALERTS01", '"#alerts"').replace('"0 8 * * *"', '"0 8 * *"'))
    assert set(found) == {"project", "slack.channels.alerts", "digests.0.cron"}
    assert "Slack channel id" in found["slack.channels.alerts"]


def test_yaml_mistakes_name_the_line() -> None:
    assert "line 2" in problems("project: x\n  bad: [\n")[""]
    assert "appears twice" in problems(EXAMPLE + "\nproject: other\n")[""]


def test_an_image_with_a_tag_is_refused_with_the_fix() -> None:
    found = problems(EXAMPLE.replace("cloud-run/nba-grading-service", "cloud-run/nba-grading-service:latest"))
    assert "cloud-run/nba-grading-service" in found["services.nba-grading-service.image"]


@pytest.mark.parametrize(("text", "code"), [(EXAMPLE, 0), (EXAMPLE.replace("region: us-west2", "region: x"), 2)])
def test_check_config_exits_0_or_2(tmp_path: Path, text: str, code: int) -> None:
    path = tmp_path / "chatops.yaml"
    path.write_text(text)
    (tmp_path / "runbooks").symlink_to(ROOT / "runbooks")
    result = subprocess.run([sys.executable, "-m", "bot", "check-config", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == code
    if code:
        assert "region: 'x' is not valid here; write a Cloud Run region such as us-west2" in result.stderr
    else:
        assert "OK: 7 services" in result.stdout and "7 runbooks, every link resolves" in result.stdout


def test_a_service_name_too_long_for_the_canary_tag_is_refused_with_the_way_out() -> None:
    """A tag and its service name share 46 characters in Cloud Run (PolicyEngine/policyengine-api#3729)."""
    long_name = "nba-phase4-precompute-processors-for-playoffs"  # 45 characters: 6 more for `canary` is too many
    text = EXAMPLE.replace("  nba-grading-service:\n", f"  {long_name}:\n")
    text = text.replace("[nba-grading-service,", f"[{long_name},")  # team grading's services
    text = text.replace("      strategy: direct\n", "      strategy: canary\n")
    found = problems(text)
    assert list(found) == [f"services.{long_name}"] and "strategy: direct" in found[f"services.{long_name}"]


def test_cloud_monitoring_notifications_are_off_unless_the_config_says_so() -> None:
    """Off by default: the webhook's token is then never read, and its path answers 404."""
    without = "\n".join(line for line in EXAMPLE.splitlines() if "monitoring_webhook: true" not in line)
    assert parse_config(without).defaults.alerts.monitoring_webhook is False
    assert "Cloud Monitoring notifications: off" in summary(parse_config(without))
    config = parse_config(EXAMPLE)
    assert config.defaults.alerts.monitoring_webhook is True
    assert config.secrets.monitoring_webhook_token == "chatops-monitoring-webhook-token"
    assert "chatops-monitoring-webhook-token" in summary(config)
    assert "taken at /alerts/monitoring" in summary(config)
    found = problems(EXAMPLE.replace("monitoring_webhook: true", "monitoring_webhook: maybe"))
    assert "true or false" in found["defaults.alerts.monitoring_webhook"]


def test_too_little_traffic_pauses_unless_the_config_says_judge() -> None:
    """Absence is never a pass: a window short of min_requests pauses for a person by default."""
    without = "\n".join(line for line in EXAMPLE.splitlines() if "then: pause" not in line)
    assert parse_config(without).canary_for("prediction-worker").insufficient_traffic.then == "pause"
    judging = parse_config(EXAMPLE.replace("then: pause", "then: judge"))
    assert judging.canary_for("prediction-worker").insufficient_traffic.then == "judge"


@pytest.mark.parametrize("field, value", [
    ("  slack_bot_token: slack-bot-token\n", "  slack_bot_token: xoxb-{n}-{n}-abcdefghijklmnop\n"),
    ("  slack_signing_secret: slack-signing-secret\n", "  slack_signing_secret: {hex}\n"),
])
def test_a_config_holding_a_literal_token_or_signing_secret_is_refused_without_echoing_it(
        field: str, value: str) -> None:
    secret_line = value.format(n=secrets.randbelow(10**12), hex=secrets.token_hex(16))
    found = problems(EXAMPLE.replace(field, secret_line))
    (path,) = found
    assert path.startswith("secrets.") and "store it in Secret Manager" in found[path]
    assert secret_line.split(": ")[1].strip() not in found[path]


def test_teams_load_and_name_the_groups_whose_members_are_read_from_slack() -> None:
    config = parse_config(EXAMPLE)
    assert config.teams["grading"].services == ("nba-grading-service", "nba-phase*")
    assert config.teams["grading"].role == "deployer"
    assert config.usergroup_ids() == {"S07SREONCAL", "S07GRADING1", "S07MODELS01"}


@pytest.mark.parametrize("before, after, path, expected", [
    ("    role: deployer\n  predictions:", "    role: deployr\n  predictions:", "teams.grading.role",
     "unknown role 'deployr'; did you mean 'deployer'? (known: deployer, everyone, lead)"),
    ('"nba-phase*"]', '"nba-phase9*"]', "teams.grading.services",
     "'nba-phase9*' matches no service; write a service name or a glob such as 'nba-phase*'"),
    ("group: S07GRADING1", "group: U07GRADER01", "teams.grading.group",
     "'U07GRADER01' is not valid here; write a Slack user-group id (S...)"),
])
def test_a_team_with_an_unknown_role_a_glob_matching_nothing_or_a_bad_group_is_refused(
        before: str, after: str, path: str, expected: str) -> None:
    assert EXAMPLE.count(before) == 1
    found = problems(EXAMPLE.replace(before, after))
    assert list(found) == [path] and found[path].startswith(expected)


def test_the_static_usergroups_map_is_refused_with_what_replaced_it() -> None:
    found = problems(EXAMPLE.replace("  deploy_channel: deploys\n",
                                     "  deploy_channel: deploys\n  usergroups:\n    S07SREONCAL: [U07ONCALL01]\n"))
    assert list(found) == ["slack"]
    assert "read from Slack" in found["slack"] and "delete `slack.usergroups`" in found["slack"]


def test_a_service_can_ask_for_a_second_persons_approval_from_a_role_or_a_user_group() -> None:
    config = load_config(ROOT / "chatops.example.yaml")
    rule = config.approval_for("prediction-worker")
    assert rule is not None and (rule.approvers, rule.min, rule.expires) == ("deployer", 1, 4 * 3600.0)
    assert config.approval_for("prediction-coordinator") is None
    grouped = parse_config(EXAMPLE.replace("approvers: deployer", "approvers: S07SREONCAL"))
    assert grouped.approval_for("prediction-worker").approvers == "S07SREONCAL"  # type: ignore[union-attr]
    waived = parse_config(EXAMPLE.replace("      required: true\n      approvers: deployer",
                                          "      required: false\n      approvers: deployer"))
    assert waived.approval_for("prediction-worker") is None


def test_an_approval_by_an_unknown_role_names_the_field_and_the_fix() -> None:
    found = problems(EXAMPLE.replace("approvers: deployer", "approvers: deployers"))
    message = found["services.prediction-worker.approval.approvers"]
    assert "unknown role 'deployers'; did you mean 'deployer'?" in message
    assert "(known: deployer, everyone, lead): name a role under `roles:` or a Slack user group id (S..." in message
    assert "greater than or equal to 1" in problems(EXAMPLE.replace("      min: 1\n", "      min: 0\n"))[
        "services.prediction-worker.approval.min"]
