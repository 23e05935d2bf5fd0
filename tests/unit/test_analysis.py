"""A stage window's verdict: absence of evidence is never a pass, and nothing is judged before Cloud Run routes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.analysis import HttpCheckResult, Requests, Signals, Tally, Thresholds, Verdict, analyse
from bot.domain.health import Check, ServiceHealth, Status

T0 = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)
HEALTHY = ServiceHealth("prediction-worker", Status.HEALTHY, "", (Check("bigquery", "pass", "deep"),))


def window(requests: Requests, *, limits: Thresholds, complete: bool = True, error_logs: int = 0) -> Verdict:
    signals = Signals(complete=complete, health=HEALTHY, error_logs=error_logs, requests=requests,
                      second_opinion=requests)
    return analyse(signals, limits)


@pytest.mark.parametrize(("failed", "total", "outcome"), [
    (1, 3, "pass"),  # 20 x (100 - 95) / 100 = 1 failure allowed: not enough requests to judge the rate yet
    (2, 3, "fail"),  # 2 > 1: no number of later successes brings 20 requests back to 95%
    (2, 2, "fail"),
    (19, 19, "fail"),
])
def test_more_failures_than_min_success_rate_allows_of_min_requests_fail_however_few_requests(
        failed: int, total: int, outcome: str) -> None:
    limits = Thresholds(min_requests=20, min_success_rate=95, max_p99_ms=500, max_error_logs=0)
    verdict = window(Requests(total, failed, 40.0), limits=limits, complete=outcome == "pass")
    assert verdict.outcome == outcome
    if outcome == "fail":
        assert f"success rate: {failed} of {total} requests failed (5xx, request logs); 95% of 20 allows 1" in \
            verdict.summary()
        assert window(Requests(total, failed, 40.0), limits=limits, complete=False).outcome == "fail", \
            "a failure ends the window early"
    else:
        assert verdict.insufficient.startswith("only 3 requests (< 20)")


def test_at_99_percent_of_20_requests_a_single_5xx_fails_a_quiet_stage() -> None:
    limits = Thresholds(min_requests=20, min_success_rate=99, max_p99_ms=500, max_error_logs=0)
    assert window(Requests(3, 1, 40.0), limits=limits).outcome == "fail"  # 20 x 1 / 100 = 0.2: none allowed
    assert window(Requests(3, 0, 40.0), limits=limits).insufficient


def test_5xx_in_the_request_logs_fail_a_stage_whose_code_logs_nothing_at_error() -> None:
    limits = Thresholds(min_requests=20, min_success_rate=99, max_p99_ms=500, max_error_logs=0)
    verdict = window(Requests(19, 19, 12.0), limits=limits, error_logs=0)
    assert verdict.outcome == "fail"
    assert [f.check for f in verdict.failures] == ["success rate", "Monitoring success rate"]
    assert "error logs: 0 ERROR entries" in "; ".join(f.line() for f in verdict.findings)


def test_the_stable_revisions_figures_are_carried_for_the_chart_and_never_judged() -> None:
    """A candidate is held to the thresholds, not to the stable revision: a failing stable does not fail a good
    candidate, a healthy stable does not excuse a bad one, and either way the verdict carries it to be drawn."""
    limits = Thresholds(min_requests=20, min_success_rate=99, max_p99_ms=500, max_error_logs=0)
    good, bad = Requests(400, 0, 40.0), Requests(400, 40, 900.0)
    for candidate, stable, outcome in ((good, Requests(9000, 900, 2000.0, "stable, Cloud Monitoring"), "pass"),
                                       (bad, Requests(9000, 0, 30.0, "stable, Cloud Monitoring"), "fail")):
        signals = Signals(complete=True, health=HEALTHY, error_logs=0, requests=candidate, second_opinion=candidate,
                          baseline=stable)
        verdict = analyse(signals, limits)
        assert verdict.outcome == outcome and verdict.baseline == stable and stable not in verdict.measured
        assert "stable" not in verdict.summary()


def test_nothing_is_judged_before_cloud_run_routes_the_candidate() -> None:
    """A tag URL not in trafficStatuses yet answers nothing: that is waiting, not a failed HTTP check."""
    limits = Thresholds(min_requests=20, min_success_rate=99, max_p99_ms=500, max_error_logs=0)
    unanswered = HttpCheckResult("deep-health", "/health/deep", None, 200, "connection refused")
    signals = Signals(complete=True, health=None, error_logs=0, requests=None, http_checks=(unanswered,),
                      expects_traffic=False, unrouted="Cloud Run does not route the candidate's tag URL yet")
    verdict = analyse(signals, limits)
    assert verdict.outcome == "pending" and not verdict.failures
    assert verdict.summary() == "routing: Cloud Run does not route the candidate's tag URL yet"


def test_a_read_never_moves_the_window_back_nor_counts_an_entry_twice() -> None:
    tally = Tally(read_until=T0).add(until=T0 + timedelta(seconds=30), fraction=1.0,
                                     statuses=((200, 10.0), (500, 12.0)), error_lines=())
    assert tally.read_until == T0 + timedelta(seconds=30) and (tally.requests, tally.errors) == (2, 1)
    with pytest.raises(ValueError, match="would move the window back"):
        tally.add(until=T0 + timedelta(seconds=10), fraction=1.0, statuses=((500, 12.0),), error_lines=())
    same = tally.add(until=tally.read_until, fraction=1.0, statuses=(), error_lines=())
    assert (same.read_until, same.requests, same.errors) == (tally.read_until, 2, 1)
