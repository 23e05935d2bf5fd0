"""The /health report reads well for seven services and stays within Slack's limits for a thousand."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain.health import Check, FleetHealth, ServiceHealth, Status
from bot.render.blocks import MAX_BLOCKS, MAX_SECTION
from bot.render.health import Rendered, fleet_report


def link(service: str, check: str | None) -> str:
    return f"https://bot.example/runbooks/{service}#{check or ''}"


def report(fleet: FleetHealth) -> list[Rendered]:
    return fleet_report(fleet, project="p", region="us-west2", elapsed_s=1.2, now=datetime(2026, 11, 25, tzinfo=UTC),
                        runbook=link)


def unhealthy(name: str, checks: int = 1) -> ServiceHealth:
    failing = tuple(Check(f"check_{i}", "fail", "readiness", "timeout after 2000 ms " * 5) for i in range(checks))
    return ServiceHealth(name, Status.UNHEALTHY, "check_0 failing", failing, f"{name}-00002-abc")


def healthy(name: str) -> ServiceHealth:
    return ServiceHealth(name, Status.HEALTHY, "3 checks pass", (Check("bigquery", "pass", "readiness"),))


def within_limits(message: Rendered) -> None:
    assert len(message.blocks) <= MAX_BLOCKS
    for block in message.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150


def everything_said(messages: list[Rendered]) -> str:
    return "\n".join(b["text"]["text"] for m in messages for b in m.blocks if b["type"] in ("section", "header"))


def test_seven_services_fit_in_one_message_problems_first() -> None:
    fleet = FleetHealth((healthy("a"), unhealthy("b", checks=2), healthy("c"),
                         ServiceHealth("d", Status.UNREACHABLE, "connection failed", ())))
    (message,) = report(fleet)
    sections = [b["text"]["text"] for b in message.blocks if b["type"] == "section"]
    assert sections[0].startswith(":black_circle: *d* is *unreachable*")
    assert sections[1].startswith(":red_circle: *b* is *unhealthy*")
    assert "<https://bot.example/runbooks/b#check_1|runbook>" in sections[1]
    assert sections[-1] == ":large_green_circle: *2 healthy*: a, c"
    assert message.text == "Fleet health: 1 unreachable · 1 unhealthy · 2 healthy (d unreachable, b unhealthy)"


def test_a_thousand_unhealthy_services_stay_within_limits_and_none_is_lost() -> None:
    fleet = FleetHealth(tuple(unhealthy(f"svc-{i:04d}", checks=8) for i in range(1000)))
    messages = report(fleet)
    for message in messages:
        within_limits(message)
    said = everything_said(messages)
    assert all(f"*svc-{i:04d}*" in said for i in range(1000))
    assert "more services need attention" in said and "+3 more: `/health svc-0000`" in said


def test_a_thousand_healthy_services_are_summarised_and_listed_in_the_thread() -> None:
    fleet = FleetHealth(tuple(healthy(f"service-number-{i:04d}") for i in range(1000)))
    main, *thread = report(fleet)
    within_limits(main)
    assert "all 1000 healthy" in main.text
    assert "(all listed in the thread)" in everything_said([main])
    assert thread and all(f"service-number-{i:04d}" in everything_said(thread) for i in range(1000))
    for message in thread:
        within_limits(message)
