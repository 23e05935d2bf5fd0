"""One Cloud Run service, simulated in plain Python for the model checker: no sandbox, no I/O, no clock.

It keeps what Cloud Run keeps, after the v2 Service reference
(https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services), as the sandbox does
(sandbox/cloudrun.py), but moves in steps the checker chooses instead of timers:
- the spec (`traffic`, with chatops' tag) and the routed state (`trafficStatuses`) are apart: a new spec is
  routed only after some steps, and `reconciling` is true until then; routes wait for the revisions they name;
- `generation` "monotonically increases every time the user modifies the desired state": a write that changes
  nothing leaves it alone and its operation is done at once, with the status as it is then;
- `etag` moves when the spec changes and again when routing ends; a write carrying an older etag is refused
  with ABORTED ("the resource was modified since it was read");
- a new revision becomes ready after some steps.

A write's answer is given as the engine receives it: `WriteResult` exactly as `bot/adapters/cloudrun.py`
classifies Google's answer (`classify`, `_set_traffic`): ABORTED is a conflict; 5xx, 429 and a call that timed
out are `retry` (with a timeout that did, or did not, land); a traffic write is `done` only once its operation
is (WaitOperation may answer early, so until the call's time runs out it is `started` with the new
generation); a new revision's write is always `started`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.domain.rollout import TAG, Live, Split, Write, WriteResult

Fault = Literal["none", "aborted", "unavailable", "quota", "timeout", "timeout_landed"]
FAULTS: tuple[Fault, ...] = ("none", "aborted", "unavailable", "quota", "timeout", "timeout_landed")

_ABORTED = "The service was modified since it was read. Read it again and retry."
_TIMED_OUT = ("the Cloud Run Admin API did not answer (HTTPSConnectionPool(host='run.googleapis.com', port=443): "
              "Read timed out. (read timeout=10.0))")
_ANSWERS: dict[Fault, WriteResult] = {
    # bot/adapters/cloudrun.py `classify`: ABORTED -> conflict; other statuses -> retry, "<code> <message>"
    "aborted": WriteResult("conflict", status="ABORTED", message=_ABORTED),
    "unavailable": WriteResult("retry", status="UNAVAILABLE", message="503 The service is currently unavailable."),
    "quota": WriteResult("retry", status="RESOURCE_EXHAUSTED",
                         message="429 Quota exceeded for quota metric 'Write requests' of service "
                                 "'run.googleapis.com'"),
    "timeout": WriteResult("retry", message=_TIMED_OUT),
    "timeout_landed": WriteResult("retry", message=_TIMED_OUT),
}


@dataclass(frozen=True)
class View:
    """A read: what the engine decides on, and the etag its next write carries (the adapter's `view.raw.etag`)."""

    live: Live
    etag: int


@dataclass
class CloudRun:
    stable: str
    candidate: str
    spec: Split
    routed: Split
    generation: int = 3
    etag: int = 1
    spec_tagged: bool = False  # chatops' tag on the candidate, as asked
    routed_tagged: bool = False
    routing: bool = False
    routing_left: int = 0
    candidate_starts_in: int | None = None  # None: no such revision yet; 0: ready
    latest_created: str = ""
    fenced: bool = True  # the etag fence; the checker takes it out to show it finds a write landing over a person's

    @property
    def share(self) -> int:
        """The candidate's routed share: what the invariants are about."""
        return dict(self.routed).get(self.candidate, 0)

    @property
    def asked_share(self) -> int:
        return dict(self.spec).get(self.candidate, 0)

    def read(self, *, with_candidate: bool) -> View:
        """GetService (and GetRevision of the candidate while it is being deployed), as `_view` maps them."""
        state: Literal["missing", "pending", "ready"] = "ready"
        if with_candidate:
            state = ("missing" if self.candidate_starts_in is None else
                     "ready" if self.candidate_starts_in == 0 else "pending")
        live = Live(exists=True, traffic=self.routed, tags={TAG: self.candidate} if self.routed_tagged else {},
                    candidate=state, requested=self.spec, generation=self.generation, reconciling=self.routing,
                    latest_created=self.latest_created or self.stable)
        return View(live, self.etag)

    def apply(self, write: Write, view: View, fault: Fault, steps: int) -> WriteResult:
        """One write the engine makes, with the etag of `view`; `steps` is how long Cloud Run takes to route it
        (0: within the call). What lands, lands whatever the caller hears."""
        if fault in ("aborted", "unavailable", "quota", "timeout"):
            return _ANSWERS[fault]
        if self.fenced and view.etag != self.etag:
            return _ANSWERS["timeout"] if fault == "timeout_landed" else _ANSWERS["aborted"]
        if write.kind == "create_candidate":
            self.candidate_starts_in = steps
            self.latest_created = self.candidate
            self._change(write.traffic, True, steps)
            return _ANSWERS["timeout_landed"] if fault == "timeout_landed" else WriteResult(
                "started", generation=self.generation)
        if (write.traffic, write.tagged) == (self.spec, self.spec_tagged):
            # nothing to change: the operation is done at once, with the service as it is (maybe still routing)
            return _ANSWERS["timeout_landed"] if fault == "timeout_landed" else WriteResult(
                "done", generation=self.generation, traffic=self.routed)
        self._change(write.traffic, write.tagged, steps)
        if fault == "timeout_landed":
            return _ANSWERS[fault]
        if self.routing:
            return WriteResult("started", generation=self.generation)
        return WriteResult("done", generation=self.generation, traffic=self.routed)

    def person_sets(self, traffic: Split, steps: int) -> None:
        """Someone runs `gcloud run services update-traffic`: a new generation, tags kept, no etag sent."""
        if traffic != self.spec:
            self._change(traffic, self.spec_tagged, steps)

    def step(self) -> None:
        """Time passes for Cloud Run: a starting revision comes closer to ready, routing to its end."""
        if self.candidate_starts_in:
            self.candidate_starts_in -= 1
        if self.routing_left:
            self.routing_left -= 1
        self._route()

    def _change(self, traffic: Split, tagged: bool, steps: int) -> None:
        self.spec, self.spec_tagged = traffic, tagged
        self.generation += 1
        self.etag += 1
        self.routing, self.routing_left = True, steps
        self._route()

    def _route(self) -> None:
        """Routing ends once its time is up and every revision it names is ready (the sandbox's `_settle`)."""
        needs_candidate = self.spec_tagged or self.candidate in dict(self.spec)
        if not self.routing or self.routing_left or (needs_candidate and self.candidate_starts_in != 0):
            return
        self.routed, self.routed_tagged = self.spec, self.spec_tagged
        self.routing = False
        self.etag += 1
