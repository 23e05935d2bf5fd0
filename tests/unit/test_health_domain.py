"""Classification of probe results: what an on-call engineer needs to tell apart."""

from __future__ import annotations

from typing import Any

from bot.domain.health import Endpoint, FleetHealth, Probe, Status, classify

PATHS = {"liveness": "/health", "readiness": "/ready", "deep": "/health/deep"}


def probe(endpoint: Endpoint, status: int | None = 200, body: dict[str, Any] | None = None,
          error: str = "") -> Probe:
    base = "http://svc"
    return Probe(endpoint, PATHS[endpoint], base + PATHS[endpoint], status, 12.0,
                 body if body is not None or status is None else {"status": "ok"}, error)


def checks(*entries: tuple[str, str], revision: str = "svc-00002-abc") -> dict[str, Any]:
    return {"status": "x", "revision": revision,
            "checks": [{"name": n, "status": s, "detail": f"{n} is {s}", "duration_ms": 3} for n, s in entries]}


def test_all_passing_is_healthy_and_names_the_revision() -> None:
    health = classify("svc", [probe("liveness", body=checks()), probe("readiness", body=checks(("bigquery", "pass"))),
                              probe("deep", body=checks(("bigquery", "pass"), ("vegas", "pass")))])
    assert health.status is Status.HEALTHY
    assert health.revision == "svc-00002-abc"
    assert not health.problems


def test_a_failing_readiness_check_is_unhealthy_and_named() -> None:
    health = classify("svc", [probe("liveness"), probe("readiness", 503, checks(("bigquery", "fail"))),
                              probe("deep", 503, checks(("bigquery", "fail")))])
    assert health.status is Status.UNHEALTHY
    assert [(c.name, c.endpoint, c.detail) for c in health.problems] == [("bigquery", "readiness", "bigquery is fail")]
    assert health.reason == "bigquery failing"


def test_a_failing_deep_check_alone_is_degraded() -> None:
    health = classify("svc", [probe("liveness"), probe("readiness", body=checks(("bigquery", "pass"))),
                              probe("deep", 503, checks(("vegas_line_coverage", "fail")))])
    assert health.status is Status.DEGRADED
    assert health.problems[0].name == "vegas_line_coverage"


def test_a_warning_is_degraded() -> None:
    health = classify("svc", [probe("liveness"), probe("readiness", body=checks(("gcs", "warning")))])
    assert health.status is Status.DEGRADED


def test_nothing_answering_is_unreachable_with_the_reason() -> None:
    down = [probe(e, None, error="connection failed: refused") for e in ("liveness", "readiness", "deep")]
    health = classify("svc", down)
    assert health.status is Status.UNREACHABLE and health.reason == "connection failed: refused"


def test_a_timed_out_readiness_probe_is_a_problem_of_its_own() -> None:
    health = classify("svc", [probe("liveness"), probe("readiness", None, error="timed out after 2 s"),
                              probe("deep")])
    assert health.status is Status.UNHEALTHY
    assert [(c.name, c.detail) for c in health.problems] == [("/ready", "timed out after 2 s")]


def test_an_error_status_without_checks_is_reported_with_its_code() -> None:
    health = classify("svc", [probe("liveness", 500, {}), probe("readiness", 200), probe("deep", 200)])
    assert health.status is Status.UNHEALTHY
    assert health.problems[0].detail.startswith("HTTP 500")


def test_the_seeds_check_shape_is_understood() -> None:
    body = {"status": "unhealthy", "checks": [{"check": "firestore", "status": "unhealthy",
                                               "details": {"error": "deadline exceeded"}}]}
    health = classify("svc", [probe("liveness"), probe("readiness", 503, body)])
    assert [(c.name, c.state, c.detail) for c in health.problems] == [
        ("firestore", "fail", "error=deadline exceeded")]


def test_a_fleet_orders_worst_first() -> None:
    fleet = FleetHealth((
        classify("a", [probe("liveness")]),
        classify("b", [probe("liveness", None, error="down")]),
        classify("c", [probe("liveness"), probe("readiness", 503, checks(("x", "fail")))]),
    ))
    assert [s.service for s in fleet.ordered()] == ["b", "c", "a"]
    assert fleet.count(Status.HEALTHY) == 1


def test_a_refusal_by_cloud_runs_front_end_is_unreachable_with_its_words_not_unhealthy() -> None:
    """Cloud Run answered 403 for the service: the service itself said nothing, so nothing is known of its health."""
    words = "403 Forbidden: the bot's service account may not invoke this service (grant it roles/run.invoker on it)"
    refused = [Probe(e, PATHS[e], "http://svc" + PATHS[e], 403, 5.0, None, words)
               for e in ("liveness", "readiness", "deep")]
    health = classify("svc", refused)
    assert health.status is Status.UNREACHABLE and health.reason == words
