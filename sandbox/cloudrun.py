"""Cloud Run Admin API v2 semantics: services, revisions, traffic, etags and long-running operations.

Bodies are the API's JSON (camelCase, string enums, int64 as strings) so that what the emulator
stores is what it serves. Spec and status are kept apart as Cloud Run keeps them: `traffic` is what
was asked for, `trafficStatuses` what is routed, and the two differ until the operation finishes.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import random
import re
import string
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.behaviour import Behaviour
from sandbox.google_errors import RPC_CODE, GoogleError

LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
_TAG = re.compile(r"^[a-z]([-a-z0-9]{0,44}[a-z0-9])?$")
_CONTAINER_FAILED = (
    "The user-provided container failed to start and listen on the port defined provided by the "
    "PORT=8080 environment variable within the allocated timeout. This can happen when the container "
    "port is misconfigured or if the timeout is too short."
)


def rfc3339(epoch: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _condition(kind: str, state: str, message: str = "", reason: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, "state": state, "lastTransitionTime": rfc3339()}
    if message:
        body["message"] = message
        body["severity"] = "ERROR" if state == "CONDITION_FAILED" else "INFO"
    if reason:
        body["reason"] = reason
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
    observed_generation: int = 0
    latest_created: str = ""
    latest_ready: str = ""
    reconciling: bool = True
    terminal_condition: dict[str, Any] = field(default_factory=dict)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    revision_seq: int = 0
    creator: str = ""
    last_modifier: str = ""

    @property
    def etag(self) -> str:
        digest = hashlib.sha256(f"{self.uid}:{self.generation}".encode()).digest()[:12]
        return '"' + base64.urlsafe_b64encode(digest).decode().rstrip("=") + '"'


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
    """The state of one project's Cloud Run in one region, and the rules that change it."""

    def __init__(
        self,
        project: str,
        region: str,
        *,
        url_for: Callable[[str], str],
        behaviour_of: Callable[[str, str], Behaviour],
        start_ms: float = 300.0,
        route_ms: float = 100.0,
        principal: str = "deployer@nba-props-platform.iam.gserviceaccount.com",
    ) -> None:
        self.project = project
        self.region = region
        self.project_number = str(int(hashlib.sha256(project.encode()).hexdigest(), 16) % 10**12).zfill(12)
        self.url_for = url_for
        self.behaviour_of = behaviour_of
        self.start_ms = start_ms
        self.route_ms = route_ms
        self.principal = principal
        self.services: dict[str, Service] = {}
        self.revisions: dict[str, Revision] = {}
        self.operations: dict[str, Operation] = {}
        self.calls: list[AdminCall] = []
        self.splits: list[tuple[float, str, tuple[tuple[str, int], ...]]] = []
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(f"{project}/{region}")
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
        found = [r for r in self.revisions.values() if r.service == service and not r.delete_time]
        return sorted(found, key=lambda r: (r.create_time, r.name), reverse=True)

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
        if not service_id:
            raise GoogleError("INVALID_ARGUMENT", "service_id is required: pass ?serviceId=NAME.")
        if not _NAME.match(service_id):
            raise GoogleError("INVALID_ARGUMENT", f"service_id '{service_id}' is invalid: it must use only "
                              "lowercase letters, digits and hyphens, begin with a letter, not end with a "
                              "hyphen, and be at most 49 characters.")
        if body.get("name") not in (None, "", self.service_path(service_id)):
            raise GoogleError("INVALID_ARGUMENT", "service.name must be empty on create; the name comes "
                              "from service_id.")
        if service_id in self.services:
            raise GoogleError("ALREADY_EXISTS", f"Resource '{service_id}' already exists.")
        template = self._checked_template(service_id, body)
        traffic = body.get("traffic") or [{"type": LATEST, "percent": 100}]
        self._check_traffic(service_id, traffic, creating=template.get("revision") or "__new__", first=True)
        now = rfc3339()
        service = Service(name=service_id, uid=str(uuid.uuid4()), create_time=now, update_time=now,
                          creator=self.principal, last_modifier=self.principal)
        self._assign(service, body, template, traffic)
        if validate_only:
            return self._finished_operation(service)
        self.services[service_id] = service
        return self._reconcile(service, template_changed=True)

    def update_service(
        self,
        name: str,
        body: dict[str, Any],
        *,
        update_mask: list[str] | None = None,
        validate_only: bool = False,
        allow_missing: bool = False,
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
        if update_mask:
            body = self._masked(service, body, update_mask)
        template = self._checked_template(name, body)
        traffic = body.get("traffic") or [{"type": LATEST, "percent": 100}]
        changed = _template_key(template) != _template_key(service.template) or (
            template.get("revision", "") not in ("", service.template.get("revision", ""))
        )
        existing = template.get("revision", "")
        if existing and existing in self.revisions:
            if _template_key(self.revisions[existing].template) != _template_key(template):
                raise GoogleError("ALREADY_EXISTS", f"Revision named '{existing}' with different "
                                  "configuration already exists.")
            changed = False
        self._check_traffic(name, traffic, creating=existing if changed and existing else
                            ("__new__" if changed else None), first=False)
        if validate_only:
            preview = copy.deepcopy(service)
            self._assign(preview, body, template, traffic)
            return self._finished_operation(preview)
        service.generation += 1
        service.update_time = rfc3339()
        service.last_modifier = self.principal
        self._assign(service, body, template, traffic)
        latest = service.latest_ready
        asked = tuple((t.get("revision") or latest, int(t.get("percent", 0))) for t in traffic)
        self.splits.append((time.time(), name, asked))
        return self._reconcile(service, template_changed=changed)

    def delete_service(self, name: str, etag: str = "") -> Operation:
        service = self.get_service(name)
        if etag and etag != service.etag:
            raise GoogleError("ABORTED", f"etag {etag} is stale for service '{name}'.")
        del self.services[name]
        now = rfc3339()
        for revision in self.revisions_of(name):
            revision.delete_time = now
        return self._finished_operation(service)

    def delete_revision(self, service: str, name: str) -> Operation:
        revision = self.get_revision(service, name)
        owner = self.get_service(service)
        if any(t.get("revision") == name for t in owner.traffic + owner.traffic_statuses):
            raise GoogleError("FAILED_PRECONDITION", f"Revision '{name}' is referenced by the service's "
                              "traffic and cannot be deleted.")
        if name == owner.latest_created:
            raise GoogleError("FAILED_PRECONDITION", f"Revision '{name}' is the latest revision and cannot "
                              "be deleted.")
        revision.delete_time = rfc3339()
        operation = Operation(name=f"{self.parent}/operations/{uuid.uuid4()}", service=service, done=True)
        operation.snapshot = self.revision_json(revision)
        operation.finished.set()
        self.operations[operation.name] = operation
        return operation

    # -- rules ------------------------------------------------------------------------------------

    def _masked(self, service: Service, body: dict[str, Any], mask: list[str]) -> dict[str, Any]:
        """With an update mask, only the named top-level fields change; the rest come from the service."""
        current = self.service_json(service)
        for path in mask:
            top = path.split(".")[0]
            if top not in ("template", "traffic", "labels", "annotations", "description", "ingress",
                           "launchStage", "client", "clientVersion", "scaling"):
                raise GoogleError("INVALID_ARGUMENT", f"update_mask path '{path}' is not updatable.")
            if top in body:
                current[top] = body[top]
            else:
                current.pop(top, None)
        return current

    def _checked_template(self, service: str, body: dict[str, Any]) -> dict[str, Any]:
        template = body.get("template")
        if not template or not template.get("containers"):
            raise GoogleError("INVALID_ARGUMENT", "service.template.containers: a service needs at least "
                              "one container with an image.")
        for index, container in enumerate(template["containers"]):
            if not container.get("image"):
                raise GoogleError("INVALID_ARGUMENT", f"service.template.containers[{index}].image is required.")
        revision = template.get("revision", "")
        if revision and not (revision.startswith(f"{service}-") and _NAME.match(revision)):
            raise GoogleError("INVALID_ARGUMENT", f"template.revision '{revision}' must start with "
                              f"'{service}-' and use only lowercase letters, digits and hyphens.")
        return _with_defaults(template, self.project_number)

    def _check_traffic(self, service: str, traffic: list[dict[str, Any]], *, creating: str | None,
                       first: bool) -> None:
        known = {r.name for r in self.revisions_of(service)}
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
            if kind == REVISION:
                if not revision:
                    raise GoogleError("INVALID_ARGUMENT", f"{where}.revision is required for a REVISION target.")
                if revision not in known and revision != creating:
                    raise GoogleError("INVALID_ARGUMENT", f"{where}: revision '{revision}' does not exist "
                                      f"in service '{service}'.")
            elif kind != LATEST:
                raise GoogleError("INVALID_ARGUMENT", f"{where}.type must be TRAFFIC_TARGET_ALLOCATION_TYPE_"
                                  "LATEST or TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION.")
            tag = target.get("tag", "")
            if tag:
                if not _TAG.match(tag):
                    raise GoogleError("INVALID_ARGUMENT", f"{where}.tag '{tag}' must use lowercase letters, "
                                      "digits and hyphens and begin with a letter.")
                if tag in tags:
                    raise GoogleError("INVALID_ARGUMENT", f"{where}.tag '{tag}' is used more than once.")
                tags.add(tag)
            total += percent
        if total != 100:
            if first and total == 0:
                raise GoogleError("INVALID_ARGUMENT", "A new service must send traffic to its first revision: "
                                  "the traffic percentages sum to 0, not 100 (creating a service with no "
                                  "traffic is not supported).")
            raise GoogleError("INVALID_ARGUMENT", f"Traffic percentages must sum to 100, not {total}.")

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
        generation = service.generation
        created = ""
        if template_changed:
            revision = self._new_revision(service)
            created = revision.name
            behaviour = self.behaviour_of(revision.name, revision.image)
            if behaviour.start == "hang":
                revision.message = "Waiting for the container to become healthy."
            else:
                start = (self.start_ms if behaviour.start_ms is None else behaviour.start_ms) / 1000
                self._later(start, self._revision_started, revision.name, behaviour.start == "ok")
        operation.snapshot = self.service_json(service)
        self._later(self.route_ms / 1000, self._settle, service.name, generation, operation.name, created)
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
        involved = [self.revisions[t["revision"]] for t in service.traffic if t.get("revision") in self.revisions]
        if created:
            involved.append(self.revisions[created])
        if any(r.state == "pending" for r in involved):
            # Routes wait for their revisions, as Cloud Run's do; a revision that hangs holds the operation.
            self._later(0.05, self._settle, name, generation, operation_name, created)
            return
        ready = [r for r in self.revisions_of(name) if r.state == "ready"]
        service.latest_ready = ready[0].name if ready else service.latest_ready
        failed = next((r for r in involved if r.state == "failed"), None)
        if failed is not None:
            message = f"Revision '{failed.name}' is not ready and cannot serve traffic. {failed.message}".strip()
            service.terminal_condition = _condition("Ready", "CONDITION_FAILED", message)
            service.conditions = [_condition("ConfigurationsReady", "CONDITION_FAILED", message),
                                  _condition("RoutesReady", "CONDITION_SUCCEEDED")]
            service.observed_generation = generation
            service.reconciling = False
            self._finish(operation, service, {"code": RPC_CODE["FAILED_PRECONDITION"], "message": message})
            return
        service.traffic_statuses = self._route(service)
        service.terminal_condition = _condition("Ready", "CONDITION_SUCCEEDED")
        service.conditions = [_condition("RoutesReady", "CONDITION_SUCCEEDED"),
                              _condition("ConfigurationsReady", "CONDITION_SUCCEEDED")]
        service.observed_generation = generation
        service.reconciling = False
        self._finish(operation, service, None)

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
        """A service that already ran `len(images)` deploys, the newest serving 100% (LATEST)."""
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
                    "clientVersion": service.client_version}
        body.update({k: v for k, v in optional.items() if v})
        return {k: v for k, v in body.items() if v not in ("", [], {}) or k == "reconciling"}

    def revision_json(self, revision: Revision) -> dict[str, Any]:
        ready = {
            "ready": _condition("Ready", "CONDITION_SUCCEEDED"),
            "failed": _condition("Ready", "CONDITION_FAILED", revision.message, reason="HealthCheckContainerError"),
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
            "etag": '"' + hashlib.sha256(revision.uid.encode()).hexdigest()[:16] + '"',
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
