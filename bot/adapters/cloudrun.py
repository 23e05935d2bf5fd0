"""google-cloud-run (REST) for what the bot reads and changes: services, revisions and their traffic.

The client is synchronous; every call runs in a worker thread so the event loop keeps acking Slack.
Every write sends the etag it read, so a change someone else made in between is refused by Cloud Run
instead of being overwritten.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import requests
from google.api_core import exceptions
from google.cloud import run_v2
from google.protobuf import duration_pb2

from bot.adapters.google_clients import client_kwargs
from bot.domain.rollout import TAG, Live, Rollout, Split, Write, make_split
from bot.environment import Environment

T = TypeVar("T")
_GOOGLE_ERRORS = (exceptions.GoogleAPICallError, exceptions.RetryError, requests.RequestException)
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST


class CloudRunUnavailable(Exception):
    """The Admin API could not be reached or refused; the message is fit to show a user."""


class Conflict(CloudRunUnavailable):
    """The service changed between our read and our write (stale etag)."""


@dataclass(frozen=True)
class ServiceView:
    """A service as the rollout engine needs it: the domain's `Live`, plus URLs and the raw resource."""

    live: Live
    uri: str
    tag_urls: dict[str, str]
    raw: run_v2.Service | None

    @property
    def serving(self) -> str | None:
        """The revision with 100% of the traffic, or None when traffic is split."""
        whole = [revision for revision, percent in self.live.traffic if percent == 100]
        return whole[0] if whole else None


def short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _view(service: run_v2.Service, candidate_state: Live | None = None) -> ServiceView:
    latest = short(service.latest_ready_revision)
    shares: dict[str, int] = {}
    tags: dict[str, str] = {}
    for target in service.traffic:
        revision = target.revision or latest
        shares[revision] = shares.get(revision, 0) + target.percent
        if target.tag:
            tags[target.tag] = revision
    tag_urls = {status.tag: status.uri for status in service.traffic_statuses if status.tag and status.uri}
    base = candidate_state or Live(True, (), {}, "", "ready")
    live = Live(exists=True, traffic=make_split(shares), tags=tags, etag=service.etag, candidate=base.candidate,
                candidate_message=base.candidate_message)
    return ServiceView(live, service.uri, tag_urls, service)


def _status(exc: exceptions.GoogleAPICallError) -> str:
    try:
        status: str = exc.response.json()["error"]["status"]
    except (AttributeError, KeyError, TypeError, ValueError):
        return ""
    return status


def _reason(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


class CloudRunGateway:
    def __init__(self, project: str, region: str, env: Environment, *, url_ttl: float = 60.0) -> None:
        self.parent = f"projects/{project}/locations/{region}"
        kwargs = client_kwargs(env.cloud_run_endpoint, env)
        self.services = run_v2.ServicesClient(**kwargs)
        self.revisions = run_v2.RevisionsClient(**kwargs)
        self._url_ttl = url_ttl
        self._urls: dict[str, str] = {}
        self._urls_at = 0.0

    def service_name(self, service: str) -> str:
        return f"{self.parent}/services/{service}"

    async def _call(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except exceptions.Conflict as exc:  # over REST, ABORTED (stale etag) arrives as a 409 Conflict
            if _status(exc) == "ABORTED":
                raise Conflict(f"the service changed while we wrote to it ({_reason(exc)})") from None
            raise CloudRunUnavailable(f"the Cloud Run Admin API refused: {_reason(exc)}") from None
        except _GOOGLE_ERRORS as exc:
            raise CloudRunUnavailable(f"the Cloud Run Admin API did not answer ({_reason(exc)})") from None

    async def service_urls(self) -> dict[str, str]:
        """Every service's URL, from one paged list call; URLs change rarely, so they are cached briefly."""
        if self._urls and time.monotonic() - self._urls_at < self._url_ttl:
            return self._urls

        def fetch() -> dict[str, str]:
            listing = self.services.list_services(request={"parent": self.parent, "page_size": 1000}, timeout=15)
            return {short(s.name): s.uri for s in listing}

        try:
            self._urls = await self._call(fetch)
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
                found = self.services.get_service(name=self.service_name(service), timeout=15)
            except exceptions.NotFound:
                return ServiceView(Live(False, (), {}, "", "missing"), "", {}, None)
            if not candidate:
                return _view(found)
            try:
                revision = self.revisions.get_revision(name=f"{self.service_name(service)}/revisions/{candidate}",
                                                       timeout=15)
            except exceptions.NotFound:
                return _view(found, Live(True, (), {}, "", "missing"))
            state, message = _revision_state(revision)
            return _view(found, Live(True, (), {}, "", state, message))

        return await self._call(fetch)

    async def revision_names(self, service: str) -> list[str]:
        def fetch() -> list[str]:
            listing = self.revisions.list_revisions(request={"parent": self.service_name(service), "page_size": 100},
                                                    timeout=15)
            return [short(r.name) for r in listing]

        return await self._call(fetch)

    async def apply(self, rollout: Rollout, write: Write, view: ServiceView) -> tuple[Split, str]:
        """Make one write; returns the traffic and etag it left. Traffic writes wait until routed."""
        if write.kind == "create_service":
            return await self._call(lambda: self._create(rollout))
        if view.raw is None:
            raise CloudRunUnavailable(f"{rollout.service} does not exist any more")
        service = view.raw
        if write.kind == "create_candidate":
            service.template.containers[0].image = rollout.image
            service.template.revision = rollout.candidate
        del service.traffic[:]
        for revision, percent in write.traffic:
            tag = TAG if write.tagged and revision == rollout.candidate else ""
            service.traffic.append(run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=percent, tag=tag))
        if write.tagged and rollout.candidate not in dict(write.traffic):
            service.traffic.append(run_v2.TrafficTarget(type_=REVISION, revision=rollout.candidate, percent=0, tag=TAG))
        return await self._call(lambda: self._update(service, wait=write.kind == "set_traffic"))

    def _update(self, service: run_v2.Service, *, wait: bool) -> tuple[Split, str]:
        operation = self.services.update_service(service=service, timeout=30)
        if not wait:
            started = operation.metadata or service  # the Service as the write left it, with its new etag
            return _view(started).live.traffic, started.etag
        done = self.services.wait_operation(request={"name": operation.operation.name,
                                                     "timeout": duration_pb2.Duration(seconds=60)})
        if not done.done:
            raise CloudRunUnavailable("Cloud Run did not finish routing traffic within 60 s")
        if done.error.code:
            raise CloudRunUnavailable(f"Cloud Run refused the traffic change: {done.error.message}")
        final = run_v2.Service.deserialize(done.response.value)
        return _view(final).live.traffic, final.etag

    def _create(self, rollout: Rollout) -> tuple[Split, str]:
        template = run_v2.RevisionTemplate(containers=[run_v2.Container(image=rollout.image)],
                                           revision=rollout.candidate)
        operation = self.services.create_service(parent=self.parent, service_id=rollout.service,
                                                 service=run_v2.Service(template=template), timeout=30)
        started = operation.metadata
        return make_split({rollout.candidate: 100}), started.etag if started else ""

    async def route(self, service: str, revision: str) -> tuple[Split, str]:
        """All traffic to one revision by name, tags dropped, in one call: `/rollback` outside a rollout."""
        view = await self.read(service)
        if view.raw is None:
            raise CloudRunUnavailable(f"{service} does not exist")
        raw = view.raw
        del raw.traffic[:]
        raw.traffic.append(run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=100))
        return await self._call(lambda: self._update(raw, wait=True))


CandidateState = Literal["missing", "pending", "ready", "failed"]


def _revision_state(revision: run_v2.Revision) -> tuple[CandidateState, str]:
    ready = next((c for c in revision.conditions if c.type_ == "Ready"), None)
    if ready is None:
        return "pending", ""
    if ready.state == run_v2.Condition.State.CONDITION_SUCCEEDED:
        return "ready", ""
    if ready.state == run_v2.Condition.State.CONDITION_FAILED:
        return "failed", ready.message
    return "pending", ready.message
