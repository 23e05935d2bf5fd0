"""The Logging query language as the emulator understands it, checked against Cloud Run-shaped entries."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.logfilter import FilterError, compile_filter, timestamp_nanos

REQUEST: dict[str, Any] = {
    "logName": "projects/nba-props-platform/logs/run.googleapis.com%2Frequests",
    "resource": {"type": "cloud_run_revision", "labels": {
        "project_id": "nba-props-platform", "service_name": "prediction-worker",
        "revision_name": "prediction-worker-00008-xyz", "location": "us-west2",
        "configuration_name": "prediction-worker"}},
    "timestamp": "2026-11-25T08:00:01.123456789Z",
    "insertId": "a1",
    "severity": "WARNING",
    "httpRequest": {"requestMethod": "POST", "requestUrl": "https://prediction-worker.run.app/predict",
                    "status": 503, "latency": "1.250s", "responseSize": "211", "protocol": "HTTP/1.1"},
    "trace": "projects/nba-props-platform/traces/0af7651916cd43dd8448eb211c80319c",
    "labels": {"instanceId": "00f1e2", "k8s-pod/app": "worker"},
}
STDERR: dict[str, Any] = {
    "logName": "projects/nba-props-platform/logs/run.googleapis.com%2Fstderr",
    "resource": {"type": "cloud_run_revision", "labels": {"service_name": "nba-grading-service",
                                                          "revision_name": "nba-grading-service-00003-abc"}},
    "timestamp": "2026-11-25T08:00:02Z",
    "insertId": "b2",
    "severity": "ERROR",
    "textPayload": "ERROR grading run 7 failed: NotFound: 404 Table prediction_accuracy not found",
}
STDOUT: dict[str, Any] = {
    "logName": "projects/nba-props-platform/logs/run.googleapis.com%2Fstdout",
    "resource": {"type": "cloud_run_revision", "labels": {"service_name": "prediction-coordinator"}},
    "timestamp": "2026-11-25T08:00:03.5Z",
    "insertId": "c3",
    "jsonPayload": {"message": "batch dispatched", "players": 412, "dryRun": False, "tags": ["nba", "batch"]},
}
ENTRIES = {"request": REQUEST, "stderr": STDERR, "stdout": STDOUT}


def matching(text: str) -> set[str]:
    selects = compile_filter(text)
    return {name for name, entry in ENTRIES.items() if selects(entry)}


def test_an_empty_filter_matches_everything() -> None:
    assert matching("") == matching("  \n ") == {"request", "stderr", "stdout"}


@pytest.mark.parametrize(("text", "expected"), [
    ('resource.labels.service_name="prediction-worker"', {"request"}),
    ('resource.labels.service_name="prediction"', set()),
    ('resource.labels.service_name!="prediction-worker"', {"stderr", "stdout"}),
    ("resource.labels.revision_name=prediction-worker-00008-xyz", {"request"}),
    ('resource.labels.service_name="Prediction-Worker"', set()),
])
def test_equality_is_exact(text: str, expected: set[str]) -> None:
    assert matching(text) == expected


def test_or_binds_tighter_than_and_as_the_logging_docs_define() -> None:
    # Read AND-first, this would be stderr OR (stdout AND WARNING) and select the stderr entry.
    assert matching("logName:stderr OR logName:stdout AND severity=WARNING") == set()
    assert matching("(logName:stderr OR logName:stdout) AND severity=WARNING") == set()
    assert matching("logName:stderr OR (logName:stdout AND severity=WARNING)") == {"stderr"}


def test_the_docs_precedence_example_groups_around_and() -> None:
    # "a" OR NOT "b" AND NOT "c" OR "d"  means  ("a" OR (NOT "b")) AND ((NOT "c") OR "d");
    # read AND-first it would select stderr ("grading") as well.
    text = '"grading" OR NOT "players" AND NOT "prediction" OR "batch"'
    assert matching(text) == {"stdout"}


def test_juxtaposition_means_and() -> None:
    assert matching("severity>=WARNING httpRequest.status>=500") == {"request"}
    assert matching("severity>=WARNING AND httpRequest.status>=500") == {"request"}


def test_not_and_minus_negate_and_not_binds_tightest() -> None:
    assert matching("NOT severity=ERROR") == {"request", "stdout"}
    assert matching("-severity=ERROR") == {"request", "stdout"}
    assert matching("NOT severity=ERROR AND NOT logName:stdout") == {"request"}
    assert matching("NOT NOT severity=ERROR") == {"stderr"}
    assert matching("NOT (severity=ERROR OR severity=WARNING)") == {"stdout"}


def test_lower_case_and_or_not_are_search_text_not_operators() -> None:
    assert matching("severity=ERROR or severity=WARNING") == set()


@pytest.mark.parametrize(("text", "expected"), [
    ("severity>=WARNING", {"request", "stderr"}),
    ("severity>=ERROR", {"stderr"}),
    ("severity<ERROR", {"request", "stdout"}),
    ("severity=error", {"stderr"}),
    ("severity>=400", {"request", "stderr"}),
    ("severity=0", {"stdout"}),
    ("severity=DEFAULT", {"stdout"}),  # Logging's JSON leaves severity out when it is DEFAULT
    ("severity>NOTICE AND severity<=CRITICAL", {"request", "stderr"}),
])
def test_severity_compares_by_level(text: str, expected: set[str]) -> None:
    assert matching(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ('timestamp>="2026-11-25T08:00:02Z"', {"stderr", "stdout"}),
    ('timestamp>"2026-11-25T08:00:02Z"', {"stdout"}),
    ('timestamp<"2026-11-25T08:00:01.123456790Z"', {"request"}),  # nanosecond precision
    ('timestamp<"2026-11-25T08:00:01.123456789Z"', set()),
    ('timestamp>="2026-11-25T08:00:02Z" AND timestamp<"2026-11-25T08:00:03Z"', {"stderr"}),
    ('timestamp>="2026-11-25T09:00:02+01:00"', {"stderr", "stdout"}),
    ('timestamp>="2026-11-25T08:00:02.000000+0000"', {"stderr", "stdout"}),  # google-cloud-logging's form
    ('timestamp="2026-11-25T08:00:03.500Z"', {"stdout"}),
    ('timestamp>="2026-11-26"', set()),
])
def test_timestamps_compare_as_times(text: str, expected: set[str]) -> None:
    assert matching(text) == expected


def test_timestamp_nanos_reads_rfc3339() -> None:
    assert timestamp_nanos("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert timestamp_nanos("1970-01-01T01:00:00+01:00") == 0
    assert timestamp_nanos("1969-12-31T23:00:00-0100") == 0
    assert timestamp_nanos("1970-01-02") == 86_400 * 10**9
    assert timestamp_nanos("yesterday") is None
    assert timestamp_nanos("2026-11-25T08:00:00") is None  # a time needs its offset
    assert timestamp_nanos("2026-13-01T00:00:00Z") is None
    assert timestamp_nanos("2026-11-25T08:00:00.1234567891Z") is None  # finer than nanoseconds


@pytest.mark.parametrize(("text", "expected"), [
    ("httpRequest.status>=500", {"request"}),
    ("httpRequest.status=503", {"request"}),
    ('httpRequest.status="503"', {"request"}),
    ("httpRequest.status<500", set()),
    ("httpRequest.status>=1000", set()),
    ("httpRequest.responseSize>99", {"request"}),  # an int64 is a JSON string, still compared as a number
    ("jsonPayload.players>400 AND jsonPayload.players<=412", {"stdout"}),
    ("jsonPayload.players>-1", {"stdout"}),
    ('httpRequest.latency>"1s"', {"request"}),
    ('httpRequest.latency<"1.5s"', {"request"}),
    ('httpRequest.latency>"2s"', set()),
    ("jsonPayload.dryRun=false", {"stdout"}),
])
def test_numbers_durations_and_booleans_compare_by_value(text: str, expected: set[str]) -> None:
    assert matching(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("textPayload:prediction_accuracy", {"stderr"}),
    ('textPayload:"TABLE PREDICTION"', {"stderr"}),
    ("resource.labels.service_name:prediction", {"request", "stdout"}),
    ("jsonPayload:dispatched", {"stdout"}),  # has on a structure looks inside it
    ("jsonPayload.tags:batch", {"stdout"}),  # and on a repeated field, at each element
    ("httpRequest.status:503", {"request"}),
])
def test_has_is_a_case_insensitive_substring(text: str, expected: set[str]) -> None:
    assert matching(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    (r'resource.labels.revision_name=~"-0+8-[a-z]+$"', {"request"}),
    (r'textPayload=~"grading run \d+ failed"', {"stderr"}),
    ('textPayload=~"GRADING"', set()),
    ('textPayload=~"(?i)GRADING"', {"stderr"}),
    ('resource.labels.service_name!~"^prediction"', {"stderr"}),
    ('httpRequest.status=~"^5"', {"request"}),
])
def test_regular_expressions_search(text: str, expected: set[str]) -> None:
    assert matching(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("httpRequest:*", {"request"}),
    ("jsonPayload.message:*", {"stdout"}),
    ("NOT textPayload:*", {"request", "stdout"}),
    ('labels."k8s-pod/app":*', {"request"}),
    ('textPayload:"*"', set()),  # quoted, it is text to look for
])
def test_colon_star_tests_presence(text: str, expected: set[str]) -> None:
    assert matching(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("httpRequest.status!=200", {"request"}),
    ("httpRequest.status<600", {"request"}),
    ("NOT httpRequest.status<600", {"stderr", "stdout"}),
    ('textPayload!~"x"', {"stderr"}),
    ("jsonPayload.message=dispatched OR textPayload:failed", {"stderr"}),
])
def test_a_comparison_on_a_missing_field_is_false_and_its_negation_true(
    text: str, expected: set[str]
) -> None:
    assert matching(text) == expected


@pytest.mark.parametrize("text", [
    'logName="projects/nba-props-platform/logs/run.googleapis.com%2Fstderr"',
    'logName="projects/nba-props-platform/logs/run.googleapis.com/stderr"',
    'logName:"run.googleapis.com/stderr"',
    'logName=~"/logs/run\\.googleapis\\.com/stderr$"',
])
def test_log_names_compare_url_decoded(text: str) -> None:
    assert matching(text) == {"stderr"}


@pytest.mark.parametrize(("text", "expected"), [
    ("prediction_accuracy", {"stderr"}),
    ('"batch DISPATCHED"', {"stdout"}),
    ("us-west2", {"request"}),
    ("412", {"stdout"}),
    ("0af7651916cd43dd8448eb211c80319c", {"request"}),
    ("nowhere-to-be-found", set()),
])
def test_lone_text_searches_every_field(text: str, expected: set[str]) -> None:
    assert matching(text) == expected


def test_quoted_path_segments_reach_keys_with_dots_and_slashes() -> None:
    assert matching('labels."k8s-pod/app"=worker') == {"request"}
    assert matching('"labels"."instanceId"="00f1e2"') == {"request"}


def test_a_parenthesised_value_list_applies_the_operator_to_each_value() -> None:
    assert matching("severity=(ERROR OR WARNING)") == {"request", "stderr"}
    assert matching('resource.labels.service_name:("prediction" AND "coordinator")') == {"stdout"}
    assert matching('resource.labels.service_name=("nba-grading-service" OR "prediction-coordinator")') == {
        "stderr", "stdout"}


def test_strings_take_escapes_and_comments_run_to_the_end_of_the_line() -> None:
    assert matching(r'textPayload:"run 7 failed: NotFound: 404 Table \"prediction"') == set()
    assert matching(r'textPayload:"run 7 failed: NotFound: 404 Table prediction"') == {"stderr"}
    assert matching("severity>=ERROR -- only the failures\n-- logName:stdout\n") == {"stderr"}


def test_the_filter_reports_which_fields_it_compares() -> None:
    compiled = compile_filter('timestamp>="2026-11-25T00:00:00Z" severity>=ERROR OR "timestamp"')
    assert compiled.fields == {"timestamp", "severity"}


MIDNIGHT, ONE_AM = '"2026-11-25T00:00:00Z"', '"2026-11-25T01:00:00Z"'


@pytest.mark.parametrize(("text", "earliest"), [
    (f"severity>=ERROR AND timestamp>={MIDNIGHT}", MIDNIGHT),
    (f"timestamp>{MIDNIGHT} (timestamp>={ONE_AM}) timestamp<{ONE_AM}", ONE_AM),
    (f"timestamp={ONE_AM}", ONE_AM),
    (f"timestamp<{MIDNIGHT}", None),
    (f"NOT timestamp>={MIDNIGHT}", None),
    (f"timestamp>={MIDNIGHT} OR severity>=ERROR", None),
    (f"timestamp>=({MIDNIGHT} OR {ONE_AM})", None),
    ("severity>=ERROR", None),
])
def test_a_top_level_floor_on_timestamp_is_reported_so_a_store_can_skip_older_entries(
    text: str, earliest: str | None
) -> None:
    expected = None if earliest is None else timestamp_nanos(earliest.strip('"'))
    assert compile_filter(text).earliest == expected


@pytest.mark.parametrize(("text", "problem", "line", "column"), [
    ("severity>=", "expected a value after '>='", 1, 11),
    ("(severity>=ERROR", "expected ')'", 1, 17),
    ("severity>=ERROR)", "unexpected ')'", 1, 16),
    ("AND severity>=ERROR", "expected a comparison or search text but found 'AND'", 1, 1),
    ("severity>=ERROR OR", "found end of filter", 1, 19),
    ('textPayload:"unterminated', "unterminated string", 1, 13),
    ("severity>=LOUD", "invalid severity 'LOUD'", 1, 11),
    ('severity>=ERROR\n  AND timestamp>"last tuesday"', "invalid timestamp 'last tuesday'", 2, 17),
    ('textPayload=~"(unclosed"', "invalid regular expression", 1, 14),
    ("textPayload ! x", "unexpected character '!'", 1, 13),
    ('SEARCH("x")', "function SEARCH() with 1 argument(s) is not supported", 1, 1),
])
def test_a_bad_filter_says_what_and_where(text: str, problem: str, line: int, column: int) -> None:
    with pytest.raises(FilterError) as raised:
        compile_filter(text)
    assert problem in str(raised.value)
    assert (raised.value.line, raised.value.column) == (line, column)
    assert str(raised.value).startswith("Unparseable filter: ")
    assert f"at line {line}, column {column}" in str(raised.value)


def test_log_id_selects_one_log_by_its_decoded_id() -> None:
    """https://cloud.google.com/logging/docs/view/logging-query-language#functions: log_id([LOG_ID])."""
    requests = {"logName": "projects/p/logs/run.googleapis.com%2Frequests", "insertId": "a"}
    stderr = {"logName": "projects/p/logs/run.googleapis.com%2Fstderr", "insertId": "b"}
    chosen = compile_filter('log_id("run.googleapis.com/requests")')
    assert chosen(requests) and not chosen(stderr)
    assert compile_filter('NOT log_id("run.googleapis.com/requests")')(stderr)


def test_sample_keeps_a_stable_fraction_of_entries_by_the_fields_hash() -> None:
    """https://cloud.google.com/logging/docs/view/logging-query-language#functions: sample([FIELD], [FRACTION])
    selects a fraction of the entries that have a value for the field; the value decides membership."""
    entries = [{"insertId": f"id-{n}"} for n in range(4000)]
    quarter = compile_filter("sample(insertId, 0.25)")
    kept = [e for e in entries if quarter(e)]
    assert 900 < len(kept) < 1100
    assert kept == [e for e in entries if quarter(e)], "the same entries on every query"
    assert not quarter({"textPayload": "no insertId"})
    assert all(compile_filter("sample(insertId, 1)")(e) for e in entries)
    with pytest.raises(FilterError, match=r"greater than 0\.0"):
        compile_filter("sample(insertId, 0)")
    with pytest.raises(FilterError, match="not supported"):
        compile_filter("regex_extract(textPayload)")
