"""What a rollout tells Slack: its one message, redrawn only when what it shows changed, and its thread.

Nothing is sent from here: each report becomes outbox rows written in the transaction that saves the rollout,
so an instance killed after a save has still said what it decided (whoever sends the outbox sends it), and one
killed before has said nothing it must take back. The rollout's message is posted by the first save that finds
its thread empty, so it is posted once, whichever instance gets there. A judged stage's chart is an `upload` row
written beside the note that judged it, so it too is shared once, in order, after that note.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from bot.adapters.outbox import Message, Write, rollout_thread, thread_writer
from bot.adapters.store import StoredRollout
from bot.domain.rollout import Note, Rollout, spoken
from bot.render.chart_data import Measured, StageEvidence
from bot.render.rollout import RunbookLink, note_reply, rollout_message


def created_note(rollout: Rollout) -> Note:
    if rollout.is_restore:
        return Note("rolled_back", f"{rollout.reason}. chatops keeps at it until Cloud Run routes it.",
                    step="rolling-back")
    stages = " → ".join(f"{p}%" for p in rollout.plan.stages)
    why = (" It is a direct deploy: Cloud Run cannot start a new service with no traffic on its first revision."
           if rollout.new_service else "")
    return Note("created", f"<@{rollout.requested_by}> is deploying `{rollout.image}` as `{rollout.candidate}`: "
                           f"{stages}, {spoken(rollout.plan.window_s)} per stage.{why}")


def _shown(message: Message) -> str:
    return json.dumps([message.text, message.attachments], sort_keys=True)


class RolloutReporter:
    def __init__(self, runbook: RunbookLink, sent: Callable[[], None] = lambda: None) -> None:
        self.runbook = runbook
        self.sent = sent  # wakes the outbox sender once the rows are committed

    def saying(self, stored: StoredRollout, rollout: Rollout, notes: Sequence[Note] = (), *,
               redraw: bool = True, control: Sequence[str] = ()) -> Write:
        """The write to make beside the rollout's save (Store.save's `also`); `control`: the lines of what holds the
        service now (locks, a freeze window), shown in the rollout's message."""
        return thread_writer(rollout_thread(rollout.id),
                             lambda before: self.messages(before, stored, rollout, notes, redraw=redraw,
                                                          control=control))

    def messages(self, before: Message | None, stored: StoredRollout, rollout: Rollout, notes: Sequence[Note] = (),
                 *, redraw: bool = True, control: Sequence[str] = ()) -> list[Message]:
        """The rollout's message, posted if its thread has none yet or (when `redraw`) redrawn if it would show
        something other than `before`, its last drawing; then a reply per note."""
        key = rollout_thread(rollout.id)
        thread_ts = stored.message_ts or ""  # a message posted before rollouts were reported through the outbox
        rendered = rollout_message(rollout, control)
        drawn = Message(key, "update", stored.channel, rendered.text, attachments=rendered.attachments,
                        thread_ts=thread_ts)
        messages: list[Message] = []
        if before is None and not thread_ts:
            messages.append(Message(key, "post", stored.channel, rendered.text, attachments=rendered.attachments))
            notes = (created_note(rollout), *notes)
        elif redraw and (before is None or _shown(before) != _shown(drawn)):
            messages.append(drawn)
        for note in notes:
            reply = note_reply(rollout, note, self.runbook)
            messages.append(Message(key, "reply", stored.channel, reply.text, reply.blocks, thread_ts=thread_ts))
            evidence = stage_evidence(rollout, note)
            if evidence is not None:
                file = {"filename": f"{rollout.service}-stage-{evidence.percent}.png",
                        "title": f"{rollout.service} stage {evidence.percent}%: the evidence", "chart": "stage",
                        "data": evidence.to_json()}
                messages.append(Message(key, "upload", stored.channel, "", thread_ts=thread_ts, file=file))
        return messages


def stage_evidence(rollout: Rollout, note: Note) -> StageEvidence | None:
    """What a stage's chart shows, for the note that judged the stage (it passed, or its failure rolled back): the
    request figures the verdict weighed, against the thresholds, beside the stable revision's over the same minutes;
    None for any other note."""
    verdict = note.verdict
    if verdict is None or not verdict.measured or not rollout.results or note.kind not in ("passed", "rolled_back"):
        return None
    judged, limits = rollout.results[-1], rollout.plan.thresholds
    measured = tuple(Measured(r.source, r.total, r.errors, r.p99_ms) for r in verdict.measured)
    stable = verdict.baseline
    return StageEvidence(rollout.service, rollout.candidate, rollout.stable, judged.percent, judged.outcome,
                         limits.min_success_rate, limits.max_p99_ms, limits.min_requests, measured,
                         Measured(stable.source, stable.total, stable.errors, stable.p99_ms) if stable else None)
