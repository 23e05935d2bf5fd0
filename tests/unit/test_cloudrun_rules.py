"""What Cloud Run refuses before anything changes: name lengths and shapes, tag lengths, update masks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sandbox.cloudrun_rules import CloudRunLimits, check_revision_name, check_service_id, check_traffic, masked
from sandbox.google_errors import GoogleError

LIMITS = CloudRunLimits()


def refused(call: Callable[..., None], *args: object) -> GoogleError:
    with pytest.raises(GoogleError) as raised:
        call(*args)
    assert raised.value.status == "INVALID_ARGUMENT"
    return raised.value


def test_a_service_id_has_fewer_than_50_characters() -> None:
    """CreateServiceRequest.service_id "must contain fewer than 50 characters" (run.v2 discovery document);
    Google's refusal, with a BadRequest detail: https://github.com/pulumi/pulumi-gcp/pull/3167."""
    check_service_id("a" * 49, LIMITS)
    error = refused(check_service_id, "a" * 50, LIMITS)
    assert error.message == ("Violation in CreateServiceRequest.service_id: only lowercase, digits, and hyphens; "
                             "must begin with letter, and cannot end with hyphen; must be less than 50 characters.")
    assert error.details[0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert error.details[0]["fieldViolations"][0]["field"] == "Violation in CreateServiceRequest.service_id"


@pytest.mark.parametrize("service_id", ["9lives", "worker-", "Worker", "work_er", ""])
def test_a_service_id_is_a_dns_label_starting_with_a_letter(service_id: str) -> None:
    refused(check_service_id, service_id, LIMITS)


def test_a_revision_name_starts_with_the_service_name_and_stays_under_64_characters() -> None:
    """"must be less than 64 characters" (https://github.com/pipe-cd/pipecd/issues/5688); the service name is
    its prefix (https://github.com/fucina/treb/commit/8ed91a3a9d6a3575afab0de905e7e51fc9c8454c)."""
    check_revision_name("worker", "worker-" + "a" * 56, LIMITS)
    assert "less than 64 characters" in refused(check_revision_name, "worker", "worker-" + "a" * 57, LIMITS).message
    assert "'worker-'" in refused(check_revision_name, "worker", "other-00001-abc", LIMITS).message


def test_a_tag_and_its_service_name_share_46_characters() -> None:
    """"Combined traffic tag and service name cannot exceed 46 characters"
    (https://github.com/PolicyEngine/policyengine-api/issues/3729)."""
    service = "policyengine-api-staging"
    fits = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100, "tag": "t" * 22}]
    check_traffic(service, fits, LIMITS, first=False)
    too_long = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100, "tag": "t" * 23}]
    with pytest.raises(GoogleError, match="cannot exceed 46 characters"):
        check_traffic(service, too_long, LIMITS, first=False)


def test_a_traffic_target_may_name_a_revision_nobody_has_checked() -> None:
    """Existence is the operation's business, not the request's (see the semantics contract tests)."""
    check_traffic("worker", [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "worker-gone",
                              "percent": 100}], LIMITS, first=False)


def test_an_update_mask_copies_only_its_paths_from_the_request() -> None:
    """UpdateServiceRequest.update_mask: "The list of fields to be updated"; proto names are accepted too."""
    current = {"labels": {"a": "1"}, "scaling": {"minInstanceCount": 0, "maxInstanceCount": 5},
               "traffic": [{"percent": 100}]}
    sent = {"labels": {"b": "2"}, "scaling": {"minInstanceCount": 2, "maxInstanceCount": 9}, "traffic": []}
    merged = masked(current, sent, ["scaling.min_instance_count", "traffic"])
    assert merged == {"labels": {"a": "1"}, "scaling": {"minInstanceCount": 2, "maxInstanceCount": 5},
                      "traffic": []}
    assert masked(current, {}, ["labels"]) == {"scaling": current["scaling"], "traffic": current["traffic"]}
    with pytest.raises(GoogleError, match="'uid' is not updatable"):
        masked(current, sent, ["uid"])
