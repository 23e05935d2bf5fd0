"""Every button that moves traffic or ends something (a rollout, a request, a lock) asks first, and its dialog says
what happens to which revision, within Slack's limits for a confirmation dialog
(https://docs.slack.dev/reference/block-kit/composition-objects/confirmation-dialog-object: title 100 characters,
text 300, buttons 30)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bot.domain.change_gate import ALL, Lock
from bot.domain.deploy_queue import QueuedDeploy, RequestState
from bot.domain.rollout import State
from bot.render.change_control import unlock_button
from bot.render.deploy_request import DENY, request_message
from bot.render.rollout import rollout_message
from bot.render.watch import watch_warning
from tests.unit.test_rollout import CANDIDATE, STABLE, rollout


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}


def dialog(button: dict[str, Any]) -> str:
    asks = button["confirm"]
    assert len(asks["title"]["text"]) <= 100 and len(asks["text"]["text"]) <= 300
    assert len(asks["confirm"]["text"]) <= 30 and len(asks["deny"]["text"]) <= 30
    return str(asks["text"]["text"])


def test_roll_back_and_promote_say_where_the_traffic_goes() -> None:
    first = rollout_message(replace(rollout(), state=State.ANALYSING, stage=0)).attachments[0]["blocks"]
    shown = buttons(first)
    assert dialog(shown["rollout_rollback"]) == f"Send 100% of svc to {STABLE}; {CANDIDATE} stops serving."
    assert dialog(shown["rollout_promote"]) == f"Send 50% of svc to {CANDIDATE}; 50% stays on {STABLE}."
    assert "confirm" not in shown["rollout_pause"], "pausing moves nothing"
    last = rollout_message(replace(rollout(), state=State.PAUSED, stage=1)).attachments[0]["blocks"]
    assert dialog(buttons(last)["rollout_promote"]) == f"Send 100% of svc to {CANDIDATE}; {STABLE} stops serving."


def test_the_watchs_roll_back_names_both_revisions() -> None:
    _, blocks = watch_warning(replace(rollout(), state=State.PROMOTED), "error lines")
    assert dialog(buttons(blocks)["watch_rollback"]) == f"Send 100% of svc to {STABLE}; {CANDIDATE} stops serving."


def test_deny_says_which_deploy_will_not_happen() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    request = QueuedDeploy(id=7, service="svc", image="repo/svc:v3", strategy="canary", requested_by="U1",
                           channel="C1", created_at=now, state=RequestState.AWAITING, queued_at=None, needed=1,
                           approvers="<@U2>", expires_at=now)
    shown = buttons(request_message(request).blocks)
    assert dialog(shown[DENY]) == "repo/svc:v3 will not be deployed to svc; the request ends."


def test_unlock_says_what_stops_being_refused_and_which_lock() -> None:
    taken = datetime(2026, 12, 1, 18, 30, 0, 250000, tzinfo=UTC)
    shown = unlock_button(Lock("svc", "U1", "retraining", taken))
    assert shown["value"] == "svc@1796149800250000", "the lock's service and the microsecond it was taken"
    assert shown["confirm"]["title"]["text"] == "Unlock svc?" and shown["confirm"]["style"] == "danger"
    assert dialog(shown).startswith("Others' deploys, promotions and resumes of svc will no longer be refused by the "
                                    "lock taken 2026-12-01 18:30 UTC.")
    assert "every service" in dialog(unlock_button(Lock(ALL, "U1", "release", taken)))
