"""The schema of chatops.yaml.

Every field an operator can get wrong is checked here, at load time, so that a mistake is reported
once with its field path and the fix, instead of surfacing as a failed deploy at 3 a.m.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
import re
import zoneinfo
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.domain.freeze import Freeze
from bot.domain.rollout import TAG

ACTIONS = ("deploy", "promote", "rollback", "pause", "resume", "health", "status", "history", "ack", "silence",
           "incidents", "digest", "stats", "lock", "override", "queue", "timeline")
"""Everything a role can be allowed to do; read-only commands are actions too, so a workspace can
keep even `/health` to its own people."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _parse_duration(value: Any) -> Any:
    """Accept 60, 60.0, '60s', '1.5m', '500ms', '1h' and return seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 60, '90s', '5m' or '500ms'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"expected a duration such as 60, '90s', '5m' or '500ms', got {value!r}")


Seconds = Annotated[float, BeforeValidator(_parse_duration), Field(gt=0)]
SecondsOrNone = Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)]

ChannelId = Annotated[str, Field(pattern=r"^[CG][A-Z0-9]{8,}$")]
MemberId = Annotated[str, Field(pattern=r"^([UWS][A-Z0-9]{8,}|\*)$")]
UserGroupId = Annotated[str, Field(pattern=r"^S[A-Z0-9]{8,}$")]
ServiceName = Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")]
"""Cloud Run's service id: fewer than 50 characters (https://cloud.google.com/run/docs/reference/rest/v2/
projects.locations.services/create, serviceId)."""

TAG_AND_SERVICE_MAX = 46
"""A traffic tag and its service's name share 46 characters: Cloud Run builds `<tag>---<service>-<hash>` into a
63-character DNS label (PolicyEngine/policyengine-api#3729 shows the refusal)."""


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt key silently ignored is a policy silently not applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretNames(Strict):
    slack_bot_token: str = "slack-bot-token"
    slack_signing_secret: str = "slack-signing-secret"
    slack_app_token: str = Field(default="slack-app-token",
                                 description="the app-level token (xapp-, connections:write) Socket Mode connects "
                                             "with; read only by `chatops serve --socket-mode`")
    runbook_link_key: str = Field(default="chatops-runbook-link-key",
                                  description="signs runbook links; not read when runbook_base_url is set")
    monitoring_webhook_token: str = Field(
        default="chatops-monitoring-webhook-token",
        description="the token (or Basic password) of Cloud Monitoring's webhook channel; read only when "
                    "defaults.alerts.monitoring_webhook is true")


class HealthPaths(Strict):
    liveness: str = "/health"
    readiness: str = "/ready"
    deep: str = "/health/deep"
    timeout: Seconds = 2.0

    @field_validator("liveness", "readiness", "deep")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"a path must start with '/', e.g. '/{value}'")
        return value


class LogCheck(Strict):
    """A post-deploy validation read from Cloud Logging, like the seeds' deploy-script checks."""

    name: str
    filter: str
    at_least: int | None = Field(default=None, ge=0)
    at_most: int | None = Field(default=None, ge=0)
    runbook_step: str | None = None

    @model_validator(mode="after")
    def _bounded(self) -> LogCheck:
        if self.at_least is None and self.at_most is None:
            raise ValueError("a log check needs at_least or at_most, e.g. at_most: 0")
        return self


class HttpCheck(Strict):
    """A post-deploy validation that calls the candidate's tag URL."""

    name: str
    path: str
    expect_status: int = Field(default=200, ge=100, le=599)
    runbook_step: str | None = None


DEFAULT_ERROR_FILTER = ('severity>=ERROR OR (log_id("run.googleapis.com/stderr") AND '
                        'textPayload=~"^(ERROR|CRITICAL|Traceback)")')
"""Error lines as Cloud Run records them: a JSON line carries its own severity, but a plain-text line gets none
(DEFAULT), stderr included (https://cloud.google.com/logging/docs/structured-logging), so a service that prints
`ERROR ...` or a traceback is only seen by what the line says."""


class InsufficientTraffic(Strict):
    """What a window with fewer than `min_requests` requests (and no more failures than they allow) leads to.

    `pause` by default: too little evidence is never a pass on its own. `judge` passes the stage on probes and
    logs alone, and the thread says so."""

    extend: int = Field(default=2, ge=0, le=10, description="extend the window this many times first")
    then: Literal["judge", "pause"] = Field(default="pause", description="pause for a person, or judge on probes "
                                                                         "and logs alone")


class CanaryPolicy(Strict):
    strategy: Literal["canary", "direct"] = "canary"
    stages: tuple[int, ...] = (5, 50, 100)
    window: Seconds = 60.0
    min_requests: int = Field(default=20, ge=0)
    min_success_rate: float = Field(default=99.0, ge=0, le=100)
    max_p99_ms: float = Field(default=500.0, gt=0)
    max_error_logs: int = Field(default=0, ge=0)
    progress_deadline: Seconds = 600.0
    insufficient_traffic: InsufficientTraffic = InsufficientTraffic()
    watch: SecondsOrNone = Field(default=600.0, description="after promotion, watch the service this long for a "
                                                            "degradation against the pre-deploy baseline (0: no)")
    error_filter: str = Field(default=DEFAULT_ERROR_FILTER, min_length=1,
                              description="a Logging filter: which of the candidate's entries are error lines")
    log_checks: tuple[LogCheck, ...] = ()
    http_checks: tuple[HttpCheck, ...] = ()

    @model_validator(mode="after")
    def _deadline_outlasts_the_windows(self) -> CanaryPolicy:
        longest = self.window * (1 + self.insufficient_traffic.extend)
        if self.progress_deadline <= longest:
            raise ValueError(f"progress_deadline ({self.progress_deadline:g} s) must be longer than a window with "
                             f"its extensions ({self.window:g} s x {1 + self.insufficient_traffic.extend} = "
                             f"{longest:g} s), or every extended stage would fail")
        return self

    @field_validator("stages")
    @classmethod
    def _rising_to_100(cls, stages: tuple[int, ...]) -> tuple[int, ...]:
        if not stages or stages[-1] != 100:
            raise ValueError(f"stages must end at 100, e.g. [5, 50, 100]; got {list(stages)}")
        if any(not 0 < s <= 100 for s in stages):
            raise ValueError(f"each stage is a percent between 1 and 100; got {list(stages)}")
        if any(b <= a for a, b in itertools.pairwise(stages)):
            raise ValueError(f"stages must rise, e.g. [5, 50, 100]; got {list(stages)}")
        return stages


class CanaryOverride(Strict):
    """Per-service changes to the default canary policy; unset fields inherit."""

    strategy: Literal["canary", "direct"] | None = None
    stages: tuple[int, ...] | None = None
    window: Seconds | None = None
    min_requests: int | None = Field(default=None, ge=0)
    min_success_rate: float | None = Field(default=None, ge=0, le=100)
    max_p99_ms: float | None = Field(default=None, gt=0)
    max_error_logs: int | None = Field(default=None, ge=0)
    progress_deadline: Seconds | None = None
    insufficient_traffic: InsufficientTraffic | None = None
    watch: SecondsOrNone | None = None
    error_filter: str | None = None
    log_checks: tuple[LogCheck, ...] | None = None
    http_checks: tuple[HttpCheck, ...] | None = None


class AlertPolicy(Strict):
    """When sweeps open and resolve incidents, and who hears of them."""

    open_after: int = Field(default=3, ge=1, description="consecutive failed sweeps before an incident opens")
    resolve_after: int = Field(default=2, ge=1, description="consecutive passing sweeps before it resolves")
    interval: Seconds = Field(default=60.0, description="how often every service is swept")
    cooldown: Seconds = Field(default=900.0, description="a failure this soon after resolving reopens the thread")
    escalate_after: Seconds = Field(default=900.0, description="unacknowledged this long: mention the next group")
    oncall: tuple[MemberId, ...] = Field(default=(), description="mentioned when an incident opens")
    escalation: tuple[MemberId, ...] = Field(default=(), description="mentioned in turn while unacknowledged")
    monitoring_webhook: bool = Field(
        default=False, description="take Cloud Monitoring's webhook notifications at /alerts/monitoring; the "
                                   "channel's token is then read from Secret Manager at start")


class EngineSettings(Strict):
    """How often the reconciler looks at rollouts, how long an instance's claim on one lasts, and how it reads
    Google: every call ends well inside the lease, and Cloud Logging reads stay within a share of the quota."""

    interval: Seconds = 2.0
    lease: Seconds = 30.0
    google_timeout: Seconds = Field(default=10.0, description="the longest one Google call may take")
    retry_deadline: Seconds = Field(default=120.0, description="how long a write Cloud Run does not take is "
                                                               "retried before a rollout pauses")
    logging_reads_per_minute: int = Field(default=30, ge=1, description="the bot's share of the project's "
                                                                        "Cloud Logging read quota (60 a minute)")
    log_lag: Seconds = Field(default=5.0, description="how long Cloud Logging takes to show an entry; a window "
                                                      "is judged once its logs are this old")
    metrics_delay: Seconds = Field(default=180.0, description="how late Cloud Run's metrics become visible in "
                                                              "Cloud Monitoring")

    @model_validator(mode="after")
    def _calls_end_inside_the_lease(self) -> EngineSettings:
        if 2 * self.google_timeout >= self.lease:
            raise ValueError(f"google_timeout ({self.google_timeout:g} s) must be under half the lease "
                             f"({self.lease:g} s): a write and its wait must end before another instance may "
                             "take the rollout over")
        return self


class Defaults(Strict):
    probe_concurrency: int = Field(default=100, ge=1, le=1000)
    health: HealthPaths = HealthPaths()
    canary: CanaryPolicy = CanaryPolicy()
    alerts: AlertPolicy = AlertPolicy()


_REPOSITORY = re.compile(r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._*-]+)+$")


class Approval(Strict):
    """A second pair of eyes: a /deploy of the service waits until `min` people other than its requester, each a
    member of `approvers` (a role of this config, or a Slack user group id S...), approve it, or until `expires`."""

    required: bool = True
    approvers: str = Field(min_length=1, description="a role name under `roles:`, or a Slack user group id (S...)")
    min: int = Field(default=1, ge=1, le=10, description="approvals needed, each from a different person")
    expires: Seconds = Field(default=4 * 3600.0, description="an unapproved request ends after this long")


class Service(Strict):
    image: str = Field(description="image repository without a tag, e.g. us-west2-docker.pkg.dev/p/r/name")
    repositories: tuple[str, ...] = Field(
        default=(), description="repositories `/deploy image=` may use; `*` matches within one path segment; "
                                "empty: `image` alone")
    description: str = ""
    owners: tuple[MemberId, ...] = ()
    alert_channel: str | None = None
    runbook: str | None = None
    checks: dict[str, str] = Field(
        default_factory=dict, description="health check name -> runbook heading anchor"
    )
    health: HealthPaths | None = None
    canary: CanaryOverride = CanaryOverride()
    approval: Approval | None = Field(default=None, description="a second person approves each /deploy first")

    @field_validator("image")
    @classmethod
    def _untagged(cls, image: str) -> str:
        last = image.rsplit("/", 1)[-1]
        if "@" in image or ":" in last:
            raise ValueError(
                f"give the repository without a tag or digest, e.g. {image.split('@')[0].rsplit(':', 1)[0]}"
            )
        if "/" not in image:
            raise ValueError(f"give the full repository, e.g. us-west2-docker.pkg.dev/PROJECT/REPO/{image}")
        return image

    @field_validator("repositories")
    @classmethod
    def _repository_patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            last = pattern.rsplit("/", 1)[-1]
            if "@" in pattern or ":" in last:
                raise ValueError(f"{pattern!r}: a repository pattern has no tag or digest, e.g. "
                                 "us-west2-docker.pkg.dev/PROJECT/REPO/*")
            if not _REPOSITORY.match(pattern) or pattern.startswith("*"):
                raise ValueError(f"{pattern!r} is not a repository pattern: write registry host/path in lowercase, "
                                 "with `*` for any part of a segment, e.g. us-west2-docker.pkg.dev/PROJECT/REPO/*")
        return patterns

    @property
    def allowed_repositories(self) -> tuple[str, ...]:
        return self.repositories or (self.image,)


class Role(Strict):
    members: tuple[MemberId, ...] = Field(min_length=1)
    may: tuple[str, ...] = Field(min_length=1)
    services: tuple[str, ...] = ("*",)

    @field_validator("may")
    @classmethod
    def _known_actions(cls, may: tuple[str, ...]) -> tuple[str, ...]:
        for action in may:
            if action not in ACTIONS and action != "*":
                raise ValueError(f"unknown action {action!r}{_did_you_mean(action, ACTIONS)}")
        return may


class Digest(Strict):
    name: str
    channel: str
    cron: str
    timezone: str = "UTC"
    services: Literal["all"] | tuple[str, ...] = "all"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        example = "a cron line has 5 fields (minute hour day month weekday), e.g. '0 8 * * 1-5'"
        if len(cron.split()) != 5:
            raise ValueError(f"{example}; got {cron!r}")
        try:
            CronTrigger.from_crontab(cron)
        except ValueError as exc:
            raise ValueError(f"{cron!r} is not a valid cron line ({exc}); {example}") from None
        return cron

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}; write an IANA name such as 'America/Los_Angeles'") from None
        return zone


MAX_FREEZE = 7 * 24 * 3600.0
"""The longest a recurring window may last; a longer freeze is a fixed one (`start` and `end`)."""


class FreezeWindow(Strict):
    """A time when deploys, promotions and stage advances of its services wait, unless someone with the `override`
    action says why: recurring (`cron` and `duration`) or fixed (`start` and `end`), in `timezone`."""

    name: str = Field(min_length=1, max_length=80)
    cron: str | None = Field(default=None, description="each fire time starts a window, e.g. '0 18 * * *'")
    duration: Seconds | None = Field(default=None, le=MAX_FREEZE, description="how long each window lasts, e.g. 4h")
    start: datetime | date | None = Field(default=None, description="a fixed window's start, e.g. 2026-12-24 18:00")
    end: datetime | date | None = Field(default=None, description="a fixed window's end; a date alone is its 00:00")
    timezone: str = "UTC"
    services: Literal["all"] | tuple[str, ...] = "all"
    reason: str = Field(default="", max_length=300)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str | None) -> str | None:
        return None if cron is None else Digest._valid_cron(cron)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        return Digest._known_zone(zone)

    @model_validator(mode="after")
    def _one_kind(self) -> FreezeWindow:
        recurring = "a recurring window takes `cron` and `duration`, e.g. cron: '0 18 * * *' and duration: 4h"
        fixed = "a fixed one takes `start` and `end`, e.g. start: '2026-12-24 18:00' and end: '2026-12-26 00:00'"
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.cron is not None and (self.start is not None or self.end is not None):
            problems.append((("cron",), f"give `cron` or `start`/`end`, not both: {recurring}; {fixed}"))
        elif self.cron is not None and self.duration is None:
            problems.append((("duration",), f"`cron` needs `duration`, how long each window lasts: {recurring}"))
        elif self.cron is None and self.duration is not None:
            problems.append((("cron",), f"`duration` needs `cron`, when each window starts: {recurring}"))
        elif self.cron is None and (self.start is None or self.end is None):
            missing = "end" if self.start is not None else "start"
            problems.append(((missing,), f"this field is required: {fixed}; or {recurring}"))
        elif self.start is not None and self.end is not None and self.moment(self.end) <= self.moment(self.start):
            problems.append((("end",), f"end ({self.end}) must come after start ({self.start})"))
        if problems:
            raise ConfigReferenceError(problems)
        return self

    def moment(self, value: datetime | date) -> datetime:
        """A config time as an aware instant: a date is its 00:00, a time without an offset is in `timezone`."""
        if not isinstance(value, datetime):
            value = datetime.combine(value, time())
        return value if value.tzinfo is not None else value.replace(tzinfo=zoneinfo.ZoneInfo(self.timezone))

    def freeze(self) -> Freeze:
        services = None if self.services == "all" else frozenset(self.services)
        if self.cron is not None:
            return Freeze(self.name, self.timezone, services, self.reason, cron=self.cron,
                          duration=timedelta(seconds=self.duration or 0))
        assert self.start is not None and self.end is not None
        return Freeze(self.name, self.timezone, services, self.reason, start=self.moment(self.start),
                      end=self.moment(self.end))


class Slack(Strict):
    channels: dict[str, ChannelId] = Field(min_length=1, description="short name -> Slack channel id")
    deploy_channel: str

    @model_validator(mode="before")
    @classmethod
    def _no_static_usergroups(cls, data: Any) -> Any:
        if isinstance(data, dict) and "usergroups" in data:
            raise ValueError("`usergroups` is gone: the members of every user group the config names are now read "
                             "from Slack (usergroups.users.list, scope usergroups:read); delete `slack.usergroups`")
        return data


class Team(Strict):
    """A Slack user group whose members get one role's actions on some services only."""

    group: UserGroupId = Field(description="the team's Slack user group; its members are read from Slack")
    services: tuple[str, ...] = Field(min_length=1, description="service names or globs such as 'nba-phase*'")
    role: str = Field(description="a role under `roles:`; its `may` is what the team may do to those services")


class Config(Strict):
    project: str = Field(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    region: str = Field(pattern=r"^[a-z]+-[a-z]+\d$")
    secrets: SecretNames = SecretNames()
    slack: Slack
    defaults: Defaults = Defaults()
    services: dict[ServiceName, Service] = Field(min_length=1)
    roles: dict[str, Role] = Field(min_length=1)
    teams: dict[str, Team] = Field(default_factory=dict)
    digests: tuple[Digest, ...] = ()
    runbook_base_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="a web view of the runbooks directory; links then go there, unsigned, instead of to the bot")
    engine: EngineSettings = EngineSettings()
    freezes: tuple[FreezeWindow, ...] = ()

    @model_validator(mode="after")
    def _references_resolve(self) -> Config:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        channels = self.slack.channels
        if self.slack.deploy_channel not in channels:
            problems.append((("slack", "deploy_channel"), _unknown("channel", self.slack.deploy_channel, channels)))
        for name, service in self.services.items():
            if service.alert_channel is not None and service.alert_channel not in channels:
                problems.append(
                    (("services", name, "alert_channel"), _unknown("channel", service.alert_channel, channels))
                )
            try:
                if self.canary_for(name).strategy == "canary" and len(name) + len(TAG) > TAG_AND_SERVICE_MAX:
                    problems.append((("services", name), (
                        f"Cloud Run allows a tag and its service name {TAG_AND_SERVICE_MAX} characters together, and "
                        f"the canary's tag '{TAG}' leaves {TAG_AND_SERVICE_MAX - len(TAG)} for the name "
                        f"({len(name)} here): deploy it with `canary: {{strategy: direct}}`")))
            except ValidationError as exc:
                for item in exc.errors():
                    loc = ("services", name, "canary", *item["loc"])
                    problems.append((loc, item["msg"].removeprefix("Value error, ")))
        for index, digest in enumerate(self.digests):
            if digest.channel not in channels:
                problems.append((("digests", index, "channel"), _unknown("channel", digest.channel, channels)))
            if digest.services != "all":
                for service_name in digest.services:
                    if service_name not in self.services:
                        problems.append(
                            (("digests", index, "services"), _unknown("service", service_name, self.services))
                        )
        for index, window in enumerate(self.freezes):
            if window.services != "all":
                problems.extend((("freezes", index, "services"), _unknown("service", name, self.services))
                                for name in window.services if name not in self.services)
        for name, service in self.services.items():
            approvers = service.approval.approvers if service.approval else None
            if approvers is not None and approvers not in self.roles and not re.fullmatch(r"S[A-Z0-9]{8,}", approvers):
                problems.append((("services", name, "approval", "approvers"), (
                    f"{_unknown('role', approvers, self.roles)}: name a role under `roles:` or a Slack user group id "
                    "(S..., from the group's profile)")))
        for role_name, role in self.roles.items():
            for service_name in role.services:
                if service_name != "*" and service_name not in self.services:
                    problems.append(
                        (("roles", role_name, "services"), _unknown("service", service_name, self.services))
                    )
        for team_name, team in self.teams.items():
            if team.role not in self.roles:
                problems.append((("teams", team_name, "role"), _unknown("role", team.role, self.roles)))
            for pattern in team.services:
                if not any(fnmatch.fnmatchcase(service_name, pattern) for service_name in self.services):
                    problems.append((("teams", team_name, "services"), _unmatched(pattern, self.services)))
        if problems:
            raise ConfigReferenceError(problems)
        return self

    def usergroup_ids(self) -> frozenset[str]:
        """Every user group whose members decide a permission: role members, teams, and approvers named by group."""
        named = {m for role in self.roles.values() for m in role.members if m.startswith("S")}
        approvers = {s.approval.approvers for s in self.services.values()
                     if s.approval is not None and s.approval.approvers not in self.roles}
        return frozenset(named | approvers | {team.group for team in self.teams.values()})

    def canary_for(self, service: str) -> CanaryPolicy:
        override = self.services[service].canary.model_dump(exclude_none=True)
        return CanaryPolicy.model_validate({**self.defaults.canary.model_dump(), **override})

    def approval_for(self, service: str) -> Approval | None:
        """The service's approval rule when one is required."""
        rule = self.services[service].approval
        return rule if rule is not None and rule.required else None

    def health_for(self, service: str) -> HealthPaths:
        return self.services[service].health or self.defaults.health

    def freeze_windows(self) -> tuple[Freeze, ...]:
        return tuple(window.freeze() for window in self.freezes)

    def alert_channel_for(self, service: str) -> str:
        name = self.services[service].alert_channel or self.slack.deploy_channel
        return self.slack.channels[name]


class ConfigReferenceError(ValueError):
    """Cross-field problems, each with its own path, so they print like schema errors."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unmatched(pattern: str, services: Any) -> str:
    if not any(wildcard in pattern for wildcard in "*?["):
        return _unknown("service", pattern, services)
    listed = ", ".join(sorted(services))
    return f"{pattern!r} matches no service; write a service name or a glob such as 'nba-phase*' (services: {listed})"


def _unknown(kind: str, name: str, known: Any) -> str:
    listed = ", ".join(sorted(known))
    return f"unknown {kind} {name!r}{_did_you_mean(name, known)} (known: {listed})"


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """A config file that cannot be used; carries every problem, not just the first."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{source}: {count}\n" + "\n".join(f"  {p}" for p in problems))


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a config with two `prediction-worker:` entries is a mistake."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            continue  # PyYAML's own construct_mapping below refuses it ("found unhashable key")
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice; keep one", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _path(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc)


_HINTS = {
    "missing": "this field is required",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "float_parsing": "write a number",
    "bool_parsing": "write true or false",
    "dict_type": "write a mapping (key: value lines)",
    "tuple_type": "write a list, e.g. [a, b]",
    "list_type": "write a list, e.g. [a, b]",
    "string_type": "write a string",
}


def _problems_of(error: ValidationError, model: type[BaseModel], data: Any) -> Iterator[ConfigProblem]:
    items = error.errors()
    deeper = {tuple(i["loc"][:n]) for i in items for n in range(1, len(i["loc"]))}
    for item in items:
        loc = tuple(item["loc"])
        kind = item["type"]
        if loc in deeper:
            continue  # a container's own complaint ("too short") only restates its item's error
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
        ctx = item.get("ctx") or {}
        if kind == "value_error" and isinstance(ctx.get("error"), ConfigReferenceError):
            for sub_loc, message in ctx["error"].problems:
                yield ConfigProblem(_path(loc + sub_loc), message)
            continue
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1], data)
            key = str(loc[-1])
            yield ConfigProblem(
                _path(loc),
                f"unknown key {key!r}{_did_you_mean(key, allowed)} (allowed here: {', '.join(allowed)})",
            )
            continue
        message = item["msg"].removeprefix("Value error, ")
        if kind == "string_pattern_mismatch":
            message = _pattern_hint(loc, item.get("input"))
        elif kind in _HINTS and kind != "missing":
            message = f"{_HINTS[kind]} (got {item.get('input')!r})"
        elif kind == "missing":
            message = _HINTS[kind]
        yield ConfigProblem(_path(loc), message)


def _pattern_hint(loc: tuple[str | int, ...], value: Any) -> str:
    hints = {
        "project": "a Google Cloud project id: 6-30 lowercase letters, digits or hyphens, e.g. nba-props-platform",
        "region": "a Cloud Run region such as us-west2",
        "channels": "a Slack channel id such as C07ABCDEF12 (right-click the channel, Copy link)",
        "members": "a Slack user id (U...), user-group id (S...) or '*' for everyone",
        "owners": "a Slack user id (U...) or user-group id (S...)",
        "group": "a Slack user-group id (S...), as its mention <!subteam^S...> or usergroups.list shows it",
        "runbook_base_url": "the web view of the runbooks directory, e.g. "
                            "https://github.com/OWNER/REPO/blob/main/runbooks",
    }
    if loc and loc[0] == "services" and len(loc) == 2:
        rule = "lowercase letters, digits and hyphens, starting with a letter"
        return f"{value!r} is not a Cloud Run service name: use {rule}"
    hint = next((hints[str(part)] for part in reversed(loc) if str(part) in hints), "a value of the documented form")
    return f"{value!r} is not valid here; write {hint}"


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...], data: Any) -> list[str]:
    """Walk the schema along loc to list the keys that are allowed where an unknown one was found."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = _model_in(field.annotation) if field is not None else current
        else:
            current = None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside Optional[...], tuple[...], dict[str, ...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


_MAX_VALUES = 100_000
_MAX_DEPTH = 32
_TOO_DEEP = f"values are nested more than {_MAX_DEPTH} levels deep (or a YAML alias refers to itself); no field is"


def _out_of_shape(data: Any) -> str | None:
    """Whether the loaded document is bigger or deeper than any config: YAML aliases can make a few lines expand to
    billions of values or refer to themselves, which would hang or overflow everything that walks the document.
    Walked without recursion, and at most `_MAX_VALUES` values, so a cycle ends the walk too."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > _MAX_VALUES:
            return f"the file expands to more than {_MAX_VALUES:,} values; write it out without YAML aliases (*name)"
        if depth > _MAX_DEPTH:
            return _TOO_DEEP
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in (*node.keys(), *node.values()))
        elif isinstance(node, list | tuple | set | frozenset):
            stack.extend((child, depth + 1) for child in node)
    return None


def parse_config(text: str, source: str = "chatops.yaml") -> Config:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError:
        raise ConfigError(source, [ConfigProblem("", _TOO_DEEP)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise ConfigError(source, [ConfigProblem("", f"not valid YAML at {where}: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigProblem("", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        expected = "the file must be a mapping with project, region, slack, services, roles"
        raise ConfigError(source, [ConfigProblem("", expected)])
    shape = _out_of_shape(data)
    if shape is not None:
        raise ConfigError(source, [ConfigProblem("", shape)])
    leaked = list(_literal_secrets(data, ()))
    if leaked:
        raise ConfigError(source, leaked)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, list(_problems_of(exc, Config, data))) from None


_SECRET_SHAPES = (
    (re.compile(r"xox[abposr]-[0-9A-Za-z-]{10,}"), "a Slack token"),
    (re.compile(r"xapp-[0-9A-Za-z-]{10,}"), "a Slack app token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"AIza[0-9A-Za-z_-]{30,}"), "a Google API key"),
    (re.compile(r"^[0-9a-f]{32,}$"), "a signing secret or key"),
)


def _literal_secrets(data: Any, path: tuple[str | int, ...]) -> Iterator[ConfigProblem]:
    """Values that are secrets themselves. The config names secrets (in Secret Manager); it never holds one,
    because a config file is read, copied and committed by many. The value is never echoed back."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _literal_secrets(value, (*path, str(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _literal_secrets(value, (*path, index))
    elif isinstance(data, str):
        for shape, what in _SECRET_SHAPES:
            if shape.search(data.strip()):
                yield ConfigProblem(_path(path), f"this looks like {what} written into the config: never put a "
                                                 "secret here; store it in Secret Manager and write its name under "
                                                 "`secrets:`")
                return


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem("", f"cannot read the file: {exc.strerror}")]) from None
    return parse_config(text, str(path))


def summary(config: Config) -> str:
    canary = sum(1 for name in config.services if config.canary_for(name).strategy == "canary")
    names = config.secrets
    secrets = [names.slack_bot_token, names.slack_signing_secret]
    if config.runbook_base_url is None:
        secrets.append(names.runbook_link_key)
        links = "signed links to the bot's own pages"
    else:
        links = f"links to {config.runbook_base_url}"
    if config.defaults.alerts.monitoring_webhook:
        secrets.append(names.monitoring_webhook_token)
    webhook = "taken at /alerts/monitoring" if config.defaults.alerts.monitoring_webhook else "off"
    return (
        f"{len(config.services)} services in {config.project}/{config.region} ({canary} deploy by canary), "
        f"{len(config.slack.channels)} channels, {len(config.roles)} roles, {len(config.teams)} teams, "
        f"{len(config.digests)} digests; "
        f"secrets read from Secret Manager: {', '.join(secrets)}; runbooks: {links}; "
        f"Cloud Monitoring notifications: {webhook}"
    )
