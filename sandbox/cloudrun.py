"""Cloud Run Admin API v2 semantics: services, revisions, traffic, etags and long-running operations.

Bodies are the API's JSON (camelCase, string enums, int64 as strings) so that what the emulator
stores is what it serves. Spec and status are kept apart as Cloud Run keeps them: `traffic` is what
was asked for, `trafficStatuses` what is routed, and the two differ until the operation finishes, or for
good when it fails. The v2 reference for Service (https://cloud.google.com/run/docs/reference/rest/v2/
projects.locations.services) is the contract:

- `generation` "monotonically increases every time the user modifies the desired state": a write that
  changes nothing leaves it alone;
- `etag` is "a system-generated fingerprint for this version of the resource": it moves with the user's
  changes and with the system's status writes (reconciliation starting and ending);
- "If reconciliation failed, `traffic_statuses`, `observed_generation`, and `latest_ready_revision` will
  have the state of the last serving revision"; `terminal_condition` says why.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import random
import string
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.behaviour import Behaviour
from sandbox.cloudrun_rules import (
    LATEST,
    REVISION,
    CloudRunLimits,
    check_service_id,
    check_template,
    check_traffic,
    masked,
)
from sandbox.google_errors import GoogleError
from sandbox.iam import Iam, project_number

_CONTAINER_FAILED = (
    "The user-provided container failed to start and listen on the port defined provided by the "
    "PORT=8080 environment variable within the allocated timeout. This can happen when the container "
    "port is misconfigured or if the timeout is too short."
)
_SPEC = ("template", "traffic", "labels", "annotations", "description", "ingress", "launch_stage", "client",
         "client_version", "invoker_iam_disabled")


def rfc3339(epoch: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _condition(kind: str, state: str, message: str = "", reason: str = "", revision_reason: str = "") -> dict[str, Any]:
    """A google.cloud.run.v2.Condition. Its reasons are a oneof of enums: `reason` (CommonReason) or, on a
    revision, `revisionReason` (RevisionReason, e.g. HEALTH_CHECK_CONTAINER_ERROR), never free text
    (https://cloud.google.com/run/docs/reference/rest/v2/Condition)."""
    body: dict[str, Any] = {"type": kind, "state": state, "lastTransitionTime": rfc3339()}
    if message:
        body["message"] = message
        body["severity"] = "ERROR" if state == "CONDITION_FAILED" else "INFO"
    if reason:
        body["reason"] = reason
    if revision_reason:
        body["revisionReason"] = revision_reason
    return body


def _with_defaults(template: dict[str, Any], project_number: str) -> dict[str, Any]:
    """The defaults Cloud Run fills in, so a read-modify-write round trip compares equal."""
    filled = copy.deepcopy(template)
    filled.setdefault("scaling", {}).setdefault("maxInstanceCount", 100)
    filled.setdefault("timeout", "300s")
    filled.setdefault("serviceAccount", f"{project_number}-compute@developer.gserviceaccount.com")
    filled.setdefault("maxInstanceRequestConcurrency", 80)
    for container in filled.get("containers", []):
        container.setdefault("ports", [{"name": "http1", "containerPort": 8080}])
        limits = container.setdefault("resources", {}).setdefault("limits", {})
        limits.setdefault("cpu", "1000m")
        limits.setdefault("memory", "512Mi")
    return filled


def _template_key(template: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in template.items() if k != "revision"}, sort_keys=True)


def _fingerprint(*parts: object) -> str:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:12]
    return '"' + base64.urlsafe_b64encode(digest).decode().rstrip("=") + '"'


@dataclass
class Revision:
    name: str
    service: str
    uid: str
    template: dict[str, Any]
    create_time: str
    service_generation: int
    state: str = "pending"  # pending | ready | failed
    message: str = ""
    ready_time: str = ""
    delete_time: str = ""

    @property
    def image(self) -> str:
        containers = self.template.get("containers") or [{}]
        return str(containers[0].get("image", ""))

    @property
    def etag(self) -> str:
        return _fingerprint(self.uid, self.state, self.delete_time)


@dataclass
class Service:
    name: str
    uid: str
    create_time: str
    generation: int = 1
    update_time: str = ""
    template: dict[str, Any] = field(default_factory=dict)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    traffic_statuses: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    description: str = ""
    ingress: str = "INGRESS_TRAFFIC_ALL"
    launch_stage: str = "GA"
    client: str = ""
    client_version: str = ""
    invoker_iam_disabled: bool = False
    observed_generation: int = 0
    latest_created: str = ""
    latest_ready: str = ""
    reconciling: bool = True
    terminal_condition: dict[str, Any] = field(default_factory=dict)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    revision_seq: int = 0
    status_seq: int = 0
    creator: str = ""
    last_modifier: str = ""

    @property
    def etag(self) -> str:
        return _fingerprint(self.uid, self.generation, self.status_seq)

    def spec(self) -> dict[str, Any]:
        """The desired state the user writes; `generation` moves when it changes."""
        return {key: copy.deepcopy(getattr(self, key)) for key in _SPEC}


@dataclass
class Operation:
    name: str
    service: str
    done: bool = False
    error: dict[str, Any] | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class AdminCall:
    at: float
    method: str
    target: str


class CloudRun:
    """The state of one project's Cloud Run in one region, and the rules that change it.

    Every write is made by the IAM member `iam.member`; creating a revision also needs
    `iam.serviceAccounts.actAs` on the revision's service account ("Certain operations, like creating or
    updating a service or revision, require the deployer account to have permissions on the service identity
    resource", https://cloud.google.com/run/docs/configuring/service-accounts).
    """

    def __init__(
        self,
        project: str,
        region: str,
        *,
        url_for: Callable[[str], str],
        behaviour_of: Callable[[str, str], Behaviour],
        limits: CloudRunLimits | None = None,
        iam: Iam | None = None,
        principal: str = "deployer@nba-props-platform.iam.gserviceaccount.com",
    ) -> None:
        self.project = project
        self.region = region
        self.project_number = project_number(project)
        self.url_for = url_for
        self.behaviour_of = behaviour_of
        self.limits = limits or CloudRunLimits()
        self.iam = iam or Iam(project, region, roles=("roles/owner",))
        self.principal = principal
        self.services: dict[str, Service] = {}
        self.revisions: dict[str, Revision] = {}
        self.operations: dict[str, Operation] = {}
        self.calls: list[AdminCall] = []
        self.splits: list[tuple[float, str, tuple[tuple[str, int], ...]]] = []
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(f"{project}/{region}")
        self._wait_rng = random.Random(f"{project}/{region}/wait")
        self._timers: set[asyncio.TimerHandle] = set()

    # -- names ------------------------------------------------------------------------------------

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def service_path(self, name: str) -> str:
        return f"{self.parent}/services/{name}"

    def revision_path(self, service: str, revision: str) -> str:
        return f"{self.service_path(service)}/revisions/{revision}"

    def record(self, method: str, target: str) -> None:
        self.calls.append(AdminCall(time.time(), method, target))
        self.counts[method] += 1

    def traffic_history(self, service: str) -> list[dict[str, int]]:
        """Every split the service was asked for, oldest first: what tests and benches check traffic against."""
        return [dict(split) for _, name, split in self.splits if name == service]

    # -- reads ------------------------------------------------------------------------------------

    def get_service(self, name: str) -> Service:
        service = self.services.get(name)
        if service is None:
            raise GoogleError("NOT_FOUND", f"Resource '{name}' of kind 'SERVICE' in region '{self.region}' "
                              f"in project '{self.project}' does not exist.")
        return service

    def get_revision(self, service: str, name: str) -> Revision:
        revision = self.revisions.get(name)
        if revision is None or revision.service != service or revision.delete_time:
            raise GoogleError("NOT_FOUND", f"Resource '{name}' of kind 'REVISION' in region '{self.region}' "
                              f"in project '{self.project}' does not exist.")
        return revision

    def revisions_of(self, service: str) -> list[Revision]:
        """Newest first: the emulator's own view. The API lists in `listed_revisions` order."""
        found = [r for r in self.revisions.values() if r.service == service and not r.delete_time]
        return sorted(found, key=lambda r: (r.create_time, r.name), reverse=True)

    def listed_revisions(self, service: str, show_deleted: bool = False) -> list[Revision]:
        """ListRevisions promises no order (ListRevisionsRequest has no order_by), so this one is stable but
        unrelated to creation: by uid. A client that wants the newest must sort by createTime itself. The service
        `-` lists the revisions of every service in the location ("To list all Revisions across Services, use "-"
        instead of Service name", ListRevisionsRequest.parent,
        https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services.revisions/list)."""
        found = [r for r in self.revisions.values()
                 if service in ("-", r.service) and (show_deleted or not r.delete_time)]
        return sorted(found, key=lambda r: r.uid)

    def routed_share(self, service: str) -> dict[str, int]:
        """Percent of live requests each revision receives, from what is routed now (the status)."""
        shares: dict[str, int] = {}
        for status in self.get_service(service).traffic_statuses:
            revision = status.get("revision", "")
            if revision and status.get("percent", 0):
                shares[revision] = shares.get(revision, 0) + int(status["percent"])
        return shares

    def tag_url(self, service: str, tag: str) -> str:
        return self.url_for(f"{tag}---{service}")

    def resolve_host(self, host: str) -> tuple[str, str | None] | None:
        """Map a fleet host ('svc' or 'tag---svc') to (service, tagged revision or None)."""
        tag, _, name = host.rpartition("---")
        service = self.services.get(name)
        if service is None:
            return None
        if not tag:
            return name, None
        for status in service.traffic_statuses:
            if status.get("tag") == tag:
                return name, status.get("revision")
        return None

    # -- writes -----------------------------------------------------------------------------------

    def create_service(self, service_id: str, body: dict[str, Any], validate_only: bool = False) -> Operation:
        check_service_id(service_id, self.limits)
        if body.get("name") not in (None, "", self.service_path(service_id)):
            raise GoogleError("INVALID_ARGUMENT", "service.name must be empty on create; the name comes "
                              "from service_id.")
        if service_id in self.services:
            raise GoogleError("ALREADY_EXISTS", f"Resource '{service_id}' already exists.")
        template = _with_defaults(check_template(service_id, body, self.limits), self.project_number)
        traffic = body.get("traffic") or [{"type": LATEST, "percent": 100}]
        check_traffic(service_id, traffic, self.limits, first=True)
        self._refuse_existing_revision_name(body)
        self._check_invoker_switch(service_id, False, body)
        self._act_as(template)
        now = rfc3339()
        service = Service(name=service_id, uid=str(uuid.uuid4()), create_time=now, update_time=now,
                          creator=self.iam.email, last_modifier=self.iam.email)
        self._assign(service, body, template, traffic)
        if validate_only:
            return self._finished_operation(service)
        self.services[service_id] = service
        # "All Cloud Run services are deployed privately by default"
        # (https://cloud.google.com/run/docs/authenticating/overview): a new service starts with no bindings.
        self.iam.drop_policy(self.service_path(service_id))
        self._sync_invoker_check(service)
        self._record_split(service)
        return self._reconcile(service, template_changed=True)

    def update_service(
        self,
        name: str,
        body: dict[str, Any],
        *,
        update_mask: list[str] | None = None,
        validate_only: bool = False,
        allow_missing: bool = False,
        force_new_revision: bool = False,
    ) -> Operation:
        if name not in self.services:
            if allow_missing:
                return self.create_service(name, {**body, "name": ""}, validate_only)
            self.get_service(name)
        service = self.services[name]
        etag = body.get("etag", "")
        if etag and etag != service.etag:
            raise GoogleError("ABORTED", f"The service '{name}' was modified since it was read (etag "
                              f"{etag} is stale; current is {service.etag}). Read it again and retry.")
        sent = body
        if update_mask:
            body = masked(self.service_json(service), body, update_mask)
        template = _with_defaults(check_template(name, body, self.limits), self.project_number)
        traffic = body.get("traffic") or [{"type": LATEST, "percent": 100}]
        check_traffic(name, traffic, self.limits, first=False)
        self._refuse_existing_revision_name(sent)
        self._check_invoker_switch(name, service.invoker_iam_disabled, body)
        template_changed = self._new_configuration(service, template, force_new_revision)
        if template_changed:
            self._act_as(template)
        preview = copy.deepcopy(service)
        self._assign(preview, body, template, traffic)
        desired_changed = template_changed or preview.spec() != service.spec()
        if validate_only:
            return self._finished_operation(preview)
        self._record_split(preview)
        if not desired_changed:
            return self._finished_operation(service)
        service.generation += 1
        service.update_time = rfc3339()
        service.last_modifier = self.iam.email
        self._assign(service, body, template, traffic)
        self._sync_invoker_check(service)
        return self._reconcile(service, template_changed=template_changed)

    def delete_service(self, name: str, etag: str = "") -> Operation:
        service = self.get_service(name)
        if etag and etag != service.etag:
            raise GoogleError("ABORTED", f"etag {etag} is stale for service '{name}'.")
        del self.services[name]
        now = rfc3339()
        for revision in self.revisions_of(name):
            revision.delete_time = now
        self.iam.drop_policy(self.service_path(name))
        self.iam.invoker_check_disabled.discard(self.service_path(name))
        return self._finished_operation(service)

    def delete_revision(self, service: str, name: str, *, etag: str = "", validate_only: bool = False) -> Operation:
        """DeleteRevisionRequest: `etag` "may be used to detect modification conflict", and `validate_only`
        "Indicates that the request should be validated without actually deleting any resources" (the run.v2
        discovery document, services.revisions.delete)."""
        revision = self.get_revision(service, name)
        owner = self.get_service(service)
        if etag and etag != revision.etag:
            raise GoogleError("ABORTED", f"etag {etag} is stale for revision '{name}' (current is {revision.etag}).")
        if any(t.get("revision") == name for t in owner.traffic + owner.traffic_statuses):
            raise GoogleError("FAILED_PRECONDITION", f"Revision '{name}' is referenced by the service's "
                              "traffic and cannot be deleted.")
        if name == owner.latest_created:
            raise GoogleError("FAILED_PRECONDITION", f"Revision '{name}' is the latest revision and cannot "
                              "be deleted.")
        operation = Operation(name=f"{self.parent}/operations/{uuid.uuid4()}", service=service, done=True)
        if not validate_only:
            revision.delete_time = rfc3339()
        operation.snapshot = self.revision_json(revision)
        operation.finished.set()
        self.operations[operation.name] = operation
        return operation

    def wait_seconds(self, operation: Operation, timeout: float | None) -> float:
        """How long WaitOperation holds the request: "It may return the latest state before the specified
        timeout (including immediately), meaning even an immediate response is no guarantee that the
        operation is done" (google/longrunning/operations.proto). Never longer than asked."""
        budget = min(self.limits.wait_max_s if timeout is None else timeout, self.limits.wait_max_s)
        if operation.done or self._wait_rng.random() >= self.limits.wait_early_fraction:
            return budget
        return self._wait_rng.uniform(0.0, min(budget, self.limits.wait_early_max_ms / 1000))

    # -- rules ------------------------------------------------------------------------------------

    def _refuse_existing_revision_name(self, body: dict[str, Any]) -> None:
        """A request whose template names a revision that already exists is refused with 409, even when
        nothing in the template changed and even under an update mask that leaves the template out: that is
        what a read-modify-write of a service deployed with a named revision gets back
        (https://github.com/googleapis/google-cloud-python/issues/11870, traffic-only change;
        https://github.com/googleapis/google-cloud-python/issues/14259, updateMask=scaling.minInstanceCount;
        "updating the revision configuration for the same name will not be allowed",
        https://github.com/pipe-cd/pipecd/pull/2480). Clearing `template.revision` lets Cloud Run name the
        next revision, as Terraform's autogenerate_revision_name does
        (https://github.com/hashicorp/terraform-provider-google/issues/9438)."""
        named = (body.get("template") or {}).get("revision", "")
        if named and named in self.revisions:
            raise GoogleError("ALREADY_EXISTS", f"Revision named '{named}' with different configuration "
                              "already exists.")

    def _new_configuration(self, service: Service, template: dict[str, Any], force: bool) -> bool:
        """Whether the write creates a revision. A new name always does; otherwise only a template that
        differs from the previously deployed revision's: forceNewRevision exists to create one "even if the
        system doesn't detect any changes from the previously deployed revision" (run.v2 services.patch), and
        "When there is no perceived change in the service a new revision isn't being made"
        (https://github.com/google-github-actions/deploy-cloudrun/pull/24). A template kept by an update mask
        may still name an existing revision: changing its configuration under that name is refused too."""
        named = template.get("revision", "")
        if named and named not in self.revisions:
            return True
        latest = self.revisions.get(named or service.latest_created)
        changed = force or _template_key(template) != _template_key(latest.template if latest else service.template)
        if changed and named:
            raise GoogleError("ALREADY_EXISTS", f"Revision named '{named}' with different configuration "
                              "already exists.")
        return changed

    def _act_as(self, template: dict[str, Any]) -> None:
        self.iam.authorize("iam.serviceAccounts.actAs", f"projects/-/serviceAccounts/{template['serviceAccount']}")

    def _check_invoker_switch(self, name: str, current: bool, body: dict[str, Any]) -> None:
        """Turning the invoker check off or on needs run.services.setIamPolicy
        (https://cloud.google.com/run/docs/authenticating/public, "Required roles")."""
        if bool(body.get("invokerIamDisabled", False)) != current:
            self.iam.authorize("run.services.setIamPolicy", self.service_path(name))

    def _sync_invoker_check(self, service: Service) -> None:
        path = self.service_path(service.name)
        if service.invoker_iam_disabled:
            self.iam.invoker_check_disabled.add(path)
        else:
            self.iam.invoker_check_disabled.discard(path)

    def _record_split(self, service: Service) -> None:
        asked = tuple((t.get("revision") or service.latest_ready, int(t.get("percent", 0))) for t in service.traffic)
        self.splits.append((time.time(), service.name, asked))

    def _assign(self, service: Service, body: dict[str, Any], template: dict[str, Any],
                traffic: list[dict[str, Any]]) -> None:
        service.template = template
        service.traffic = copy.deepcopy(traffic)
        service.labels = dict(body.get("labels", {}))
        service.annotations = dict(body.get("annotations", {}))
        service.description = body.get("description", "")
        service.ingress = body.get("ingress", service.ingress) or "INGRESS_TRAFFIC_ALL"
        service.launch_stage = body.get("launchStage", service.launch_stage) or "GA"
        service.client = body.get("client", "")
        service.client_version = body.get("clientVersion", "")
        service.invoker_iam_disabled = bool(body.get("invokerIamDisabled", False))

    def _new_revision(self, service: Service) -> Revision:
        service.revision_seq += 1
        name = service.template.get("revision") or "{}-{:05d}-{}".format(
            service.name, service.revision_seq, "".join(self._rng.choices(string.ascii_lowercase, k=3))
        )
        revision = Revision(name=name, service=service.name, uid=str(uuid.uuid4()),
                            template={k: v for k, v in service.template.items() if k != "revision"},
                            create_time=rfc3339(), service_generation=service.generation)
        self.revisions[name] = revision
        service.latest_created = name
        return revision

    def _reconcile(self, service: Service, *, template_changed: bool) -> Operation:
        """Start the work an update implies; the operation finishes when revisions and routes settle."""
        operation = Operation(name=f"{self.parent}/operations/{uuid.uuid4()}", service=service.name)
        self.operations[operation.name] = operation
        service.reconciling = True
        service.terminal_condition = _condition("Ready", "CONDITION_RECONCILING", reason="")
        service.status_seq += 1
        generation = service.generation
        created = ""
        if template_changed:
            revision = self._new_revision(service)
            created = revision.name
            behaviour = self.behaviour_of(revision.name, revision.image)
            if behaviour.start == "hang":
                revision.message = "Waiting for the container to become healthy."
            else:
                start_ms = self.limits.revision_start_ms if behaviour.start_ms is None else behaviour.start_ms
                self._later(start_ms / 1000, self._revision_started, revision.name, behaviour.start == "ok")
        operation.snapshot = self.service_json(service)
        self._later(self.limits.route_ms / 1000, self._settle, service.name, generation, operation.name, created)
        return operation

    def _later(self, seconds: float, callback: Callable[..., None], *args: Any) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            callback(*args)

        handle = asyncio.get_running_loop().call_later(seconds, fire)
        self._timers.add(handle)

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def _revision_started(self, name: str, ok: bool) -> None:
        revision = self.revisions.get(name)
        if revision is None or revision.state != "pending":
            return
        if ok:
            revision.state = "ready"
            revision.ready_time = rfc3339()
        else:
            revision.state = "failed"
            revision.message = _CONTAINER_FAILED

    def _settle(self, name: str, generation: int, operation_name: str, created: str) -> None:
        operation = self.operations[operation_name]
        service = self.services.get(name)
        if service is None or service.generation != generation:
            # A newer update superseded this one: its own operation reports the outcome.
            self._finish(operation, service, None)
            return
        missing = self._missing_revision(service, created)
        if missing:
            # The write was accepted; routing to a revision that is not there fails the operation with code 13
            # ("Error code 13, message: Revision '...' does not exist or is deleted. Update all traffic to
            # route to currently available revisions.",
            # https://github.com/terraform-google-modules/terraform-docs-samples/pull/269).
            self._fail(service, operation, "INTERNAL", "RoutesReady", f"Revision '{missing}' does not exist "
                       "or is deleted. Update all traffic to route to currently available revisions.")
            return
        involved = [self.revisions[t["revision"]] for t in service.traffic if t.get("revision")]
        if created:
            involved.append(self.revisions[created])
        if any(r.state == "pending" for r in involved):
            # Routes wait for their revisions, as Cloud Run's do; a revision that hangs holds the operation.
            self._later(0.05, self._settle, name, generation, operation_name, created)
            return
        failed = next((r for r in involved if r.state == "failed"), None)
        if failed is not None:
            message = f"Revision '{failed.name}' is not ready and cannot serve traffic. {failed.message}".strip()
            self._fail(service, operation, "FAILED_PRECONDITION", "ConfigurationsReady", message)
            return
        ready = [r for r in self.revisions_of(name) if r.state == "ready"]
        service.latest_ready = ready[0].name if ready else service.latest_ready
        service.traffic_statuses = self._route(service)
        service.terminal_condition = _condition("Ready", "CONDITION_SUCCEEDED")
        service.conditions = [_condition("RoutesReady", "CONDITION_SUCCEEDED"),
                              _condition("ConfigurationsReady", "CONDITION_SUCCEEDED")]
        service.observed_generation = generation
        service.reconciling = False
        service.status_seq += 1
        self._finish(operation, service, None)

    def _missing_revision(self, service: Service, created: str) -> str:
        for target in service.traffic:
            revision = target.get("revision", "")
            if target.get("type") == REVISION and revision != created:
                known = self.revisions.get(revision)
                if known is None or known.service != service.name or known.delete_time:
                    return str(revision)
        return ""

    def _fail(self, service: Service, operation: Operation, status: str, condition: str, message: str) -> None:
        """Reconciliation failed: the status keeps the last serving state, the conditions say why."""
        service.terminal_condition = _condition("Ready", "CONDITION_FAILED", message)
        other = "RoutesReady" if condition == "ConfigurationsReady" else "ConfigurationsReady"
        service.conditions = [_condition(condition, "CONDITION_FAILED", message),
                              _condition(other, "CONDITION_SUCCEEDED")]
        service.reconciling = False
        service.status_seq += 1
        self._finish(operation, service, GoogleError(status, message).rpc_status())

    def _route(self, service: Service) -> list[dict[str, Any]]:
        statuses = []
        for target in service.traffic:
            status = {k: v for k, v in target.items() if k in ("type", "percent", "tag")}
            status["revision"] = target.get("revision") or service.latest_ready
            if target.get("tag"):
                status["uri"] = self.tag_url(service.name, target["tag"])
            statuses.append(status)
        return statuses

    def _finish(self, operation: Operation, service: Service | None, error: dict[str, Any] | None) -> None:
        if service is not None:
            operation.snapshot = self.service_json(service)
        operation.error = error
        operation.done = True
        operation.finished.set()

    def _finished_operation(self, service: Service) -> Operation:
        operation = Operation(name=f"{self.parent}/operations/{uuid.uuid4()}", service=service.name)
        self._finish(operation, service, None)
        self.operations[operation.name] = operation
        return operation

    # -- the world's starting point -----------------------------------------------------------------

    def seed_service(self, name: str, images: list[str], *, description: str = "") -> Service:
        """A service that already ran `len(images)` deploys with `gcloud run deploy`, the newest serving 100%
        (LATEST). gcloud names each revision itself, so the template carries the newest revision's name ("the
        Cloud Console (as well as gcloud) will specify a revision name for the subsequent Cloud Run revision",
        https://github.com/hashicorp/terraform-provider-google/issues/9438)."""
        now = time.time() - 86400 * len(images)
        service = Service(name=name, uid=str(uuid.uuid4()), create_time=rfc3339(now), description=description,
                          creator=self.principal, last_modifier=self.principal)
        self.services[name] = service
        for index, image in enumerate(images):
            service.template = _with_defaults({"containers": [{"image": image}]}, self.project_number)
            service.traffic = [{"type": LATEST, "percent": 100}]
            service.generation = index + 1
            revision = self._new_revision(service)
            revision.create_time = rfc3339(now + 86400 * index)
            revision.state = "ready"
            revision.ready_time = revision.create_time
            service.latest_ready = revision.name
            service.template["revision"] = revision.name
        service.update_time = rfc3339(now + 86400 * (len(images) - 1))
        service.traffic_statuses = self._route(service)
        service.observed_generation = service.generation
        service.reconciling = False
        service.terminal_condition = _condition("Ready", "CONDITION_SUCCEEDED")
        service.conditions = [_condition("RoutesReady", "CONDITION_SUCCEEDED"),
                              _condition("ConfigurationsReady", "CONDITION_SUCCEEDED")]
        return service

    # -- JSON -------------------------------------------------------------------------------------

    def service_json(self, service: Service) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.service_path(service.name),
            "uid": service.uid,
            "generation": str(service.generation),
            "createTime": service.create_time,
            "updateTime": service.update_time or service.create_time,
            "creator": service.creator,
            "lastModifier": service.last_modifier,
            "ingress": service.ingress,
            "launchStage": service.launch_stage,
            "template": copy.deepcopy(service.template),
            "traffic": copy.deepcopy(service.traffic),
            "observedGeneration": str(service.observed_generation),
            "terminalCondition": dict(service.terminal_condition),
            "conditions": copy.deepcopy(service.conditions),
            "latestReadyRevision": self.revision_path(service.name, service.latest_ready)
            if service.latest_ready else "",
            "latestCreatedRevision": self.revision_path(service.name, service.latest_created)
            if service.latest_created else "",
            "trafficStatuses": copy.deepcopy(service.traffic_statuses),
            "uri": self.url_for(service.name),
            "urls": [self.url_for(service.name)],
            "reconciling": service.reconciling,
            "etag": service.etag,
        }
        optional = {"labels": service.labels, "annotations": service.annotations,
                    "description": service.description, "client": service.client,
                    "clientVersion": service.client_version, "invokerIamDisabled": service.invoker_iam_disabled}
        body.update({k: v for k, v in optional.items() if v})
        return {k: v for k, v in body.items() if v not in ("", [], {}) or k == "reconciling"}

    def revision_json(self, revision: Revision) -> dict[str, Any]:
        ready = {
            "ready": _condition("Ready", "CONDITION_SUCCEEDED"),
            "failed": _condition("Ready", "CONDITION_FAILED", revision.message,
                                 revision_reason="HEALTH_CHECK_CONTAINER_ERROR"),
            "pending": _condition("Ready", "CONDITION_RECONCILING", revision.message or "Deploying revision."),
        }[revision.state]
        container_state = {"ready": "CONDITION_SUCCEEDED", "failed": "CONDITION_FAILED",
                           "pending": "CONDITION_RECONCILING"}[revision.state]
        template = revision.template
        body: dict[str, Any] = {
            "name": self.revision_path(revision.service, revision.name),
            "uid": revision.uid,
            "generation": "1",
            "createTime": revision.create_time,
            "updateTime": revision.ready_time or revision.create_time,
            "launchStage": "GA",
            "service": self.service_path(revision.service),
            "scaling": template.get("scaling", {}),
            "containers": copy.deepcopy(template.get("containers", [])),
            "timeout": template.get("timeout", "300s"),
            "serviceAccount": template.get("serviceAccount", ""),
            "maxInstanceRequestConcurrency": template.get("maxInstanceRequestConcurrency", 80),
            "conditions": [ready, _condition("ContainerHealthy", container_state, revision.message),
                           _condition("ResourcesAvailable", "CONDITION_SUCCEEDED")],
            "observedGeneration": "1",
            "logUri": f"https://console.cloud.google.com/logs/viewer?project={self.project}"
                      f"&resource=cloud_run_revision/service_name/{revision.service}/revision_name/{revision.name}",
            "reconciling": revision.state == "pending",
            "etag": revision.etag,
        }
        for key in ("labels", "annotations"):
            if template.get(key):
                body[key] = dict(template[key])
        if revision.delete_time:
            body["deleteTime"] = revision.delete_time
        return body

    def operation_json(self, operation: Operation) -> dict[str, Any]:
        typed = {"@type": "type.googleapis.com/google.cloud.run.v2.Service", **operation.snapshot}
        if "service" in operation.snapshot and "/revisions/" in operation.snapshot.get("name", ""):
            typed["@type"] = "type.googleapis.com/google.cloud.run.v2.Revision"
        body: dict[str, Any] = {"name": operation.name, "metadata": typed, "done": operation.done}
        if operation.done:
            if operation.error:
                body["error"] = operation.error
            else:
                body["response"] = typed
        return body
