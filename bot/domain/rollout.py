"""The canary state machine: (rollout, live service, now, verdict) -> decision.

A rollout is data; a decision is the next rollout, at most one write to Cloud Run, and what to tell the
channel. The reconciler persists the next rollout *with the write marked pending* before it calls Cloud
Run, so a crash between the two is recognised on the next tick by comparing the live service with the
write: done, not done, or changed by someone else. Traffic is never left split without the rollout
either moving on, rolling back, or pausing in the open with a reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from bot.domain.analysis import Thresholds, Verdict

TAG = "canary"

Split = tuple[tuple[str, int], ...]
"""(revision, percent) pairs with percent > 0, sorted by revision: comparable and hashable."""


def make_split(shares: dict[str, int]) -> Split:
    return tuple(sorted((revision, percent) for revision, percent in shares.items() if percent > 0))


def describe(traffic: Split) -> str:
    return ", ".join(f"{revision} {percent}%" for revision, percent in sorted(traffic, key=lambda p: -p[1])) or "none"


def spoken(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"


class State(enum.StrEnum):
    DEPLOYING = "deploying"
    VERIFYING = "verifying"
    ANALYSING = "analysing"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        return self in (State.PROMOTED, State.ROLLED_BACK, State.FAILED)


@dataclass(frozen=True)
class LogCheckSpec:
    name: str
    filter: str
    at_least: int | None
    at_most: int | None


@dataclass(frozen=True)
class HttpCheckSpec:
    name: str
    path: str
    expect_status: int


@dataclass(frozen=True)
class Plan:
    stages: tuple[int, ...]
    window_s: float
    thresholds: Thresholds
    progress_deadline_s: float
    interval_s: float
    log_checks: tuple[LogCheckSpec, ...] = ()
    http_checks: tuple[HttpCheckSpec, ...] = ()
    max_inconclusive: int = 3


@dataclass(frozen=True)
class Write:
    """One Admin API call. `previous` is the traffic before it, to tell "not done" from "changed by hand"."""

    kind: Literal["create_candidate", "create_service", "set_traffic"]
    traffic: Split
    tagged: bool
    previous: Split


@dataclass(frozen=True)
class Command:
    action: Literal["promote", "promote_full", "pause", "resume", "rollback"]
    user: str
    to: str = ""


@dataclass(frozen=True)
class StageResult:
    percent: int
    outcome: str
    summary: str


@dataclass(frozen=True)
class Rollout:
    id: int
    service: str
    image: str
    stable: str  # "" when the service does not exist yet
    candidate: str
    plan: Plan
    requested_by: str
    created_at: datetime
    next_check_at: datetime
    traffic: Split
    state: State = State.DEPLOYING
    stage: int = -1  # -1: before any traffic; otherwise an index into plan.stages
    stage_started_at: datetime | None = None
    etag: str = ""
    pending: Write | None = None
    paused_from: State | None = None
    reason: str = ""
    inconclusive: int = 0
    results: tuple[StageResult, ...] = ()
    command: Command | None = None
    ended_at: datetime | None = None
    last_verdict: str = ""

    @property
    def percent(self) -> int:
        return dict(self.traffic).get(self.candidate, 0)

    @property
    def deadline(self) -> datetime:
        return self.created_at + timedelta(seconds=self.plan.progress_deadline_s)

    @property
    def new_service(self) -> bool:
        return not self.stable


@dataclass(frozen=True)
class Live:
    """What Cloud Run says now. `traffic` is the asked-for split (spec), LATEST resolved to a revision."""

    exists: bool
    traffic: Split
    tags: dict[str, str]
    etag: str
    candidate: Literal["missing", "pending", "ready", "failed"]
    candidate_message: str = ""


NoteKind = Literal["created", "ready", "stage", "passed", "promoted", "rolled_back", "failed", "paused", "resumed",
                   "inconclusive", "refused"]


@dataclass(frozen=True)
class Note:
    """Something the rollout's thread should say."""

    kind: NoteKind
    text: str
    verdict: Verdict | None = None


@dataclass(frozen=True)
class Decision:
    rollout: Rollout
    write: Write | None = None
    analyse: bool = False
    notes: tuple[Note, ...] = field(default_factory=tuple)


def _stage_split(rollout: Rollout, index: int) -> Split:
    percent = rollout.plan.stages[index]
    return make_split({rollout.stable: 100 - percent, rollout.candidate: percent})


def _write(rollout: Rollout, traffic: Split, *, tagged: bool, kind: Literal["set_traffic"] = "set_traffic") -> Write:
    return Write(kind, traffic, tagged, rollout.traffic)


def _end(rollout: Rollout, state: State, now: datetime, reason: str) -> Rollout:
    return replace(rollout, state=state, reason=reason, ended_at=now, command=None, next_check_at=now)


def _applied(write: Write, live: Live) -> bool:
    if write.kind == "create_service":
        return live.exists
    if write.kind == "create_candidate":
        return live.candidate != "missing"
    return live.traffic == write.traffic


def _drift(rollout: Rollout, live: Live) -> str | None:
    """What someone else changed since the rollout's last write, in words; None when nothing did."""
    if not live.exists:
        return "the service was deleted"
    if live.traffic != rollout.traffic:
        return f"traffic was changed outside chatops: it is now {describe(live.traffic)}, " \
               f"the rollout had set {describe(rollout.traffic)}"
    if rollout.etag and live.etag != rollout.etag:
        return "the service was changed outside chatops (its etag moved) while traffic stayed the same"
    return None


def decide(rollout: Rollout, live: Live, now: datetime, verdict: Verdict | None = None) -> Decision:
    if rollout.pending is not None:
        pending = rollout.pending
        if _applied(pending, live):
            settled = replace(rollout, pending=None, traffic=live.traffic, etag=live.etag)
            return decide(settled, live, now, verdict)
        if live.traffic == pending.previous or pending.kind != "set_traffic":
            return Decision(rollout, write=pending)  # the call never happened (or failed): make it again
        changed = _drift(replace(rollout, traffic=pending.previous, etag=""), live) or "the service changed"
        if rollout.state.ended:  # someone took over before the last write landed: leave it to them
            note = Note("paused", f"not applying the last change: {changed}")
            return Decision(replace(rollout, pending=None, traffic=live.traffic, etag=live.etag), notes=(note,))
        return _pause(replace(rollout, pending=None), now, changed, "")
    if rollout.state.ended:
        return Decision(rollout)
    if rollout.command is not None:
        return _command(rollout, live, now, rollout.command)
    if rollout.state in (State.VERIFYING, State.ANALYSING) and (drift := _drift(rollout, live)):
        return _pause(rollout, now, drift, "")
    if rollout.state is State.DEPLOYING:
        return _deploying(rollout, live, now, verdict)
    if rollout.state is State.VERIFYING:
        return _verifying(rollout, now, verdict)
    if rollout.state is State.ANALYSING:
        return _analysing(rollout, now, verdict)
    return Decision(replace(rollout, next_check_at=now + timedelta(seconds=60)))


def _deploying(rollout: Rollout, live: Live, now: datetime, verdict: Verdict | None) -> Decision:
    wait = replace(rollout, next_check_at=now + timedelta(seconds=rollout.plan.interval_s))
    if live.candidate == "missing":
        if rollout.new_service:
            write = Write("create_service", make_split({rollout.candidate: 100}), False, ())
        else:
            write = Write("create_candidate", rollout.traffic, True, rollout.traffic)
        return Decision(replace(wait, pending=write), write=write)
    if live.candidate == "failed":
        return _fail(rollout, live, now, f"Cloud Run could not start {rollout.candidate}: {live.candidate_message}")
    if live.candidate == "pending":
        if now >= rollout.deadline:
            why = live.candidate_message or "no reason given by Cloud Run"
            return _fail(rollout, live, now, f"{rollout.candidate} was not ready within "
                                             f"{spoken(rollout.plan.progress_deadline_s)}: {why}")
        return Decision(wait)
    ready = Note("ready", f"`{rollout.candidate}` is ready" + ("" if rollout.new_service else
                                                               "; probing its tag URL before it gets any traffic"))
    if not rollout.new_service:
        verifying = replace(rollout, state=State.VERIFYING, traffic=live.traffic, etag=live.etag, next_check_at=now)
        return Decision(verifying, notes=(ready,))
    if verdict is None:
        return Decision(rollout, analyse=True)
    if verdict.outcome == "fail":
        reason = f"{rollout.service} is deployed but unhealthy, with no earlier revision to roll back to: " \
                 f"{verdict.summary()}"
        return Decision(_end(rollout, State.FAILED, now, reason), notes=(Note("failed", reason, verdict),))
    done = replace(_end(rollout, State.PROMOTED, now, "new service deployed directly"), traffic=live.traffic,
                   etag=live.etag, last_verdict=verdict.summary())
    return Decision(done, notes=(ready, Note("promoted", "the new service serves 100% of traffic", verdict)))


def _fail(rollout: Rollout, live: Live, now: datetime, reason: str) -> Decision:
    """The candidate never served: end the rollout and take its tag away, leaving the stable untouched."""
    ended = _end(rollout, State.FAILED, now, reason)
    note = Note("failed", reason)
    if rollout.new_service or TAG not in live.tags:
        return Decision(ended, notes=(note,))
    write = _write(rollout, make_split({rollout.stable: 100}), tagged=False)
    return Decision(replace(ended, pending=write), write=write, notes=(note,))


def _verifying(rollout: Rollout, now: datetime, verdict: Verdict | None) -> Decision:
    if verdict is None:
        return Decision(rollout, analyse=True)
    if verdict.outcome == "fail":
        reason = f"the candidate failed its checks before getting any traffic: {verdict.summary()}"
        return _roll_back(rollout, now, reason, verdict, make_split({rollout.stable: 100}))
    if verdict.outcome in ("pass", "pending"):
        return _enter_stage(rollout, 0, now, Note("passed", "the candidate's tag URL passes its checks", verdict))
    return _inconclusive(rollout, now, verdict)


def _analysing(rollout: Rollout, now: datetime, verdict: Verdict | None) -> Decision:
    if now < rollout.next_check_at:
        return Decision(rollout)
    if verdict is None:
        return Decision(rollout, analyse=True)
    percent = rollout.plan.stages[rollout.stage]
    summary = verdict.summary()
    checked = replace(rollout, last_verdict=summary)
    if verdict.outcome == "fail":
        reason = f"stage {percent}% failed: {summary}"
        failed = replace(checked, results=(*rollout.results, StageResult(percent, "fail", summary)))
        return _roll_back(failed, now, reason, verdict, make_split({rollout.stable: 100}))
    if verdict.outcome == "pending":
        assert rollout.stage_started_at is not None
        end = rollout.stage_started_at + timedelta(seconds=rollout.plan.window_s)
        step = now + timedelta(seconds=rollout.plan.interval_s)
        return Decision(replace(checked, next_check_at=min(end, step)))
    if verdict.outcome == "inconclusive":
        return _inconclusive(checked, now, verdict)
    passed = replace(checked, inconclusive=0, results=(*rollout.results, StageResult(percent, "pass", summary)))
    note = Note("passed", f"stage {percent}% passed", verdict)
    if rollout.stage + 1 < len(rollout.plan.stages):
        return _enter_stage(passed, rollout.stage + 1, now, note)
    return _promote(passed, now, note, "every stage passed")


def _inconclusive(rollout: Rollout, now: datetime, verdict: Verdict) -> Decision:
    count = rollout.inconclusive + 1
    if count >= rollout.plan.max_inconclusive:
        reason = (f"no evidence of health after {count} windows ({verdict.summary()}); traffic stays as it is "
                  "until someone promotes, resumes or rolls back")
        return _pause(replace(rollout, inconclusive=count), now, reason, "", verdict)
    again = replace(rollout, inconclusive=count, stage_started_at=now,
                    next_check_at=now + timedelta(seconds=rollout.plan.interval_s))
    note = Note("inconclusive", f"window {count} was inconclusive ({verdict.summary()}); watching another window",
                verdict)
    return Decision(again, notes=(note,))


def _enter_stage(rollout: Rollout, index: int, now: datetime, *notes: Note) -> Decision:
    traffic = _stage_split(rollout, index)
    write = _write(rollout, traffic, tagged=True)
    percent = rollout.plan.stages[index]
    moved = replace(rollout, state=State.ANALYSING, stage=index, stage_started_at=now, inconclusive=0,
                    next_check_at=now + timedelta(seconds=min(rollout.plan.interval_s, rollout.plan.window_s)),
                    pending=write, paused_from=None, reason="", command=None)
    stage = Note("stage", f"stage {index + 1}/{len(rollout.plan.stages)}: {percent}% of traffic on the candidate "
                 f"for {rollout.plan.window_s:g} s")
    return Decision(moved, write=write, notes=(*notes, stage))


def _promote(rollout: Rollout, now: datetime, note: Note | None, why: str) -> Decision:
    write = _write(rollout, make_split({rollout.candidate: 100}), tagged=False)
    done = replace(_end(rollout, State.PROMOTED, now, why), pending=write)
    promoted = Note("promoted", f"`{rollout.candidate}` serves 100% of traffic ({why})")
    return Decision(done, write=write, notes=(*((note,) if note else ()), promoted))


def _roll_back(rollout: Rollout, now: datetime, reason: str, verdict: Verdict | None, traffic: Split) -> Decision:
    write = _write(rollout, traffic, tagged=False)
    ended = replace(_end(rollout, State.ROLLED_BACK, now, reason), pending=write)
    return Decision(ended, write=write, notes=(Note("rolled_back", reason, verdict),))


def _pause(rollout: Rollout, now: datetime, reason: str, by: str, verdict: Verdict | None = None) -> Decision:
    paused = replace(rollout, state=State.PAUSED, paused_from=rollout.paused_from or rollout.state, reason=reason,
                     command=None, next_check_at=now + timedelta(seconds=60))
    who = f" by <@{by}>" if by else ""
    return Decision(paused, notes=(Note("paused", f"paused{who}: {reason}", verdict),))


def _command(rollout: Rollout, live: Live, now: datetime, command: Command) -> Decision:
    cleared = replace(rollout, command=None, traffic=live.traffic, etag=live.etag)
    by = f"<@{command.user}>"
    if command.action == "rollback":
        target = command.to or rollout.stable
        if not target:
            return Decision(cleared, notes=(Note("refused", "a new service has no earlier revision to roll back to"),))
        return _roll_back(cleared, now, f"rolled back by {by}", None, make_split({target: 100}))
    if command.action == "pause":
        if rollout.state is State.PAUSED:
            return Decision(cleared, notes=(Note("refused", "already paused"),))
        return _pause(cleared, now, "traffic stays as it is until someone resumes, promotes or rolls back",
                      command.user)
    if command.action == "resume":
        if rollout.state is not State.PAUSED:
            return Decision(cleared, notes=(Note("refused", f"not paused (it is {rollout.state.value})"),))
        back = rollout.paused_from or State.ANALYSING
        note = Note("resumed", f"resumed by {by}")
        if back is State.ANALYSING:
            return _enter_stage(cleared, max(rollout.stage, 0), now, note)
        resumed = replace(cleared, state=back, paused_from=None, reason="", next_check_at=now)
        return Decision(resumed, notes=(note,))
    if rollout.state is State.DEPLOYING or (rollout.state is State.PAUSED and rollout.paused_from is State.DEPLOYING):
        return Decision(cleared, notes=(Note("refused", "the candidate is not ready yet; promote once it is"),))
    note = Note("passed", f"promoted by {by}")
    if command.action == "promote_full" or rollout.stage + 1 >= len(rollout.plan.stages):
        return _promote(cleared, now, note, f"promoted by {by}")
    return _enter_stage(cleared, rollout.stage + 1, now, note)
