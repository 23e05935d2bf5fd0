"""Where `/rollback` sends traffic when no rollout is in progress: a revision known to be good, and why.

Known good, in this order: what served before the deploy that promoted the serving revision (chatops
recorded it when that deploy started); otherwise the newest Ready revision created before the serving one
that has served traffic. Never a revision chatops rolled back or that failed a check: after a canary was
rolled back, the newest revision that isn't serving is that bad canary, and Cloud Run's revision list
promises no order, so nothing is taken from list order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.domain.rollout import Rollout, State


@dataclass(frozen=True)
class RevisionFacts:
    name: str
    created: datetime | None
    ready: bool


@dataclass(frozen=True)
class Record:
    """What chatops' own history says of a service's revisions."""

    served: frozenset[str] = frozenset()  # were stable when a deploy started, or were promoted
    bad: dict[str, str] = field(default_factory=dict)  # revision -> why it must not get traffic again
    before: dict[str, tuple[str, int]] = field(default_factory=dict)  # promoted revision -> (its stable, rollout)


def record_of(history: Sequence[Rollout]) -> Record:
    served: set[str] = set()
    bad: dict[str, str] = {}
    before: dict[str, tuple[str, int]] = {}
    for rollout in sorted(history, key=lambda r: r.created_at):
        if rollout.stable:
            served.add(rollout.stable)
        if rollout.state is State.PROMOTED:
            served.add(rollout.candidate)
            if rollout.stable:
                before[rollout.candidate] = (rollout.stable, rollout.id)
            bad.pop(rollout.candidate, None)
        elif rollout.state in (State.ROLLED_BACK, State.FAILED) and rollout.candidate:
            when = f"{rollout.ended_at:%Y-%m-%d %H:%M} UTC" if rollout.ended_at else "earlier"
            bad[rollout.candidate] = f"chatops {rollout.state.value.replace('_', ' ')} it ({when}, rollout " \
                                     f"#{rollout.id}: {rollout.reason[:160]})"
    return Record(frozenset(served), bad, before)


@dataclass(frozen=True)
class Target:
    revision: str
    why: str


@dataclass(frozen=True)
class NoTarget:
    why: str
    candidates: tuple[str, ...] = ()


def candidates(serving: str, revisions: Sequence[RevisionFacts], record: Record) -> list[RevisionFacts]:
    """Ready revisions created before the serving one, newest first, without the ones chatops knows are bad."""
    now_serving = next((r for r in revisions if r.name == serving), None)
    cutoff = now_serving.created if now_serving is not None else None
    older = [r for r in revisions if r.name != serving and r.ready and r.name not in record.bad
             and r.created is not None and (cutoff is None or r.created < cutoff)]
    return sorted(older, key=lambda r: (r.created, r.name), reverse=True)


def choose(serving: str, revisions: Sequence[RevisionFacts], record: Record,
           served_elsewhere: frozenset[str] = frozenset()) -> Target | NoTarget:
    """`served_elsewhere`: revisions that Cloud Logging shows answering requests, for those chatops never saw."""
    previous = record.before.get(serving)
    if previous is not None:
        stable, rollout_id = previous
        if stable not in record.bad and any(r.name == stable and r.ready for r in revisions):
            return Target(stable, f"it served before rollout #{rollout_id} promoted `{serving}`")
    older = candidates(serving, revisions, record)
    for revision in older:
        if revision.name in record.served:
            return Target(revision.name, "it is the newest earlier revision that chatops saw serving traffic")
        if revision.name in served_elsewhere:
            return Target(revision.name, "it is the newest earlier revision that has served traffic (its request "
                                         "logs say so)")
    names = tuple(r.name for r in older[:5])
    return NoTarget(f"none of the revisions before `{serving}` is known to have served traffic", names)
