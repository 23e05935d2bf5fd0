"""The Monitoring filter language: which series a filter selects, and how a bad one is refused."""

from __future__ import annotations

import pytest

from sandbox.monitoring_filter import FilterError, Subject, compile_filter

COUNT = "run.googleapis.com/request_count"


def revision(service: str, revision: str, code: int) -> Subject:
    return Subject(
        projects=("nba-props-platform", "123456789012"),
        metric_type=COUNT,
        metric_labels={"response_code": str(code), "response_code_class": f"{code // 100}xx"},
        resource_type="cloud_run_revision",
        resource_labels={"project_id": "nba-props-platform", "service_name": service, "revision_name": revision,
                         "location": "us-west2", "configuration_name": service},
    )


WORKER_OK = revision("prediction-worker", "prediction-worker-00002-abc", 200)
WORKER_FAIL = revision("prediction-worker", "prediction-worker-00003-xyz", 503)
COORDINATOR = revision("prediction-coordinator", "prediction-coordinator-00001-qrs", 404)
ALL = (WORKER_OK, WORKER_FAIL, COORDINATOR)


def selected(text: str) -> set[str]:
    compiled = compile_filter(text)
    return {s.resource_labels["revision_name"].split("-")[-1] for s in ALL if compiled(s)}


@pytest.mark.parametrize(("condition", "expected"), [
    ('resource.labels.service_name = "prediction-worker"', {"abc", "xyz"}),
    ('resource.label.service_name != "prediction-worker"', {"qrs"}),
    ('metric.labels.response_code_class = one_of("4xx", "5xx")', {"xyz", "qrs"}),
    ('metric.label."response_code" >= 500', {"xyz"}),
    ("metric.labels.response_code < 404", {"abc"}),
    ('resource.labels.revision_name = starts_with("prediction-worker-")', {"abc", "xyz"}),
    ('resource.labels.revision_name = ends_with("-qrs")', {"qrs"}),
    ('resource.labels.revision_name != has_substring("0000")', set()),
    ('resource.labels.revision_name : "00003"', {"xyz"}),
    (r'resource.labels.revision_name = monitoring.regex.full_match("prediction-worker-\d+-x.z")', {"xyz"}),
    ('resource.labels.revision_name = monitoring.regex.full_match("worker")', set()),  # full, not partial
    ('project = "123456789012" resource.type = "cloud_run_revision"', {"abc", "xyz", "qrs"}),
    ('project = "someone-else"', set()),
    ('metric.labels.absent = "x"', set()),
    ('metric.labels.absent != "x"', {"abc", "xyz", "qrs"}),  # a missing label never equals
    ('metadata.user_labels.team = "ml"', set()),
])
def test_comparisons(condition: str, expected: set[str]) -> None:
    assert selected(f'metric.type = "{COUNT}" AND {condition}') == expected


def test_or_binds_tighter_than_and_and_not_tighter_still() -> None:
    text = (f'metric.type = "{COUNT}" AND resource.labels.service_name = "prediction-worker" '
            'OR resource.labels.service_name = "prediction-coordinator" AND NOT metric.labels.response_code = "503"')
    assert selected(text) == {"abc", "qrs"}
    grouped = (f'metric.type = "{COUNT}" '
               '(NOT (metric.labels.response_code = "200" OR metric.labels.response_code = "503"))')
    assert selected(grouped) == {"qrs"}


def test_the_metric_type_is_read_off_the_top_level() -> None:
    assert compile_filter(f'(metric.type = "{COUNT}" AND resource.type = "cloud_run_revision")').metric_type == COUNT
    assert compile_filter(f'resource.type="cloud_run_revision"\nmetric.type="{COUNT}"').metric_type == COUNT


def test_escapes_in_strings() -> None:
    compiled = compile_filter(f'metric.type = "{COUNT}" AND resource.labels.service_name = "a\\"b\\\\c"')
    odd = revision('a"b\\c', "r", 200)
    assert compiled(odd)
    assert not compiled(WORKER_OK)


@pytest.mark.parametrize(("text", "problem"), [
    ("", "the filter is empty"),
    ('resource.type = "cloud_run_revision"', "does not name a metric type"),
    (f'metric.type = "{COUNT}" OR metric.type = "x"', "does not name a metric type"),
    (f'metric.type = "{COUNT}" AND metric.type = "x"', "names more than one metric type"),
    (f'metric.type = starts_with("{COUNT}")', "does not name a metric type"),
    (f'metric.type = "{COUNT}" AND (resource.type = "x"', "expected ')' but found the end of the filter"),
    (f'metric.type = "{COUNT}" AND resource.typo = "x"', "unknown selector 'resource.typo'"),
    (f'metric.type = "{COUNT}" AND resource.type "x"', "expected an operator"),
    (f'metric.type = "{COUNT}" AND resource.type = cloud_run_revision',
     "expected a quoted string, a number or a function after '=' but found 'cloud_run_revision'"),
    (f'metric.type = "{COUNT}" AND resource.type = one_off("x")', "unknown function 'one_off'"),
    (f'metric.type = "{COUNT}" AND resource.type = "x', "unterminated string"),
    (f'metric.type = "{COUNT}" AND resource.type < starts_with("x")', "a function can only follow = or !="),
    (f'metric.type = "{COUNT}" AND resource.type = one_of()', "one_of needs at least one value"),
    (f'metric.type = "{COUNT}" AND resource.type = starts_with("a", "b")', "takes exactly one argument"),
    (f'metric.type = "{COUNT}" AND resource.type = monitoring.regex.full_match("(")', "invalid regular expression"),
    (f'metric.type = "{COUNT}" AND resource.type = "a" ]', "unexpected character ']'"),
    (f'metric.type = "{COUNT}" AND', "expected a selector such as metric.type but found the end of the filter"),
])
def test_refusals_name_the_problem(text: str, problem: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(text)
    assert problem in str(caught.value)


def test_refusals_point_at_the_column() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(f'metric.type = "{COUNT}" AND resource.typo = "x"')
    assert caught.value.column == len(f'metric.type = "{COUNT}" AND ') + 1
