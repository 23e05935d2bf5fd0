"""The batched Cloud Logging read stays within Logging's limit on a query's length (20,000 characters,
https://cloud.google.com/logging/quotas) however many rollouts are due at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.adapters.cloudrun import ServiceView
from bot.adapters.logs import LogsGateway
from bot.adapters.metrics import MetricsGateway
from bot.adapters.prober import Prober
from bot.domain.analysis import Thresholds
from bot.domain.rollout import Live, Plan, Rollout, State
from bot.engine.budget import ReadBudget
from bot.engine.signals import MAX_QUERY_CHARS, SignalCollector
from bot.environment import Environment

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PLAN = Plan(stages=(5, 50, 100), window_s=60, progress_deadline_s=600, interval_s=10,
            thresholds=Thresholds(20, 99, 500, 0))


def rollout(n: int) -> Rollout:
    service = f"nba-phase{n:02d}-precompute-processors-east"
    return Rollout(id=n, service=service, image=f"r/{service}:v3", stable=f"{service}-00001-abc",
                   candidate=f"{service}-v3-{n:04x}", plan=PLAN, requested_by="U1", created_at=NOW - timedelta(2),
                   next_check_at=NOW, traffic=(), state=State.ANALYSING, stage=0,
                   stage_started_at=NOW - timedelta(seconds=30))


def test_fifty_due_rollouts_are_read_in_queries_that_each_fit_logging_s_limit() -> None:
    env = Environment(google_credentials="anonymous")
    logs = LogsGateway("nba-props-platform", "us-west2", env)
    collector = SignalCollector(Prober(), logs, MetricsGateway("nba-props-platform", env), {},
                                budget=ReadBudget(30), log_lag_s=5, metrics_delay_s=180)
    view = ServiceView(Live(True, (), {}), "", {}, None)
    windows = [collector._window(rollout(n), view, NOW) for n in range(50)]
    batches = collector._batches(windows)
    assert len(batches) > 1 and sum(len(b) for b in batches) == 50
    assert all(len(logs.evidence_filter(collector._query(b), 0.25)) <= MAX_QUERY_CHARS for b in batches)
    assert {w.rollout.id for b in batches for w in b} == set(range(50)), "every rollout in exactly one query"
