"""The canary state machine: (rollout, live service, now, verdict) -> decision, and (rollout, write result) ->
decision.

A rollout is data; a decision is the next rollout, at most one write to Cloud Run, and what to tell the
channel. The reconciler persists the next rollout *with the write marked pending* before it calls Cloud
Run, and feeds what the call came to back through `after_write`. A pending write is settled from what
Cloud Run routes (`trafficStatuses`) and from the service's `generation`, never from the traffic it was
asked for: done, still reconciling, failed on Cloud Run's side, never made, or overtaken by someone else.

Invariants:
- a refusal (PERMISSION_DENIED, INVALID_ARGUMENT, ...) ends the rollout as failed with Google's message and
  the role to grant, traffic as it was or restored to the stable revision;
- a write Cloud Run does not answer is retried until `retry_deadline_s`; a forward move then stops and
  pauses in the open, while a rollback keeps being retried and says so;
- `/rollback` and `/pause` are acted on before any pending write;
- no active state outlives the progress deadline without progress;
- a person's change (a new generation that chatops did not write) pauses the rollout: it never fights them;
- during a freeze window (`freeze`), no new forward move of traffic is decided without an override: a stage that
  passes pauses at its boundary, and a promote or resume is refused. A move decided before the window began is
  still carried through, and rollbacks and pauses are never held.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from bot.domain.analysis import Tally, Thresholds, Verdict
from bot.domain.freeze import Window
from bot.domain.permissions import denied_permission, grant_hint

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
class Insufficient:
    """What a window with too few requests to judge leads to: `extend` it up to N times, then `judge` the stage
    on probes and logs alone, or `pause` for a person."""

    extend: int = 2
    then: Literal["judge", "pause"] = "pause"


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
    retry_deadline_s: float = 120.0
    insufficient: Insufficient = Insufficient()


@dataclass(frozen=True)
class Write:
    """One Admin API call. `generation` is the service generation Cloud Run gave it once accepted (0 until then);
    whether a split Cloud Run was asked for is chatops' own is the rollout's `sent`, not the write's."""

    kind: Literal["create_candidate", "create_service", "set_traffic"]
    traffic: Split
    tagged: bool
    generation: int = 0
    first_tried_at: datetime | None = None
    tries: int = 0
    error: str = ""


@dataclass(frozen=True)
class WriteResult:
    """What one call to the Admin API came to; the adapter classifies Google's answer into one of these."""

    outcome: Literal["done", "started", "refused", "retry", "conflict"]
    generation: int = 0
    traffic: Split = ()  # routed after the write, when `done`
    status: str = ""  # Google's status name, e.g. PERMISSION_DENIED
    message: str = ""  # Google's message
    permission: str = ""  # the permission Google named, when it did


Action = Literal["promote", "promote_full", "pause", "resume", "rollback"]

_PRIORITY: dict[str, int] = {"rollback": 0, "pause": 1, "promote": 2, "promote_full": 2, "resume": 2}
"""Which of several queued commands wins: a person stopping things comes before one moving them on."""


@dataclass(frozen=True)
class Command:
    """A person's command, queued for the reconciler; `id` and `at` are the queue's (0 and None until queued)."""

    action: Action
    user: str
    to: str = ""
    id: int = 0
    at: datetime | None = None
    override: str = ""  # why a promote or resume may move traffic forward during a freeze window

    @property
    def spoken(self) -> str:
        when = f" at {self.at:%H:%M:%S} UTC" if self.at else ""
        return f"`{self.action.replace('_', ' ')}` asked by <@{self.user}>{when}"


@dataclass(frozen=True)
class Answer:
    """What became of a queued command: applied, or refused with what its sender is told."""

    command: Command
    applied: bool
    text: str = ""


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
    stable: str  # what served 100% when the deploy started; "" when the service does not exist yet
    candidate: str
    plan: Plan
    requested_by: str
    created_at: datetime
    next_check_at: datetime
    traffic: Split  # routed, as of chatops' last look
    state: State = State.DEPLOYING
    stage: int = -1  # -1: before any traffic; otherwise an index into plan.stages
    stage_started_at: datetime | None = None
    generation: int = 0  # the service generation chatops last wrote or accepted; 0 when not known
    pending: Write | None = None
    paused_from: State | None = None
    reason: str = ""
    inconclusive: int = 0
    extensions: int = 0  # how many times this stage's window was extended for too little traffic
    results: tuple[StageResult, ...] = ()
    commands: tuple[Command, ...] = ()  # people's commands not yet applied or refused, oldest first
    ended_at: datetime | None = None
    last_verdict: str = ""
    progress_at: datetime | None = None  # the last time the rollout moved on; the progress deadline counts from it
    evidence: Tally | None = None  # the current window's request and error logs, read so far
    unreadable_since: datetime | None = None  # when reading the service from Cloud Run started failing
    sent: tuple[Split, ...] = ()  # every traffic split chatops asked Cloud Run for in this rollout
    override: str = ""  # who let it move forward through freeze windows, and why ("": windows hold it)

    @property
    def percent(self) -> int:
        return dict(self.traffic).get(self.candidate, 0)

    @property
    def deadline(self) -> datetime:
        return (self.progress_at or self.created_at) + timedelta(seconds=self.plan.progress_deadline_s)

    @property
    def window_end(self) -> datetime:
        start = self.stage_started_at or self.created_at
        return start + timedelta(seconds=self.plan.window_s * (1 + self.extensions))

    @property
    def new_service(self) -> bool:
        return not self.stable

    @property
    def restoring(self) -> bool:
        """The pending write takes traffic back (a rollback or a failure), rather than forward."""
        return self.pending is not None and self.state in (State.ROLLED_BACK, State.FAILED)

    @property
    def is_restore(self) -> bool:
        """A `/rollback` outside a rollout (`restore`), not a deploy."""
        return self.image.startswith(MANUAL_ROLLBACK_IMAGE)

    @property
    def open(self) -> bool:
        """The reconciler still has work: the rollout has not ended, or its last write is pending."""
        return not self.state.ended or self.pending is not None


@dataclass(frozen=True)
class Live:
    """What Cloud Run says now. `traffic` is what it routes (trafficStatuses); `requested` what it was asked for
    (the spec), which differs while it reconciles, or after a reconciliation failed (`failure`)."""

    exists: bool
    traffic: Split
    tags: dict[str, str]  # tag -> revision, as routed
    candidate: Literal["missing", "pending", "ready", "failed"] = "ready"
    candidate_message: str = ""
    requested: Split | None = None  # None: the same as `traffic`
    generation: int = 0
    reconciling: bool = False
    failure: str = ""
    latest_created: str = ""

    @property
    def asked(self) -> Split:
        return self.traffic if self.requested is None else self.requested


NoteKind = Literal["created", "ready", "stage", "passed", "promoted", "rolled_back", "failed", "paused", "resumed",
                   "inconclusive", "refused", "retrying", "extended"]


@dataclass(frozen=True)
class Note:
    """Something the rollout's thread should say; `step` names the runbook section it points to, when not the
    failing check's."""

    kind: NoteKind
    text: str
    verdict: Verdict | None = None
    step: str | None = None


@dataclass(frozen=True)
class Decision:
    rollout: Rollout
    write: Write | None = None
    analyse: bool = False
    notes: tuple[Note, ...] = field(default_factory=tuple)
    answers: tuple[Answer, ...] = field(default_factory=tuple)


def _stage_split(rollout: Rollout, index: int) -> Split:
    percent = rollout.plan.stages[index]
    return make_split({rollout.stable: 100 - percent, rollout.candidate: percent})


def _write(traffic: Split, *, tagged: bool) -> Write:
    return Write("set_traffic", traffic, tagged)


def _end(rollout: Rollout, state: State, now: datetime, reason: str) -> Rollout:
    return replace(rollout, state=state, reason=reason, ended_at=now, next_check_at=now)


def _later(rollout: Rollout, now: datetime, seconds: float | None = None) -> Rollout:
    return replace(rollout, next_check_at=now + timedelta(seconds=rollout.plan.interval_s if seconds is None
                                                            else seconds))


def _applied(write: Write, live: Live) -> bool:
    if write.kind == "create_service":
        return live.exists
    if write.kind == "create_candidate":
        return live.candidate != "missing"
    return live.traffic == write.traffic and _tag_as_written(write, live)


def _tag_as_written(write: Write, live: Live) -> bool:
    """Cloud Run routes chatops' tag as the write left it. A promotion moves no traffic (the last stage already
    sent 100%) and only takes the tag away, so the split alone cannot tell it done from never made."""
    return (TAG in live.tags) == write.tagged


def _drift(rollout: Rollout, live: Live) -> str | None:
    """What someone else changed since chatops last wrote, in words; None when nothing that matters did.

    A new `generation` is a change of desired state (Cloud Run's etag also moves when only status does): it
    matters when the traffic asked for is not what chatops set, or a revision chatops did not make appeared.
    """
    if not live.exists:
        return "the service was deleted"
    if live.asked != rollout.traffic and (live.generation != rollout.generation or not rollout.generation):
        return (f"traffic was changed outside chatops: it is now set to {describe(live.asked)}, "
                f"the rollout had set {describe(rollout.traffic)}")
    if rollout.generation and live.generation != rollout.generation and live.latest_created not in (
            "", rollout.candidate, rollout.stable):
        return f"revision {live.latest_created} was deployed outside chatops"
    if live.traffic != rollout.traffic and not live.reconciling:
        return (f"Cloud Run routes {describe(live.traffic)}, not the {describe(rollout.traffic)} "
                "the rollout had set")
    return None


def decide(rollout: Rollout, live: Live, now: datetime, verdict: Verdict | None = None,
           freeze: Window | None = None) -> Decision:
    """`freeze`: the freeze window in force for the service at `now`, if any."""
    if rollout.unreadable_since is not None:
        rollout = replace(rollout, unreadable_since=None)
    command, superseded = _triage(rollout.commands)
    rollout = replace(rollout, commands=() if command is None else (command,))
    return _finish(_decide(rollout, live, now, verdict, command, freeze), superseded)


def _decide(rollout: Rollout, live: Live, now: datetime, verdict: Verdict | None, command: Command | None,
            freeze: Window | None) -> Decision:
    if command is not None and command.action in ("rollback", "pause") and rollout.open:
        if rollout.restoring:  # answered with the way out, and the rollback goes on
            answered = _command(rollout, live, now, command, freeze)
            going_on = _decide(answered.rollout, live, now, verdict, None, freeze)
            return replace(going_on, answers=(*answered.answers, *going_on.answers))
        return _command(rollout, live, now, command, freeze)  # a person stopping things comes before any pending write
    if rollout.pending is not None:
        unsettled = _settle(rollout, rollout.pending, live, now)
        if unsettled is not None:
            return unsettled
        rollout = _routed(rollout, live.traffic, live.generation, now)
    if rollout.state.ended:
        return Decision(rollout)
    if command is not None:
        return _command(rollout, live, now, command, freeze)
    if rollout.state in (State.VERIFYING, State.ANALYSING):
        if drift := _drift(rollout, live):
            return _pause(rollout, now, drift, "")
        rollout = replace(rollout, generation=live.generation or rollout.generation)
    if rollout.state is State.DEPLOYING:
        return _deploying(rollout, live, now, verdict)
    if stalled := _stalled(rollout, now):
        return stalled
    if rollout.state is State.VERIFYING:
        return _verifying(rollout, now, verdict, freeze)
    if rollout.state is State.ANALYSING:
        return _analysing(rollout, now, verdict, freeze)
    return Decision(_later(rollout, now, 60))


def _triage(commands: tuple[Command, ...]) -> tuple[Command | None, tuple[Answer, ...]]:
    """The queued command to act on, and the others refused in its favour: a rollback beats a pause, which beats a
    promote or resume; of equals, the first asked wins. A promote asked a moment after a rollback never undoes it."""
    if not commands:
        return None, ()
    first = min(commands, key=lambda c: _PRIORITY[c.action])
    refused = tuple(Answer(c, False, f"{c.spoken} was not done: {first.spoken} came first"
                           if c.action != first.action else f"{c.spoken} was not done: {first.spoken} already")
                    for c in commands if c is not first)
    return first, refused


def _finish(decision: Decision, superseded: tuple[Answer, ...] = ()) -> Decision:
    """What every decision owes: the split it writes remembered as chatops' own, and every command answered once the
    rollout closes (none is left waiting on a rollout that will never be looked at again)."""
    rollout = decision.rollout
    write = decision.write
    if write is not None and write.kind == "set_traffic" and write.traffic not in rollout.sent:
        rollout = replace(rollout, sent=(*rollout.sent, write.traffic))
    answers = (*superseded, *decision.answers)
    if not rollout.open and rollout.commands:
        answers += tuple(Answer(c, False, f"{c.spoken} was not done: the rollout ended ({rollout.state.value})")
                         for c in rollout.commands)
        rollout = replace(rollout, commands=())
    notes = (*decision.notes, *(Note("refused", a.text) for a in answers if not a.applied))
    return replace(decision, rollout=rollout, notes=notes, answers=answers)


def _by_hand(rollout: Rollout, live: Live) -> bool:
    """A person changed the service's traffic: Cloud Run was asked for a split chatops never sent in this rollout,
    at a generation chatops did not write. A split chatops asked for earlier (a write still routing, or one that
    timed out and landed late) is never taken for a person's, nor is the split chatops last saw routed."""
    own = {*rollout.sent, rollout.traffic, *((rollout.pending.traffic,) if rollout.pending else ())}
    return live.asked not in own and (not rollout.generation or live.generation > rollout.generation)


def _settle(rollout: Rollout, write: Write, live: Live, now: datetime) -> Decision | None:
    """None when the pending write is done; otherwise what to do about it (wait, make it again, stop).

    A traffic write is pursued until Cloud Run routes it: only a person's change (`_by_hand`) stops it. A restore
    (rollback) has no deadline; a forward move is bounded by the retry and progress deadlines."""
    if write.kind != "set_traffic":
        if _applied(write, live):
            return None
        return Decision(rollout, write=write)  # never made (a crash, or a call that failed): make it again
    if not live.exists:
        return _overtaken(rollout, "the service was deleted", live, now)
    if _applied(write, live):
        return None
    if _by_hand(rollout, live):
        doing = "rolling it back" if rollout.restoring else "moving it"
        return _overtaken(rollout, f"traffic was changed outside chatops while chatops was {doing}: it is now set "
                                   f"to {describe(live.asked)}", live, now)
    if live.asked == write.traffic and (live.reconciling or live.failure):  # Cloud Run has the write
        known = write if write.generation else replace(write, generation=live.generation)
        rollout = replace(rollout, pending=known, generation=max(rollout.generation, live.generation))
        if live.reconciling:
            if now >= rollout.deadline and not rollout.restoring and rollout.stable:
                reason = (f"Cloud Run was still applying {_what(rollout, write)} after "
                          f"{spoken(rollout.plan.progress_deadline_s)}: the progress deadline ran out")
                return _roll_back(replace(rollout, pending=None), now, reason, None,
                                  make_split({rollout.stable: 100}))
            return Decision(_later(rollout, now, min(rollout.plan.interval_s, 1.0)))
        if not rollout.restoring:
            failed = WriteResult("refused", status="FAILED", message=live.failure)
            return _refused(replace(rollout, traffic=live.traffic), known, failed, now)
        return _again(rollout, known, now, live.failure)
    if rollout.state is State.PAUSED:
        return None  # paused while a forward move never landed: it stays not made, and what routes is adopted
    return _again(rollout, write, now, "")


def _again(rollout: Rollout, write: Write, now: datetime, why: str) -> Decision:
    """Make the write again, with the etag read this tick: it never landed, an earlier write of chatops' landed after
    it, or Cloud Run gave up applying it (`why`, counted as a try: a forward move gives up at its retry deadline)."""
    again = replace(write, generation=0)
    if not why:
        return Decision(replace(rollout, pending=again), write=again)
    waited = _retry(rollout, again, WriteResult("retry", message=why), now)
    if waited.rollout.pending is None:
        return waited
    return replace(waited, write=waited.rollout.pending)


def _routed(rollout: Rollout, traffic: Split, generation: int, now: datetime) -> Rollout:
    """The pending write is what Cloud Run routes now. A stage's window starts here, not when the write was
    asked for: routing takes seconds, and until then the candidate has no share of the traffic to judge."""
    done = replace(rollout, pending=None, traffic=traffic, generation=generation, progress_at=now)
    if rollout.state is State.ANALYSING and rollout.pending is not None and rollout.pending.tagged:
        done = replace(done, stage_started_at=now, evidence=None, extensions=0,
                       next_check_at=now + timedelta(seconds=min(rollout.plan.interval_s, rollout.plan.window_s)))
    return done


def _overtaken(rollout: Rollout, changed: str, live: Live, now: datetime) -> Decision:
    """A person changed the service while a write of ours was in flight: leave it to them, and say so."""
    adopted = replace(rollout, pending=None, traffic=live.traffic, generation=live.generation)
    if rollout.state.ended:
        return Decision(adopted, notes=(Note("paused", f"not applying the last change: {changed}. Traffic is "
                                                      f"{describe(live.traffic)}, left to whoever changed it"),))
    return _pause(adopted, now, changed, "")


def after_write(rollout: Rollout, result: WriteResult, now: datetime) -> Decision:
    """The rollout once the pending write's call came back (or did not)."""
    write = rollout.pending
    if write is None:
        return Decision(rollout)
    if result.outcome == "done":
        return _finish(Decision(_routed(rollout, result.traffic or write.traffic,
                                        result.generation or rollout.generation, now)))
    if result.outcome == "started":
        return Decision(_later(replace(rollout, pending=replace(write, generation=result.generation),
                                       generation=max(rollout.generation, result.generation)), now,
                               min(rollout.plan.interval_s, 1.0)))
    if result.outcome == "conflict":
        return Decision(replace(rollout, next_check_at=now))  # read the service again, then decide again
    if result.outcome == "retry":
        return _finish(_retry(rollout, write, result, now))
    return _finish(_refused(rollout, write, result, now))


def unreadable(rollout: Rollout, result: WriteResult, now: datetime) -> Decision:
    """Cloud Run could not be read: nothing can be decided, but the channel is told, and a refusal that outlasts
    the retry deadline ends the rollout (a rollback in flight is never given up)."""
    since = rollout.unreadable_since or now
    waiting = _later(replace(rollout, unreadable_since=since), now, 5 * rollout.plan.interval_s if
                     result.outcome == "refused" else rollout.plan.interval_s)
    hint = grant_hint(denied_permission(result.permission, result.message))
    what = f"cannot read {rollout.service} from Cloud Run ({result.message})" + (f": {hint}" if hint else "")
    if rollout.unreadable_since is None:
        return Decision(waiting, notes=(Note("retrying", f"{what}; trying again", step="deploy-refused"
                                             if result.status == "PERMISSION_DENIED" else None),))
    late = (now - since).total_seconds() >= rollout.plan.retry_deadline_s
    if not late or result.outcome != "refused" or rollout.state.ended:
        return Decision(waiting)
    stuck = describe(rollout.traffic)
    reason = (f"{what} for {spoken((now - since).total_seconds())}: chatops cannot go on. Traffic was {stuck}; "
              f"check it with `gcloud run services describe {rollout.service}` and put it on `{rollout.stable}` "
              f"by hand if it is split" if rollout.stable else f"{what}: chatops cannot go on")
    ended = _end(replace(rollout, unreadable_since=since), State.FAILED, now, reason)
    return Decision(ended, notes=(Note("failed", reason, step="deploy-refused"),))


def _retry(rollout: Rollout, write: Write, result: WriteResult, now: datetime) -> Decision:
    first = write.first_tried_at or now
    tried = replace(write, first_tried_at=first, tries=write.tries + 1, error=result.message)
    backoff = min(30.0, rollout.plan.interval_s * 2 ** min(tried.tries, 5))
    waiting = _later(replace(rollout, pending=tried), now, backoff)
    elapsed = (now - first).total_seconds()
    what = _what(rollout, write)
    if rollout.restoring:
        if tried.tries == 1 or tried.tries % 10 == 0:
            note = Note("retrying", f"Cloud Run did not take {what} ({result.message}); still trying, every "
                                    f"{spoken(backoff)}, until it routes. Traffic is {describe(rollout.traffic)} "
                                    f"until it does. To do it by hand: {_by_hand_command(rollout, write)}",
                        step="rolling-back")
            return Decision(waiting, notes=(note,))
        return Decision(waiting)
    if elapsed < rollout.plan.retry_deadline_s:
        if tried.tries == 1:
            note = Note("retrying", f"Cloud Run did not take {what} ({result.message}); retrying for up to "
                                    f"{spoken(rollout.plan.retry_deadline_s)}")
            return Decision(waiting, notes=(note,))
        return Decision(waiting)
    why = (f"Cloud Run did not take {what} for {spoken(elapsed)} ({result.message}); traffic stays "
           f"{describe(rollout.traffic)} until someone resumes, promotes or rolls back")
    return _pause(waiting, now, why, "")  # still pending: a write that timed out may yet have landed


def _by_hand_command(rollout: Rollout, write: Write) -> str:
    target = ",".join(f"{revision}={percent}" for revision, percent in write.traffic)
    return f"`gcloud run services update-traffic {rollout.service} --to-revisions {target}`"


def _what(rollout: Rollout, write: Write) -> str:
    if write.kind == "create_service":
        return f"the creation of {rollout.service}"
    if write.kind == "create_candidate":
        return f"the new revision `{rollout.candidate}`"
    return f"the traffic change to {describe(write.traffic)}"


def _refused(rollout: Rollout, write: Write, result: WriteResult, now: datetime) -> Decision:
    """Google said no, and asking again will not change that: end the rollout, traffic as it was or restored."""
    permission = denied_permission(result.permission, result.message)
    hint = grant_hint(permission)
    status = f"{result.status}: " if result.status and result.status != "FAILED" else ""
    verb = "refused" if result.status != "FAILED" else "could not apply"
    why = f"Cloud Run {verb} {_what(rollout, write)}: {status}{result.message}" + (f" ({hint})" if hint else "")
    step = "deploy-refused" if result.status == "PERMISSION_DENIED" else None
    cleared = replace(rollout, pending=None)
    if rollout.restoring:
        text = (f"{why}. Traffic is still {describe(rollout.traffic)}; put it back by hand: "
                f"{_by_hand_command(rollout, write)}, or `/rollback {rollout.service}` once the cause is fixed")
        return Decision(replace(cleared, reason=f"{rollout.reason}; {text}"), notes=(Note("failed", text, step=step),))
    ended = _end(cleared, State.FAILED, now, why)
    if rollout.stable and (rollout.percent > 0 or rollout.candidate in dict(write.traffic)):
        restore = _write(make_split({rollout.stable: 100}), tagged=False)
        note = Note("failed", f"{why}. Putting all traffic back on `{rollout.stable}`.", step=step)
        return Decision(replace(ended, pending=restore), write=restore, notes=(note,))
    note = Note("failed", f"{why}. Traffic is as it was: {describe(rollout.traffic)}.", step=step)
    return Decision(ended, notes=(note,))


def _stalled(rollout: Rollout, now: datetime) -> Decision | None:
    """The progress deadline, in every active state: no move for that long rolls back."""
    if now < rollout.deadline:
        return None
    waited = spoken(rollout.plan.progress_deadline_s)
    last = f" (last check: {rollout.last_verdict})" if rollout.last_verdict else ""
    reason = f"no progress for {waited} in {rollout.state.value}{last}: the progress deadline ran out"
    if not rollout.stable:
        return Decision(_end(rollout, State.FAILED, now, reason), notes=(Note("failed", reason),))
    return _roll_back(rollout, now, reason, None, make_split({rollout.stable: 100}))


def _deploying(rollout: Rollout, live: Live, now: datetime, verdict: Verdict | None) -> Decision:
    wait = _later(rollout, now)
    if live.candidate == "missing":
        if rollout.new_service:
            write = Write("create_service", make_split({rollout.candidate: 100}), False)
        else:
            write = Write("create_candidate", live.asked, True)  # a person's split since then is kept
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
        verifying = replace(rollout, state=State.VERIFYING, traffic=live.traffic, generation=live.generation,
                            next_check_at=now, progress_at=now)
        return Decision(verifying, notes=(ready,))
    if verdict is None:
        return Decision(rollout, analyse=True)
    if verdict.outcome == "fail":
        reason = f"{rollout.service} is deployed but unhealthy, with no earlier revision to roll back to: " \
                 f"{verdict.summary()}"
        return Decision(_end(rollout, State.FAILED, now, reason), notes=(Note("failed", reason, verdict),))
    done = replace(_end(rollout, State.PROMOTED, now, "new service deployed directly"), traffic=live.traffic,
                   generation=live.generation, last_verdict=verdict.summary())
    return Decision(done, notes=(ready, Note("promoted", "the new service serves 100% of traffic", verdict)))


def _fail(rollout: Rollout, live: Live, now: datetime, reason: str) -> Decision:
    """The candidate never served: end the rollout and take its tag away, leaving the stable untouched."""
    ended = _end(rollout, State.FAILED, now, reason)
    note = Note("failed", reason)
    if rollout.new_service:
        return Decision(ended, notes=(note,))
    write = _write(make_split({rollout.stable: 100}), tagged=False)
    return Decision(replace(ended, pending=write), write=write, notes=(note,))


def _verifying(rollout: Rollout, now: datetime, verdict: Verdict | None, freeze: Window | None) -> Decision:
    if verdict is None:
        return Decision(rollout, analyse=True)
    if verdict.outcome == "fail":
        reason = f"the candidate failed its checks before getting any traffic: {verdict.summary()}"
        return _roll_back(rollout, now, reason, verdict, make_split({rollout.stable: 100}))
    if verdict.outcome == "pending":
        return Decision(_later(rollout, now))  # its logs are not all in yet
    if verdict.outcome == "pass":
        passed = Note("passed", "the candidate's tag URL passes its checks", verdict)
        return _held(rollout, now, freeze, passed) or _enter_stage(rollout, 0, now, passed)
    return _inconclusive(rollout, now, verdict)


def _analysing(rollout: Rollout, now: datetime, verdict: Verdict | None, freeze: Window | None) -> Decision:
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
        step = now + timedelta(seconds=rollout.plan.interval_s)
        return Decision(replace(checked, next_check_at=max(min(rollout.window_end, step), now)))
    if verdict.outcome == "inconclusive":
        return _inconclusive(checked, now, verdict)
    if verdict.insufficient:
        policy = rollout.plan.insufficient
        if rollout.extensions < policy.extend:
            note = Note("extended", f"stage {percent}%: {verdict.insufficient}; extending the window by "
                                    f"{spoken(rollout.plan.window_s)} ({rollout.extensions + 1} of {policy.extend})")
            longer = replace(checked, extensions=rollout.extensions + 1, progress_at=now)
            return Decision(_later(longer, now), notes=(note,))
        if policy.then == "pause":
            reason = (f"too little traffic to judge stage {percent}% after {policy.extend} extended windows "
                      f"({verdict.insufficient}); traffic stays as it is until someone promotes, resumes or rolls "
                      "back")
            return _pause(checked, now, reason, "", verdict)
        summary = f"judged on probes and logs alone ({verdict.insufficient})"
    passed = replace(checked, inconclusive=0, results=(*rollout.results, StageResult(percent, "pass", summary)))
    how = f", {summary}" if verdict.insufficient else ""
    note = Note("passed", f"stage {percent}% passed{how}", verdict)
    if rollout.stage + 1 < len(rollout.plan.stages):
        return _held(passed, now, freeze, note) or _enter_stage(passed, rollout.stage + 1, now, note)
    return _promote(passed, now, note, "every stage passed")  # the last stage routes 100% already: nothing moves


def _inconclusive(rollout: Rollout, now: datetime, verdict: Verdict) -> Decision:
    count = rollout.inconclusive + 1
    if count >= rollout.plan.max_inconclusive:
        reason = (f"no evidence of health after {count} windows ({verdict.summary()}); traffic stays as it is "
                  "until someone promotes, resumes or rolls back")
        return _pause(replace(rollout, inconclusive=count), now, reason, "", verdict)
    again = _later(replace(rollout, inconclusive=count, stage_started_at=now, extensions=0, evidence=None,
                           progress_at=now), now)
    note = Note("inconclusive", f"window {count} was inconclusive ({verdict.summary()}); watching another window",
                verdict)
    return Decision(again, notes=(note,))


def _enter_stage(rollout: Rollout, index: int, now: datetime, *notes: Note) -> Decision:
    traffic = _stage_split(rollout, index)
    write = _write(traffic, tagged=True)
    percent = rollout.plan.stages[index]
    moved = replace(rollout, state=State.ANALYSING, stage=index, stage_started_at=now, inconclusive=0, extensions=0,
                    evidence=None, next_check_at=now + timedelta(seconds=min(rollout.plan.interval_s,
                                                                             rollout.plan.window_s)),
                    pending=write, paused_from=None, reason="", progress_at=now)
    stage = Note("stage", f"stage {index + 1}/{len(rollout.plan.stages)}: {percent}% of traffic on the candidate "
                 f"for {rollout.plan.window_s:g} s")
    return Decision(moved, write=write, notes=(*notes, stage))


def _promote(rollout: Rollout, now: datetime, note: Note | None, why: str) -> Decision:
    write = _write(make_split({rollout.candidate: 100}), tagged=False)
    done = replace(_end(rollout, State.PROMOTED, now, why), pending=write, paused_from=None)
    promoted = Note("promoted", f"`{rollout.candidate}` serves 100% of traffic ({why})")
    return Decision(done, write=write, notes=(*((note,) if note else ()), promoted))


def _roll_back(rollout: Rollout, now: datetime, reason: str, verdict: Verdict | None, traffic: Split) -> Decision:
    write = _write(traffic, tagged=False)
    ended = replace(_end(rollout, State.ROLLED_BACK, now, reason), pending=write)
    return Decision(ended, write=write, notes=(Note("rolled_back", reason, verdict),))


def _pause(rollout: Rollout, now: datetime, reason: str, by: str, verdict: Verdict | None = None) -> Decision:
    """Stop in the open. A promote or resume still queued is refused rather than applied to what a person or the
    analysis just stopped: its sender is told to ask again."""
    paused = replace(rollout, state=State.PAUSED, paused_from=rollout.paused_from or rollout.state, reason=reason,
                     commands=(), next_check_at=now + timedelta(seconds=60))
    who = f" by <@{by}>" if by else ""
    dropped = tuple(Answer(c, False, f"{c.spoken} was not done: the rollout paused; ask again to go on")
                    for c in rollout.commands if c.action not in ("pause", "rollback"))
    return Decision(paused, notes=(Note("paused", f"paused{who}: {reason}", verdict),), answers=dropped)


def _held(rollout: Rollout, now: datetime, freeze: Window | None, note: Note) -> Decision | None:
    """A stage boundary during a freeze window, without an override: pause where the traffic is, and say how to go
    on. None when nothing holds the rollout."""
    if freeze is None or rollout.override:
        return None
    service = rollout.service
    reason = (f"{freeze.spoken()}: traffic stays at {rollout.percent}% on the candidate. To go on now: "
              f"`/resume {service} override=\"why\"` (needs the `override` permission); or `/resume {service}` "
              "once the window has ended")
    held = _pause(rollout, now, reason, "")
    return replace(held, notes=(note, *held.notes))


def _command(rollout: Rollout, live: Live, now: datetime, command: Command, freeze: Window | None) -> Decision:
    decision = _act(rollout, live, now, command, freeze)
    if any(answer.command == command for answer in decision.answers):
        return decision
    if freeze is not None and command.override and not rollout.override:  # it goes on through the window
        decision = replace(decision, rollout=replace(decision.rollout, override=f"<@{command.user}>: "
                                                                                f"{command.override}"))
    return replace(decision, answers=(*decision.answers, Answer(command, True)))


def _refuse(rollout: Rollout, command: Command, why: str) -> Decision:
    return Decision(replace(rollout, commands=()), answers=(Answer(command, False, f"{command.spoken}: {why}"),))


def _act(rollout: Rollout, live: Live, now: datetime, command: Command, freeze: Window | None) -> Decision:
    pending = rollout.pending
    cleared = replace(rollout, commands=(), traffic=live.traffic, pending=None,
                      generation=max(rollout.generation, live.generation))
    by = f"<@{command.user}>"
    if command.action == "rollback":
        if rollout.restoring and pending is not None:
            return _refuse(rollout, command, f"already rolling back to {describe(pending.traffic)}; chatops keeps "
                                             f"trying until Cloud Run routes it (traffic is {describe(live.traffic)}). "
                                             f"To do it by hand: {_by_hand_command(rollout, pending)}")
        target = command.to or rollout.stable
        if not target:
            return _refuse(rollout, command, "a new service has no earlier revision to roll back to")
        return _roll_back(cleared, now, f"rolled back by {by}", None, make_split({target: 100}))
    if command.action == "pause":
        if rollout.restoring and pending is not None:
            way_out = _by_hand_command(rollout, pending)
            return _refuse(rollout, command, "a rollback is not paused: chatops keeps trying until Cloud Run routes "
                                             f"it; only a change by hand stops it: {way_out}")
        if rollout.state.ended:
            return _refuse(rollout, command, f"the promotion is being written; `/rollback {rollout.service}` undoes it")
        if rollout.state is State.PAUSED:
            return _refuse(rollout, command, "already paused")
        return _pause(replace(cleared, pending=pending), now,
                      "traffic stays as it is until someone resumes, promotes or rolls back", command.user)
    if freeze is not None and not rollout.override and not command.override:
        verb = "resume" if command.action == "resume" else "promote"
        return _refuse(cleared, command, f"{freeze.spoken()}. To go on now: `/{verb} {rollout.service} "
                                         "override=\"why\"` (needs the `override` permission); or once it ends")
    if command.action == "resume":
        if rollout.state is not State.PAUSED:
            return _refuse(cleared, command, f"not paused (it is {rollout.state.value})")
        back = rollout.paused_from or State.ANALYSING
        note = Note("resumed", f"resumed by {by}")
        if back is State.PROMOTED:  # the promotion's write did not go through: make it now
            return _promote(cleared, now, note, f"promoted by {by}")
        if back is State.ANALYSING:
            return _enter_stage(cleared, max(rollout.stage, 0), now, note)
        resumed = replace(cleared, state=back, paused_from=None, reason="", next_check_at=now, progress_at=now)
        return Decision(resumed, notes=(note,))
    if rollout.state is State.DEPLOYING or (rollout.state is State.PAUSED and rollout.paused_from is State.DEPLOYING):
        return _refuse(cleared, command, "the candidate is not ready yet; promote once it is")
    note = Note("passed", f"promoted by {by}")
    if command.action == "promote_full" or rollout.stage + 1 >= len(rollout.plan.stages):
        return _promote(cleared, now, note, f"promoted by {by}")
    return _enter_stage(cleared, rollout.stage + 1, now, note)


MANUAL_ROLLBACK_IMAGE = "(rollback to "
"""How `/rollback` outside a rollout records itself (`restore`): a ROLLED_BACK rollout whose image is
`(rollback to <revision>)`. It is not a deploy: it is the remediation of the service's last promoted deploy."""


def restore(*, service: str, target: str, serving: str | None, why: str, user: str, plan: Plan, live: Live,
            now: datetime) -> Rollout:
    """`/rollback` when no rollout is open: a rollback the reconciler owns like any other (one writer of traffic,
    under the same lease and fencing), pursued until Cloud Run routes all traffic to `target`."""
    traffic = make_split({target: 100})
    write = Write("set_traffic", traffic, False)
    return Rollout(id=0, service=service, image=f"{MANUAL_ROLLBACK_IMAGE}{target})", stable=target,
                   candidate=serving or "", plan=plan, requested_by=user, created_at=now, next_check_at=now,
                   traffic=live.traffic, state=State.ROLLED_BACK, ended_at=now, generation=live.generation,
                   pending=write, sent=(traffic,), reason=f"rolled back by <@{user}> to {target} ({why}); "
                                                          f"was {describe(live.traffic)}")


_ACCEPTS: dict[str, tuple[State, ...]] = {
    "promote": (State.VERIFYING, State.ANALYSING, State.PAUSED),
    "promote_full": (State.VERIFYING, State.ANALYSING, State.PAUSED),
    "pause": (State.DEPLOYING, State.VERIFYING, State.ANALYSING),
    "resume": (State.PAUSED,),
    "rollback": (State.DEPLOYING, State.VERIFYING, State.ANALYSING, State.PAUSED, State.PROMOTED),
}


def admit(rollout: Rollout, command: Command) -> str | None:
    """Whether a person's command can be queued for this rollout; otherwise what they are told at once. The
    reconciler decides again when it acts (`_triage`, `_act`): this only spares people a queue that would refuse."""
    label = command.action.replace("_", " ")
    pending = rollout.pending
    if rollout.restoring and pending is not None and command.action in ("rollback", "pause"):
        return (f"Rollout #{rollout.id} of {rollout.service} is already rolling back to {describe(pending.traffic)}: "
                f"chatops keeps trying until Cloud Run routes it (traffic was {describe(rollout.traffic)}). To do it "
                f"by hand: {_by_hand_command(rollout, pending)}")
    if not rollout.open:
        return f"Rollout #{rollout.id} has already ended ({rollout.state.value.replace('_', ' ')}); nothing to do."
    if rollout.restoring:
        return f"Rollout #{rollout.id} of {rollout.service} is rolling back ({rollout.reason}), so it can't {label}."
    if rollout.state not in _ACCEPTS[command.action]:
        if rollout.state is State.PROMOTED:
            return (f"Rollout #{rollout.id} of {rollout.service} is being promoted; `/rollback {rollout.service}` "
                    "undoes it.")
        return f"Rollout #{rollout.id} of {rollout.service} is {rollout.state.value}, so it can't {label} now."
    if command.action == "rollback" and not rollout.stable and not command.to:
        return f"{rollout.service} is a new service: there is no earlier revision to roll back to."
    first = min(rollout.commands, key=lambda c: _PRIORITY[c.action], default=None)
    if first is not None and _PRIORITY[first.action] < _PRIORITY[command.action]:
        return f"Rollout #{rollout.id} of {rollout.service} can't {label} now: {first.spoken} comes first."
    return None
