"""Who may do what to which service, decided from the config's roles and teams.

A grant is a role's actions for some people on some services: a global role's members on its services, or a
team's Slack user group on the team's services (names or globs such as `nba-phase*`). A team's grant never
covers a fleet-wide request (no service): that takes a global role. A refusal names the roles that would allow
the action and the teams that hold them for that service, so the person asking knows whom to ask instead of
guessing. Group membership is the caller's to supply; a group whose members could not be read is never taken as
empty when it would decide the answer: the refusal then says the members are unknown (fail closed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Grant:
    role: str
    members: frozenset[str]
    actions: frozenset[str]
    services: frozenset[str]
    team: str | None = None
    """The team this grant is for; its one member is then the team's user group."""

    def covers(self, action: str, service: str | None) -> bool:
        action_ok = "*" in self.actions or action in self.actions
        if service is None:
            return action_ok and self.team is None
        return action_ok and any(fnmatchcase(service, pattern) for pattern in self.services)

    def includes(self, user_id: str, groups: frozenset[str]) -> bool:
        return "*" in self.members or user_id in self.members or bool(self.members & groups)


@dataclass(frozen=True)
class Allowed:
    role: str
    team: str | None = None


@dataclass(frozen=True)
class TeamHolds:
    """A team whose user group holds `role` for the service refused."""

    role: str
    team: str
    group: str


@dataclass(frozen=True)
class Refused:
    action: str
    service: str | None
    roles: tuple[str, ...]
    teams: tuple[TeamHolds, ...] = ()
    unread: tuple[str, ...] = ()
    """The user groups that could have allowed this and whose members have never been read from Slack."""

    def message(self) -> str:
        alone, of = _PHRASES.get(self.action, (self.action, self.action))
        what = f"{of} {self.service}" if self.service else alone
        if self.unread:
            groups = " and ".join(f"<!subteam^{group}>" for group in self.unread)
            return (f"I couldn't read the members of {groups} from Slack, so I can't tell whether you may {what}; "
                    "try again in a minute.")
        if not self.roles:
            return f"Nobody may {what}: no role in the config allows it."
        return f"You can't {what}: that needs " + ", or ".join(self._clause(role) for role in self.roles) + "."

    def _clause(self, role: str) -> str:
        holders = [f"*{t.team}* (<!subteam^{t.group}>)" for t in self.teams if t.role == role]
        if not holders:
            return f"the *{role}* role"
        if len(holders) == 1:
            return f"the *{role}* role, which team {holders[0]} has for it"
        return f"the *{role}* role, which teams {', '.join(holders[:-1])} and {holders[-1]} have for it"


_PHRASES = {
    "health": ("check health", "check the health of"),
    "status": ("see rollouts", "see the rollouts of"),
    "history": ("see deploy history", "see the deploy history of"),
    "ack": ("acknowledge incidents", "acknowledge incidents of"),
    "timeline": ("see incident timelines", "see the incident timelines of"),
    "queue": ("manage deploy queues", "manage the deploy queue of"),
}


Decision = Allowed | Refused


def decide(grants: Sequence[Grant], user_id: str, groups: frozenset[str], action: str,
           service: str | None, *, unread: frozenset[str] = frozenset()) -> Decision:
    """`groups`: the user groups the user is known to be in; `unread`: the groups whose members are unknown."""
    covering = [grant for grant in grants if grant.covers(action, service)]
    for grant in covering:
        if grant.includes(user_id, groups):
            return Allowed(grant.role, grant.team)
    unknown = tuple(dict.fromkeys(group for grant in covering for group in sorted(grant.members & unread)))
    roles = tuple(dict.fromkeys(grant.role for grant in covering))
    teams = tuple(TeamHolds(g.role, g.team, next(iter(g.members))) for g in covering if g.team is not None)
    return Refused(action, service, roles, teams, unknown)


def repository_allowed(repository: str, patterns: Sequence[str]) -> bool:
    """Whether an image repository is one a service may deploy from. In a pattern, `*` stands for any part of
    one path segment, so `.../cloud-run/*` allows that repository's images and nothing deeper or elsewhere."""
    return any(re.fullmatch("[^/]*".join(re.escape(part) for part in pattern.split("*")), repository)
               for pattern in patterns)
