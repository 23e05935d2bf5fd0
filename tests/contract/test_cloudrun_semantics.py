"""Cloud Run's v2 semantics that a careless client trips over, through google-cloud-run's REST client: writes
accepted whose operation then fails, named revisions, generation and etag, list order, best-effort waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from google.api_core import exceptions
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from sandbox.world import World
from tests.conftest import google_auth
from tests.contract.schemas import assert_google

PARENT = "projects/nba-props-platform/locations/us-west2"
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
Failed = run_v2.Condition.State.CONDITION_FAILED


def name_of(service: str) -> str:
    return f"{PARENT}/services/{service}"


def image(service: str, tag: str = "v1") -> str:
    return f"us-west2-docker.pkg.dev/nba-props-platform/cloud-run/{service}:{tag}"


async def fresh(services_client: run_v2.ServicesClient, service_id: str, revision: str = "") -> run_v2.Service:
    """A new service of this test's own, serving its first revision."""
    template = run_v2.RevisionTemplate(containers=[run_v2.Container(image=image(service_id))], revision=revision)
    return await asyncio.to_thread(lambda: services_client.create_service(
        parent=PARENT, service=run_v2.Service(template=template), service_id=service_id).result(timeout=30))


async def update(services_client: run_v2.ServicesClient, service: run_v2.Service) -> run_v2.Service:
    return await asyncio.to_thread(lambda: services_client.update_service(service=service).result(timeout=30))


@asynccontextmanager
async def cloud_run_limits(world: World, **figures: float) -> AsyncIterator[None]:
    async with httpx.AsyncClient(base_url=world.url("control")) as control:
        before = (await control.get("/limits")).json()["cloud_run"]
        assert (await control.patch("/limits/cloud_run", json=figures)).status_code == 200
        try:
            yield
        finally:
            restore = {key: before[key] for key in figures}
            assert (await control.patch("/limits/cloud_run", json=restore)).status_code == 200


async def test_the_cloud_run_figures_are_a_limit_group_with_world_overrides(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.url("control")) as control:
        figures = (await control.get("/limits")).json()["cloud_run"]
    assert figures["revision_start_ms"] == 60 and figures["route_ms"] == 20  # WorldOptions(start_ms=60, route_ms=20)
    assert (figures["service_name_max"], figures["revision_name_max"], figures["tag_and_service_max"]) == (49, 63, 46)


async def test_a_traffic_target_naming_a_missing_revision_fails_the_operation_not_the_request(
    world: World, services_client: run_v2.ServicesClient,
) -> None:
    """The write is accepted; the operation fails with code 13: "Error code 13, message: Revision '...' does not
    exist or is deleted. Update all traffic to route to currently available revisions."
    (https://github.com/terraform-google-modules/terraform-docs-samples/pull/269). Then `traffic` (asked) and
    `trafficStatuses` (routed) differ, and the status keeps the last serving state: "If reconciliation failed,
    traffic_statuses, observed_generation, and latest_ready_revision will have the state of the last serving
    revision" (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services)."""
    before = await fresh(services_client, "sem-missing")
    serving = before.traffic_statuses[0].revision
    before.traffic[:] = [run_v2.TrafficTarget(type_=REVISION, revision="sem-missing-gone", percent=100)]
    operation = await asyncio.to_thread(services_client.update_service, service=before)
    with pytest.raises(exceptions.InternalServerError, match="Revision 'sem-missing-gone' does not exist or is "
                       "deleted"):
        await asyncio.to_thread(operation.result, timeout=30)
    async with httpx.AsyncClient(base_url=world.url("cloud_run"), headers=google_auth(world)) as client:
        failed = (await client.get(f"/v2/{operation.operation.name}")).json()
    assert_google("run.v2", "GoogleLongrunningOperation", failed)
    assert failed["error"]["code"] == 13 and "response" not in failed
    after = await asyncio.to_thread(services_client.get_service, name=name_of("sem-missing"))
    assert [t.revision for t in after.traffic] == ["sem-missing-gone"]
    assert [(s.revision, s.percent) for s in after.traffic_statuses] == [(serving, 100)]
    assert after.generation == before.generation + 1 and after.observed_generation == before.generation
    assert after.latest_ready_revision == before.latest_ready_revision and not after.reconciling
    assert after.terminal_condition.state == Failed and "does not exist" in after.terminal_condition.message


async def test_a_failed_revision_leaves_the_last_serving_state(
    world: World, services_client: run_v2.ServicesClient
) -> None:
    """Same rule when the new revision cannot start: observedGeneration stays behind generation
    (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services, `reconciling`)."""
    before = await fresh(services_client, "sem-crash")
    world.behaviours.declare_image(image("sem-crash", "crashes"), {"start": "fail"})
    before.template.containers[0].image = image("sem-crash", "crashes")
    operation = await asyncio.to_thread(services_client.update_service, service=before)
    with pytest.raises(exceptions.GoogleAPICallError, match="failed to start and listen on the port"):
        await asyncio.to_thread(operation.result, timeout=30)
    after = await asyncio.to_thread(services_client.get_service, name=name_of("sem-crash"))
    assert after.observed_generation == before.generation == after.generation - 1
    assert after.latest_ready_revision == before.latest_ready_revision != after.latest_created_revision
    assert after.traffic_statuses[0].revision == before.traffic_statuses[0].revision
    assert after.terminal_condition.state == Failed


async def test_a_named_revision_sent_back_is_refused_even_under_an_update_mask(
    services_client: run_v2.ServicesClient, revisions_client: run_v2.RevisionsClient
) -> None:
    """Read-modify-write of a service whose template names its revision: "409 Revision named '...' with different
    configuration already exists." for a traffic-only change
    (https://github.com/googleapis/google-cloud-python/issues/11870) and under an update mask that leaves the
    template out (https://github.com/googleapis/google-cloud-python/issues/14259). Clearing template.revision lets
    Cloud Run name revisions (https://github.com/hashicorp/terraform-provider-google/issues/9438), and with the
    template otherwise unchanged no revision is created ("a new revision will be created from the template even
    if the system doesn't detect any changes" only with forceNewRevision, run.v2 services.patch)."""
    before = await fresh(services_client, "sem-named", revision="sem-named-00001-abc")
    assert before.template.revision == "sem-named-00001-abc"
    before.traffic[:] = [run_v2.TrafficTarget(type_=REVISION, revision="sem-named-00001-abc", percent=100,
                                              tag="current")]
    traffic_only = run_v2.UpdateServiceRequest(service=before, update_mask=field_mask_pb2.FieldMask(paths=["traffic"]))
    for request in (traffic_only, run_v2.UpdateServiceRequest(service=before)):
        with pytest.raises(exceptions.Conflict, match="Revision named 'sem-named-00001-abc' with different "
                           "configuration already exists"):
            await asyncio.to_thread(services_client.update_service, request=request)

    traffic_only.service.template.revision = ""
    after = await asyncio.to_thread(lambda: services_client.update_service(request=traffic_only).result(timeout=30))
    revisions = await asyncio.to_thread(lambda: list(revisions_client.list_revisions(parent=name_of("sem-named"))))
    assert after.generation == before.generation + 1
    assert [r.name.rsplit("/", 1)[1] for r in revisions] == ["sem-named-00001-abc"]
    assert [(s.revision, s.tag) for s in after.traffic_statuses] == [("sem-named-00001-abc", "current")]

    # The mask kept the stored template, which still names the revision: a new image under that name is refused,
    # the whole template without a name makes a new, server-named revision.
    after.template.revision = ""
    after.template.containers[0].image = image("sem-named", "v2")
    containers_only = field_mask_pb2.FieldMask(paths=["template.containers"])
    with pytest.raises(exceptions.Conflict, match="already exists"):
        await asyncio.to_thread(services_client.update_service,
                                request=run_v2.UpdateServiceRequest(service=after, update_mask=containers_only))
    whole = field_mask_pb2.FieldMask(paths=["template"])
    deployed = await asyncio.to_thread(lambda: services_client.update_service(
        request=run_v2.UpdateServiceRequest(service=after, update_mask=whole)).result(timeout=30))
    assert deployed.latest_created_revision.rsplit("/", 1)[1].startswith("sem-named-00002-")


async def test_generation_moves_only_when_the_desired_state_does(services_client: run_v2.ServicesClient) -> None:
    """`generation`: "A number that monotonically increases every time the user modifies the desired state";
    `etag`: "A system-generated fingerprint for this version of the resource"
    (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services)."""
    read = await fresh(services_client, "sem-generation")
    unchanged = await update(services_client, run_v2.Service(read))
    assert (unchanged.generation, unchanged.etag) == (read.generation, read.etag)
    read.labels["team"] = "grading"
    changed = await update(services_client, read)
    assert changed.generation == read.generation + 1 and changed.etag != read.etag


async def test_the_etag_moves_when_reconciliation_finishes(services_client: run_v2.ServicesClient) -> None:
    """The etag fingerprints the whole resource, status included: what a client read while the operation ran is
    stale once the system writes the outcome, and a write carrying it is ABORTED."""
    read = await fresh(services_client, "sem-etag")
    read.labels["step"] = "one"
    operation = await asyncio.to_thread(services_client.update_service, service=read)
    during = run_v2.Service.deserialize(operation.operation.metadata.value)
    assert during.reconciling
    done = await asyncio.to_thread(operation.result, timeout=30)
    assert done.generation == during.generation and done.etag != during.etag
    during.labels["step"] = "two"
    with pytest.raises(exceptions.Conflict) as stale:
        await asyncio.to_thread(services_client.update_service, service=during)
    assert stale.value.response.json()["error"]["status"] == "ABORTED"


async def test_revisions_are_listed_in_no_promised_order(
    services_client: run_v2.ServicesClient, revisions_client: run_v2.RevisionsClient
) -> None:
    """ListRevisionsRequest has no order_by and the reference promises none: the emulator lists by uid, stable
    but unrelated to creation, so a client that wants the newest must sort by createTime."""
    service = await fresh(services_client, "sem-order")
    for step in range(3):
        service.template.containers[0].env[:] = [run_v2.EnvVar(name="STEP", value=str(step))]
        service = await update(services_client, service)
    first, second = [await asyncio.to_thread(lambda: list(revisions_client.list_revisions(parent=service.name)))
                     for _ in range(2)]
    assert [r.name for r in first] == [r.name for r in second] == [r.name for r in sorted(first, key=lambda r: r.uid)]
    newest = max(first, key=lambda r: r.create_time)
    assert newest.name == service.latest_created_revision and len(first) == 4


async def test_deleting_a_revision_honours_validate_only_and_its_etag(
    services_client: run_v2.ServicesClient, revisions_client: run_v2.RevisionsClient
) -> None:
    """DeleteRevisionRequest: validate_only "Indicates that the request should be validated without actually
    deleting any resources"; etag "may be used to detect modification conflict" (run.v2 discovery document)."""
    service = await fresh(services_client, "sem-delete")
    old = service.latest_created_revision
    service.template.containers[0].image = image("sem-delete", "v2")
    await update(services_client, service)
    revision = await asyncio.to_thread(revisions_client.get_revision, name=old)
    await asyncio.to_thread(lambda: revisions_client.delete_revision(
        request={"name": old, "validate_only": True}).result(timeout=30))
    assert (await asyncio.to_thread(revisions_client.get_revision, name=old)).name == old
    with pytest.raises(exceptions.Conflict):
        await asyncio.to_thread(revisions_client.delete_revision, request={"name": old, "etag": '"stale"'})
    await asyncio.to_thread(lambda: revisions_client.delete_revision(
        request={"name": old, "etag": revision.etag}).result(timeout=30))
    with pytest.raises(exceptions.NotFound):
        await asyncio.to_thread(revisions_client.get_revision, name=old)


async def test_wait_operation_may_return_early_but_never_late(
    world: World, services_client: run_v2.ServicesClient
) -> None:
    """WaitOperation "is on a best-effort basis. It may return the latest state before the specified timeout
    (including immediately), meaning even an immediate response is no guarantee that the operation is done"
    (https://github.com/googleapis/googleapis/blob/master/google/longrunning/operations.proto)."""
    read = await fresh(services_client, "sem-wait")

    async def wait(name: str, timeout: str) -> tuple[float, dict[str, Any]]:
        async with httpx.AsyncClient(base_url=world.url("cloud_run"), headers=google_auth(world), timeout=30) as client:
            started = time.monotonic()
            body = (await client.post(f"/v2/{name}:wait", json={"timeout": timeout})).json()
            return time.monotonic() - started, body

    async with cloud_run_limits(world, route_ms=1500, wait_early_fraction=1.0, wait_early_max_ms=200):
        read.labels["waited"] = "early"
        operation = await asyncio.to_thread(services_client.update_service, service=read)
        early, body = await wait(operation.operation.name, "5s")
        assert early < 1.0 and body["done"] is False
    async with cloud_run_limits(world, route_ms=1500, wait_early_fraction=0.0):
        read = await asyncio.to_thread(services_client.get_service, name=name_of("sem-wait"))
        read.labels["waited"] = "timeout"
        operation = await asyncio.to_thread(services_client.update_service, service=read)
        held, body = await wait(operation.operation.name, "0.3s")
        assert 0.25 <= held < 1.2 and body["done"] is False
        finished, body = await wait(operation.operation.name, "10s")
        assert body["done"] is True and finished < 5


async def test_names_follow_googles_limits(services_client: run_v2.ServicesClient) -> None:
    """service_id "must contain fewer than 50 characters" (run.v2 discovery document) and a revision name "must be
    less than 64 characters" (https://github.com/pipe-cd/pipecd/issues/5688); Google answers with a
    google.rpc.BadRequest detail, which google-api-core exposes as exc.details."""
    service_id = "s" * 50
    with pytest.raises(exceptions.BadRequest, match="must be less than 50 characters") as too_long:
        await asyncio.to_thread(services_client.create_service, parent=PARENT, service_id=service_id,
                                service=run_v2.Service(template=run_v2.RevisionTemplate(
                                    containers=[run_v2.Container(image=image("x"))])))
    assert too_long.value.details[0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    revision = "sem-names-" + "r" * 54
    with pytest.raises(exceptions.BadRequest, match="less than 64 characters"):
        await fresh(services_client, "sem-names", revision=revision)
    await fresh(services_client, "sem-names", revision=revision[:-1])


async def test_force_new_revision_creates_one_from_an_unchanged_template(world: World) -> None:
    """services.patch forceNewRevision: "a new revision will be created from the template even if the system
    doesn't detect any changes from the previously deployed revision" (run.v2 discovery document)."""
    async with httpx.AsyncClient(base_url=world.url("cloud_run"), headers=google_auth(world)) as client:
        created = (await client.post(f"/v2/{PARENT}/services", params={"serviceId": "sem-force"},
                                     json={"template": {"containers": [{"image": image("sem-force")}]}})).json()
        await asyncio.sleep(0.3)
        read = (await client.get(f"/v2/{name_of('sem-force')}")).json()
        plain = (await client.patch(f"/v2/{name_of('sem-force')}", json=read)).json()
        forced = (await client.patch(f"/v2/{name_of('sem-force')}", params={"forceNewRevision": "true"},
                                     json=read)).json()
    assert created["metadata"]["latestCreatedRevision"] == plain["metadata"]["latestCreatedRevision"]
    assert forced["metadata"]["latestCreatedRevision"] != plain["metadata"]["latestCreatedRevision"]
