"""Who may do what to which service, decided from the config's roles.

A refusal names the roles that would allow the action, so the person asking knows whom to ask
instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    role: str
    members: frozenset[str]
    actions: frozenset[str]
    services: frozenset[str]

    def covers(self, action: str, service: str | None) -> bool:
        action_ok = "*" in self.actions or action in self.actions
        service_ok = service is None or "*" in self.services or service in self.services
        return action_ok and service_ok

    def includes(self, user_id: str, groups: frozenset[str]) -> bool:
        return "*" in self.members or user_id in self.members or bool(self.members & groups)


@dataclass(frozen=True)
class Allowed:
    role: str


@dataclass(frozen=True)
class Refused:
    action: str
    service: str | None
    roles: tuple[str, ...]

    def message(self) -> str:
        alone, of = _PHRASES.get(self.action, (self.action, self.action))
        what = f"{of} {self.service}" if self.service else alone
        if not self.roles:
            return f"Nobody may {what}: no role in the config allows it."
        needed = " or ".join(f"*{r}*" for r in self.roles)
        return f"You can't {what}: that needs the {needed} role."


_PHRASES = {
    "health": ("check health", "check the health of"),
    "status": ("see rollouts", "see the rollouts of"),
    "history": ("see deploy history", "see the deploy history of"),
    "ack": ("acknowledge incidents", "acknowledge incidents of"),
    "queue": ("manage deploy queues", "manage the deploy queue of"),
}


Decision = Allowed | Refused


def decide(grants: Sequence[Grant], user_id: str, groups: frozenset[str], action: str,
           service: str | None) -> Decision:
    for grant in grants:
        if grant.covers(action, service) and grant.includes(user_id, groups):
            return Allowed(grant.role)
    return Refused(action, service, tuple(g.role for g in grants if g.covers(action, service)))


def groups_of(user_id: str, usergroups: Mapping[str, Sequence[str]]) -> frozenset[str]:
    return frozenset(group for group, members in usergroups.items() if user_id in members)


def repository_allowed(repository: str, patterns: Sequence[str]) -> bool:
    """Whether an image repository is one a service may deploy from. In a pattern, `*` stands for any part of
    one path segment, so `.../cloud-run/*` allows that repository's images and nothing deeper or elsewhere."""
    return any(re.fullmatch("[^/]*".join(re.escape(part) for part in pattern.split("*")), repository)
               for pattern in patterns)
