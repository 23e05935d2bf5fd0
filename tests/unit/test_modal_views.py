"""The modal builders: within Slack's limits for views (https://docs.slack.dev/reference/views/modal-views), the
same field ids whatever is drawn (so an update keeps what a person typed), and the service type-ahead."""

from __future__ import annotations

from typing import Any

import pytest

from bot.render.modals import (
    IMAGE_BLOCK,
    OVERRIDE_BLOCK,
    PLAN_BLOCK,
    SERVICE_BLOCK,
    STRATEGY_BLOCK,
    Origin,
    RevisionChoice,
    deploy_modal,
    rollback_modal,
    service_options,
    silence_modal,
)
from sandbox.slack_views import view_problems

ORIGIN = Origin("C07DEPLOYS1", "http://127.0.0.1:1/response/x")


def block_ids(view: dict[str, Any]) -> list[str]:
    return [b["block_id"] for b in view["blocks"] if "block_id" in b]


@pytest.mark.parametrize("view", [
    deploy_modal(ORIGIN, ("canary", "direct"), "canary"),
    deploy_modal(ORIGIN, ("canary", "direct"), "direct", plan=["x" * 200] * 40),
    silence_modal(ORIGIN),
    rollback_modal(ORIGIN),
    rollback_modal(ORIGIN, "svc", [RevisionChoice(f"svc-{i:05d}-abc", "served 2026-12-01 10:00 UTC")
                                   for i in range(500)]),
])
def test_every_modal_is_a_view_slack_accepts(view: dict[str, Any]) -> None:
    assert view_problems(view) == []
    assert len(view["blocks"]) <= 100 and Origin.read(view["private_metadata"]) == ORIGIN


def test_the_deploy_modal_keeps_its_field_ids_when_the_plan_is_drawn() -> None:
    empty = deploy_modal(ORIGIN, ("canary", "direct"), "canary")
    planned = deploy_modal(ORIGIN, ("canary", "direct"), "canary", plan=["*Stable now:* `svc-1`"])
    assert block_ids(empty) == block_ids(planned) == [SERVICE_BLOCK, STRATEGY_BLOCK, IMAGE_BLOCK, OVERRIDE_BLOCK,
                                                      PLAN_BLOCK]
    strategy = planned["blocks"][1]["element"]
    assert strategy["initial_option"]["value"] == "canary"
    assert "svc-1" in planned["blocks"][4]["text"]["text"]


def test_the_type_ahead_matches_any_case_prefixes_first_and_stops_at_100() -> None:
    fleet = [f"worker-{i:04d}" for i in range(300)] + ["prediction-worker", "mlb-prediction-worker"]
    assert [o["value"] for o in service_options(fleet, "PREDICTION")] == ["prediction-worker",
                                                                          "mlb-prediction-worker"]
    assert len(service_options(fleet, "worker")) == 100
    assert service_options(fleet, "nothing-like-it") == []
