"""google-cloud-run (REST) for what the bot reads and changes: services, revisions and their traffic.

The client is synchronous; every call runs in a worker thread so the event loop keeps acking Slack, and
every call has a timeout well inside the reconciler's lease. What Cloud Run *routes* (`trafficStatuses`)
is the truth the bot decides on; what it was asked for (`traffic`) only tells a write in flight from one
never made. Writes:
- a new revision is a read-modify-write of the whole service with the etag read, so a change made in
  between is refused (ABORTED) rather than overwritten;
- a traffic change sends only `traffic` with `updateMask=traffic`, as `gcloud run services update-traffic`
  does: echoing the template back would re-send a named revision, which Cloud Run refuses with 409
  "Revision named ... with different configuration already exists" (googleapis/google-cloud-python#11870,
  #14259);
- traffic tags that chatops did not create are kept on every write;
- Google's answer is classified once, here: done, started, refused (do not ask again), retry, conflict.
  `WaitOperation` is best-effort and may return before the operation is done, so it is asked again until
  the operation is done or the call's time runs out; the rollout settles the rest from the service itself.
Google's own words (an error's message, a condition's) reach Slack in the rollout's thread, so they leave here
escaped for mrkdwn (bot/render/mrkdwn.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import requests
from google.api_core import exceptions
from google.api_core.retry import Retry, if_transient_error
from google.cloud import run_v2
from google.protobuf import duration_pb2, field_mask_pb2

from bot.adapters.google_clients import client_kwargs
from bot.domain.rollout import TAG, Live, Rollout, Split, Write, WriteResult, make_split
from bot.environment import Environment
from bot.render.mrkdwn import escape

T = TypeVar("T")
_UNREACHABLE = (exceptions.RetryError, requests.RequestException, TimeoutError)
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REFUSALS = frozenset({"PERMISSION_DENIED", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND", "ALREADY_EXISTS",
                      "OUT_OF_RANGE", "UNIMPLEMENTED"})
"""Google's statuses that asking again will not change (https://cloud.google.com/apis/design/errors).

UNAUTHENTICATED is not one: the REST transport's AuthorizedSession already refreshes the token and sends again on a
401 (google/auth/transport/requests.py, `refresh_status_codes`), so one that still comes back is a token source
having a bad moment (the metadata server), retried like a 503: a forward move pauses at its retry deadline, a
rollback keeps trying."""


class CloudRunUnavailable(Exception):
    """The Admin API could not be reached or refused; the message is fit to show a user."""


class CloudRunRefused(CloudRunUnavailable):
    """Google said no (a status in REFUSALS): asking again will not help; `permission` is what it named."""

    def __init__(self, message: str, status: str, permission: str) -> None:
        super().__init__(message)
        self.status = status
        self.permission = permission


@dataclass(frozen=True)
class ServiceView:
    """A service as the rollout engine needs it: the domain's `Live`, plus URLs and the raw resource."""

    live: Live
    uri: str
    tag_urls: dict[str, str]
    raw: run_v2.Service | None

    @property
    def serving(self) -> str | None:
        """The revision Cloud Run routes 100% of the traffic to, or None when traffic is split."""
        whole = [revision for revision, percent in self.live.traffic if percent == 100]
        return whole[0] if whole else None


@dataclass(frozen=True)
class RevisionInfo:
    name: str
    created: datetime | None
    ready: bool
    image: str


def short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _split(targets: Any, latest: str) -> Split:
    shares: dict[str, int] = {}
    for target in targets:
        revision = target.revision or latest
        shares[revision] = shares.get(revision, 0) + target.percent
    return make_split(shares)


def _view(service: run_v2.Service, candidate: Literal["missing", "pending", "ready", "failed"] = "ready",
          candidate_message: str = "") -> ServiceView:
    latest = short(service.latest_ready_revision)
    routed = _split(service.traffic_statuses, latest)
    asked = _split(service.traffic, latest)
    tags = {status.tag: status.revision or latest for status in service.traffic_statuses if status.tag}
    tag_urls = {status.tag: status.uri for status in service.traffic_statuses if status.tag and status.uri}
    terminal = service.terminal_condition
    failed = not service.reconciling and terminal.state == run_v2.Condition.State.CONDITION_FAILED
    live = Live(exists=True, traffic=routed, tags=tags, candidate=candidate, candidate_message=candidate_message,
                requested=asked, generation=service.generation, reconciling=service.reconciling,
                failure=escape(terminal.message or "the last change failed") if failed else "",
                latest_created=short(service.latest_created_revision))
    return ServiceView(live, service.uri, tag_urls, service)


def _status(exc: exceptions.GoogleAPICallError) -> str:
    try:
        status: str = exc.response.json()["error"]["status"]
    except (AttributeError, KeyError, TypeError, ValueError):
        return ""
    return status


def _permission(exc: exceptions.GoogleAPICallError) -> str:
    """The permission Google's ErrorInfo names, when it sent one."""
    for detail in exc.details or ():
        metadata = detail.get("metadata") if isinstance(detail, dict) else None
        if isinstance(metadata, dict) and metadata.get("permission"):
            return str(metadata["permission"])
    return ""


def _message(exc: exceptions.GoogleAPICallError) -> str:
    """Google's own message, without the method and URL google-api-core prefixes it with."""
    try:
        return escape(str(exc.response.json()["error"]["message"]).splitlines()[0][:400])
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        return _reason(exc)


def _reason(exc: BaseException) -> str:
    return escape((str(exc).splitlines() or [type(exc).__name__])[0][:300])


def classify(exc: BaseException) -> WriteResult:
    """Google's answer to a write, in the rollout's terms."""
    if isinstance(exc, exceptions.GoogleAPICallError):
        status = _status(exc) or (exc.grpc_status_code.name if exc.grpc_status_code is not None else "")
        if status == "ABORTED":  # over REST a stale etag arrives as 409 ABORTED
            return WriteResult("conflict", status=status, message=_message(exc))
        if status in REFUSALS:
            return WriteResult("refused", status=status, message=_message(exc), permission=_permission(exc))
        return WriteResult("retry", status=status, message=f"{exc.code} {_message(exc)}")
    return WriteResult("retry", message=f"the Cloud Run Admin API did not answer ({_reason(exc)})")


class CloudRunGateway:
    def __init__(self, project: str, region: str, env: Environment, *, call_timeout: float = 10.0,
                 url_ttl: float = 60.0) -> None:
        self.parent = f"projects/{project}/locations/{region}"
        kwargs = client_kwargs(env.cloud_run_endpoint, env)
        self.services = run_v2.ServicesClient(**kwargs)
        self.revisions = run_v2.RevisionsClient(**kwargs)
        self.timeout = call_timeout
        self._retry = Retry(predicate=if_transient_error, initial=0.25, maximum=2.0, multiplier=2.0,
                            timeout=call_timeout)
        self._url_ttl = url_ttl
        self._urls: dict[str, str] = {}
        self._urls_at = 0.0

    def service_name(self, service: str) -> str:
        return f"{self.parent}/services/{service}"

    async def _read(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except exceptions.GoogleAPICallError as exc:
            result = classify(exc)
            if result.outcome == "refused":
                raise CloudRunRefused(f"the Cloud Run Admin API refused: {result.status} {result.message}",
                                      result.status, result.permission) from None
            raise CloudRunUnavailable(f"the Cloud Run Admin API did not answer ({_message(exc)})") from None
        except _UNREACHABLE as exc:
            raise CloudRunUnavailable(f"the Cloud Run Admin API did not answer ({_reason(exc)})") from None

    async def service_urls(self) -> dict[str, str]:
        """Every service's URL, from one paged list call; URLs change rarely, so they are cached briefly."""
        if self._urls and time.monotonic() - self._urls_at < self._url_ttl:
            return self._urls

        def fetch() -> dict[str, str]:
            listing = self.services.list_services(request={"parent": self.parent, "page_size": 1000},
                                                  timeout=self.timeout, retry=self._retry)
            return {short(s.name): s.uri for s in listing}

        try:
            self._urls = await self._read(fetch)
        except CloudRunUnavailable:
            if self._urls:
                return self._urls  # a stale map beats none while the Admin API is down
            raise
        self._urls_at = time.monotonic()
        return self._urls

    async def read(self, service: str, candidate: str | None = None) -> ServiceView:
        """The service now, and how far `candidate` has come (missing, pending, ready or failed)."""

        def fetch() -> ServiceView:
            try:
                found = self.services.get_service(name=self.service_name(service), timeout=self.timeout,
                                                  retry=self._retry)
            except exceptions.NotFound:
                return ServiceView(Live(False, (), {}, "missing"), "", {}, None)
            if not candidate:
                return _view(found)
            try:
                revision = self.revisions.get_revision(name=f"{self.service_name(service)}/revisions/{candidate}",
                                                       timeout=self.timeout, retry=self._retry)
            except exceptions.NotFound:
                return _view(found, "missing")
            return _view(found, *_revision_state(revision))

        return await self._read(fetch)

    async def revisions_of(self, service: str) -> list[RevisionInfo]:
        """Every revision of the service, newest first by createTime (the API promises no order of its own)."""

        def fetch() -> list[RevisionInfo]:
            listing = self.revisions.list_revisions(request={"parent": self.service_name(service), "page_size": 100},
                                                    timeout=self.timeout, retry=self._retry)
            found = []
            for revision in listing:
                created = revision.create_time if revision.create_time else None
                image = revision.containers[0].image if revision.containers else ""
                found.append(RevisionInfo(short(revision.name), created, _revision_state(revision)[0] == "ready",
                                          image))
            return sorted(found, key=lambda r: (r.created is not None, r.created or 0, r.name), reverse=True)

        return await self._read(fetch)

    async def apply(self, rollout: Rollout, write: Write, view: ServiceView) -> WriteResult:
        """Make one write and say what came of it; never raises for anything Google answers."""
        try:
            return await asyncio.to_thread(self._apply, rollout, write, view)
        except exceptions.GoogleAPICallError as exc:
            return classify(exc)
        except _UNREACHABLE as exc:
            return classify(exc)

    def _apply(self, rollout: Rollout, write: Write, view: ServiceView) -> WriteResult:
        if write.kind == "create_service":
            template = run_v2.RevisionTemplate(containers=[run_v2.Container(image=rollout.image)],
                                               revision=rollout.candidate)
            operation = self.services.create_service(parent=self.parent, service_id=rollout.service,
                                                     service=run_v2.Service(template=template), timeout=self.timeout)
            return WriteResult("started", generation=_generation(operation))
        if view.raw is None:
            return WriteResult("refused", status="NOT_FOUND", message=f"{rollout.service} does not exist any more")
        candidate = rollout.candidate if write.tagged else ""
        targets = traffic_targets(view.raw, write.traffic, candidate)
        if write.kind == "create_candidate":
            service = run_v2.Service.deserialize(run_v2.Service.serialize(view.raw))
            service.template.containers[0].image = rollout.image
            service.template.revision = rollout.candidate
            del service.traffic[:]
            service.traffic.extend(targets)
            operation = self.services.update_service(service=service, timeout=self.timeout)
            return WriteResult("started", generation=_generation(operation))
        return self._set_traffic(view.raw, targets)

    def _set_traffic(self, current: run_v2.Service, targets: list[run_v2.TrafficTarget]) -> WriteResult:
        request = run_v2.UpdateServiceRequest(
            service=run_v2.Service(name=current.name, traffic=targets, etag=current.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["traffic"]))
        operation = self.services.update_service(request=request, timeout=self.timeout)
        generation = _generation(operation)
        done = self._wait(operation.operation.name, time.monotonic() + self.timeout)
        if done is None or not done.done:
            return WriteResult("started", generation=generation)
        if done.error.code:
            message = escape(done.error.message) or f"code {done.error.code}"
            return WriteResult("refused", status="FAILED", message=message)
        final = run_v2.Service.deserialize(done.response.value)
        return WriteResult("done", generation=final.generation or generation, traffic=_view(final).live.traffic)

    def _wait(self, name: str, deadline: float) -> Any:
        """WaitOperation until done or `deadline`; it is best-effort and may answer early, so it is asked again."""
        done = None
        while (left := deadline - time.monotonic()) > 0.05:
            done = self.services.wait_operation(
                request={"name": name, "timeout": duration_pb2.Duration(seconds=max(1, int(left)))},
                timeout=left + 1)
            if done.done:
                return done
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return done

    async def route(self, service: str, revision: str) -> tuple[ServiceView, WriteResult]:
        """All traffic to one revision, other teams' tags kept, in one call: `/rollback` outside a rollout."""
        view = await self.read(service)
        if view.raw is None:
            raise CloudRunRefused(f"{service} does not exist", "NOT_FOUND", "")
        raw = view.raw
        targets = traffic_targets(raw, make_split({revision: 100}), "")
        try:
            result = await asyncio.to_thread(self._set_traffic, raw, targets)
        except (exceptions.GoogleAPICallError, *_UNREACHABLE) as exc:
            result = classify(exc)
        return view, result


def traffic_targets(current: run_v2.Service, traffic: Split, candidate: str) -> list[run_v2.TrafficTarget]:
    """The traffic list for a write: `traffic` by revision, chatops' tag on `candidate` when given, and every tag
    someone else put on the service kept where it points."""
    targets = [run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=percent)
               for revision, percent in traffic]
    by_revision = {target.revision: target for target in targets}
    if candidate:
        if candidate in by_revision:
            by_revision[candidate].tag = TAG
        else:
            targets.append(run_v2.TrafficTarget(type_=REVISION, revision=candidate, percent=0, tag=TAG))
    for kept in current.traffic:
        if not kept.tag or kept.tag == TAG:
            continue
        owner = by_revision.get(kept.revision) if kept.revision else None
        if owner is not None and not owner.tag:
            owner.tag = kept.tag
        else:
            targets.append(run_v2.TrafficTarget(type_=kept.type_, revision=kept.revision, percent=0, tag=kept.tag))
    return targets


def _generation(operation: Any) -> int:
    """The service generation a write produced, from the operation's metadata (the Service as written)."""
    metadata = getattr(operation, "metadata", None)
    return int(getattr(metadata, "generation", 0) or 0)


CandidateState = Literal["missing", "pending", "ready", "failed"]


def _revision_state(revision: run_v2.Revision) -> tuple[CandidateState, str]:
    ready = next((c for c in revision.conditions if c.type_ == "Ready"), None)
    if ready is None:
        return "pending", ""
    if ready.state == run_v2.Condition.State.CONDITION_SUCCEEDED:
        return "ready", ""
    if ready.state == run_v2.Condition.State.CONDITION_FAILED:
        return "failed", escape(ready.message)
    return "pending", escape(ready.message)
