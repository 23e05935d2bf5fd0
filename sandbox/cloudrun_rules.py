"""What the Cloud Run Admin API v2 accepts in a request, before anything changes: names, templates,
traffic shapes, update masks, and the figures (limit group `cloud_run`) those rules and the timings use.

Each rule names its source. A request refused here never reaches the service's state.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from sandbox.google_errors import GoogleError, bad_request

LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MASKABLE = ("template", "traffic", "labels", "annotations", "description", "ingress", "launchStage", "client",
             "clientVersion", "scaling", "invokerIamDisabled")


@dataclass
class CloudRunLimits:
    """Cloud Run's figures. Timings are observed, not published: a deploy reaches "a ready state in less
    than 30 seconds" (https://medium.com/google-cloud/google-cloud-run-deploy-and-elasticity-benchmark-15704e46c54),
    so a revision starts in 20 s and routing takes 5 s by default; tests set milliseconds."""

    revision_start_ms: float = 20_000.0
    route_ms: float = 5_000.0
    # google.longrunning.Operations.WaitOperation "may return the latest state before the specified timeout
    # (including immediately)": this share of waits on an unfinished operation return early, after a random
    # delay of at most wait_early_max_ms (never later than the timeout asked for). Both are assumptions.
    wait_early_fraction: float = 0.3
    wait_early_max_ms: float = 1_000.0
    # A blank WaitOperation timeout waits "at most the time permitted by the underlying HTTP/RPC protocol";
    # the cap stands for that protocol limit (assumption).
    wait_max_s: float = 120.0
    # CreateServiceRequest.service_id "must contain fewer than 50 characters" (run.v2 discovery document).
    service_name_max: int = 49
    # A revision name "must be less than 64 characters" (https://github.com/pipe-cd/pipecd/issues/5688).
    revision_name_max: int = 63
    # "Combined traffic tag and service name cannot exceed 46 characters"
    # (https://github.com/PolicyEngine/policyengine-api/issues/3729).
    tag_and_service_max: int = 46


def _name_rule(limit: int, end: str) -> str:
    return (f"only lowercase, digits, and hyphens; must begin with letter, and {end} with hyphen; must be less "
            f"than {limit + 1} characters.")


def check_service_id(service_id: str, limits: CloudRunLimits) -> None:
    """As Google words it (https://github.com/pulumi/pulumi-gcp/pull/3167): "Violation in
    CreateServiceRequest.service_id: only lowercase, digits, and hyphens; must begin with letter, and cannot
    end with hyphen; must be less than 50 characters.", with a google.rpc.BadRequest detail."""
    if service_id and _DNS_LABEL.match(service_id) and len(service_id) <= limits.service_name_max:
        return
    rule = _name_rule(limits.service_name_max, "cannot end")
    field = "Violation in CreateServiceRequest.service_id"
    raise GoogleError("INVALID_ARGUMENT", f"{field}: {rule}", [bad_request(field, rule)])


def check_revision_name(service: str, revision: str, limits: CloudRunLimits) -> None:
    """A revision name "must include the service name as prefix"
    (https://github.com/fucina/treb/commit/8ed91a3a9d6a3575afab0de905e7e51fc9c8454c) and be a DNS label of
    fewer than 64 characters (https://github.com/pipe-cd/pipecd/issues/5688)."""
    field = "service.template.revision"
    if not revision.startswith(f"{service}-"):
        rule = f"must begin with the service name followed by a hyphen ('{service}-')."
        raise GoogleError("INVALID_ARGUMENT", f"{field}: {rule}", [bad_request(field, rule)])
    if not _DNS_LABEL.match(revision) or len(revision) > limits.revision_name_max:
        rule = _name_rule(limits.revision_name_max, "may not end")
        raise GoogleError("INVALID_ARGUMENT", f"{field}: {rule}", [bad_request(field, rule)])


def check_template(service: str, body: dict[str, Any], limits: CloudRunLimits) -> dict[str, Any]:
    template = body.get("template")
    if not template or not template.get("containers"):
        raise GoogleError("INVALID_ARGUMENT", "service.template.containers: a service needs at least one "
                          "container with an image.")
    for index, container in enumerate(template["containers"]):
        if not container.get("image"):
            raise GoogleError("INVALID_ARGUMENT", f"service.template.containers[{index}].image is required.")
    if template.get("revision"):
        check_revision_name(service, template["revision"], limits)
    return dict(template)


def check_traffic(service: str, traffic: list[dict[str, Any]], limits: CloudRunLimits, *, first: bool) -> None:
    """The shape of a traffic split. Whether a named revision exists is not checked here: Cloud Run accepts
    the write and fails the operation instead (see CloudRun._settle)."""
    tags: set[str] = set()
    total = 0
    for index, target in enumerate(traffic):
        where = f"spec.traffic[{index}]"
        kind = target.get("type", "TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED")
        percent = target.get("percent", 0)
        revision = target.get("revision", "")
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            raise GoogleError("INVALID_ARGUMENT", f"{where}.percent must be between 0 and 100.")
        if kind == LATEST and revision:
            raise GoogleError("INVALID_ARGUMENT", f"{where}: a LATEST target cannot name a revision.")
        if kind == REVISION and not revision:
            raise GoogleError("INVALID_ARGUMENT", f"{where}.revision is required for a REVISION target.")
        if kind not in (LATEST, REVISION):
            raise GoogleError("INVALID_ARGUMENT", f"{where}.type must be TRAFFIC_TARGET_ALLOCATION_TYPE_"
                              "LATEST or TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION.")
        tag = target.get("tag", "")
        if tag:
            if not _DNS_LABEL.match(tag):
                raise GoogleError("INVALID_ARGUMENT", f"{where}.tag '{tag}' must use lowercase letters, "
                                  "digits and hyphens and begin with a letter.")
            if len(tag) + len(service) > limits.tag_and_service_max:
                raise GoogleError("INVALID_ARGUMENT", f"spec.traffic.tag: traffic tag '{tag}' and service name "
                                  f"'{service}' together are too long. Combined traffic tag and service name "
                                  f"cannot exceed {limits.tag_and_service_max} characters.")
            if tag in tags:
                raise GoogleError("INVALID_ARGUMENT", f"{where}.tag '{tag}' is used more than once.")
            tags.add(tag)
        total += percent
    if total != 100:
        if first and total == 0:
            raise GoogleError("INVALID_ARGUMENT", "A new service must send traffic to its first revision: the "
                              "traffic percentages sum to 0, not 100 (creating a service with no traffic is "
                              "not supported).")
        raise GoogleError("INVALID_ARGUMENT", f"Traffic percentages must sum to 100, not {total}.")


def _camel(path: str) -> str:
    """FieldMask paths arrive as the JSON names or the proto names (`min_instance_count`)."""
    return ".".join(re.sub(r"_([a-z])", lambda m: m.group(1).upper(), part) for part in path.split("."))


def masked(current: dict[str, Any], body: dict[str, Any], mask: list[str]) -> dict[str, Any]:
    """UpdateServiceRequest.update_mask, "The list of fields to be updated": each path is copied from the
    request (or cleared when the request lacks it); everything else keeps its current value."""
    merged = copy.deepcopy(current)
    for path in map(_camel, mask):
        parts = path.split(".")
        if parts[0] not in _MASKABLE:
            raise GoogleError("INVALID_ARGUMENT", f"update_mask path '{path}' is not updatable.")
        source: Any = body
        target = merged
        for part in parts[:-1]:
            source = source.get(part, {}) if isinstance(source, dict) else {}
            target = target.setdefault(part, {})
        leaf = parts[-1]
        if isinstance(source, dict) and leaf in source:
            target[leaf] = copy.deepcopy(source[leaf])
        else:
            target.pop(leaf, None)
    return merged
