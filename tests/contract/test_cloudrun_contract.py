"""The Cloud Run emulator, driven by google-cloud-run's REST transport, behaves like the documented API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from google.api_core import exceptions
from google.cloud import run_v2

from sandbox.world import World
from tests.conftest import google_auth
from tests.contract.schemas import assert_google

PARENT = "projects/nba-props-platform/locations/us-west2"
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
Succeeded = run_v2.Condition.State.CONDITION_SUCCEEDED


def name_of(service: str) -> str:
    return f"{PARENT}/services/{service}"


async def raw(world: World, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=world.url("cloud_run"), headers=google_auth(world)) as client:
        return await client.request(method, path, **kwargs)


def as_the_bot(world: World, service: str) -> dict[str, str]:
    """The fleet's services are private (Cloud Run's default): callers send an ID token for the service's URL,
    https://cloud.google.com/run/docs/authenticating/service-to-service."""
    token = world.id_tokens.mint(audience=world.run.url_for(service), email=world.service_account)
    return {"Authorization": f"Bearer {token}"}


async def fleet_json(world: World, service: str, url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(headers=as_the_bot(world, service)) as client:
        response = await client.get(url)
        return response.status_code, response.json()


def unnamed(service: run_v2.Service) -> run_v2.Service:
    """A read service made fit to write back: gcloud-deployed services name their revision in the template,
    and sending that name again is refused (see test_cloudrun_semantics.py), so Cloud Run names the next one."""
    service.template.revision = ""
    return service


def canary_update(service: run_v2.Service, image: str, candidate: str, stable: str) -> run_v2.Service:
    """What a canary deploy sends: the new template, all traffic pinned to stable, the candidate tagged at 0%."""
    service.template.containers[0].image = image
    service.template.revision = candidate
    del service.traffic[:]
    service.traffic.extend([
        run_v2.TrafficTarget(type_=REVISION, revision=stable, percent=100),
        run_v2.TrafficTarget(type_=REVISION, revision=candidate, percent=0, tag="canary"),
    ])
    return service


async def test_seeded_service_reads_like_cloud_run(world: World, services_client: run_v2.ServicesClient) -> None:
    service = await asyncio.to_thread(services_client.get_service, name=name_of("prediction-worker"))
    assert service.terminal_condition.state == Succeeded
    assert service.generation == service.observed_generation == 2
    assert not service.reconciling
    assert service.latest_ready_revision.endswith(service.traffic_statuses[0].revision)
    assert service.traffic_statuses[0].percent == 100
    assert service.uri == f"{world.url('fleet')}/prediction-worker"
    assert service.etag

    listed = await asyncio.to_thread(services_client.list_services, parent=PARENT)
    assert {s.name.rsplit("/", 1)[1] for s in listed} >= set(world.config.services)


async def test_responses_validate_against_the_discovery_document(world: World) -> None:
    service = (await raw(world, "GET", f"/v2/{name_of('nba-grading-service')}")).json()
    assert_google("run.v2", "GoogleCloudRunV2Service", service)
    listing = (await raw(world, "GET", f"/v2/{PARENT}/services")).json()
    assert_google("run.v2", "GoogleCloudRunV2ListServicesResponse", listing)
    revisions = (await raw(world, "GET", f"/v2/{name_of('nba-grading-service')}/revisions")).json()
    assert_google("run.v2", "GoogleCloudRunV2ListRevisionsResponse", revisions)
    assert_google("run.v2", "GoogleCloudRunV2Revision", revisions["revisions"][0])
    service.pop("etag")
    del service["template"]["revision"]
    operation = (await raw(world, "PATCH", f"/v2/{name_of('nba-grading-service')}",
                           json={**service, "labels": {"team": "grading"}})).json()
    assert_google("run.v2", "GoogleLongrunningOperation", operation)
    inner = {k: v for k, v in operation["metadata"].items() if k != "@type"}
    assert_google("run.v2", "GoogleCloudRunV2Service", inner)


async def test_enums_follow_the_encoding_the_client_asks_for(world: World) -> None:
    path = f"/v2/{name_of('nba-admin-dashboard')}"
    as_strings = (await raw(world, "GET", path)).json()
    as_numbers = (await raw(world, "GET", path, params={"$alt": "json;enum-encoding=int"})).json()
    assert as_strings["traffic"][0]["type"] == "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    assert as_numbers["traffic"][0]["type"] == 1
    assert as_numbers["terminalCondition"]["state"] == 4


async def test_canary_deploy_creates_a_tagged_revision_at_zero_percent(
    world: World, services_client: run_v2.ServicesClient
) -> None:
    before = await asyncio.to_thread(services_client.get_service, name=name_of("prediction-coordinator"))
    stable = before.traffic_statuses[0].revision
    image = world.config.services["prediction-coordinator"].image + ":v3"
    candidate = "prediction-coordinator-v3-canary"
    operation = await asyncio.to_thread(services_client.update_service,
                                        service=canary_update(before, image, candidate, stable))
    assert not operation.operation.done
    after = await asyncio.to_thread(operation.result, timeout=30)

    assert after.generation == before.generation + 1 == after.observed_generation
    assert after.latest_created_revision.endswith(candidate)
    assert after.latest_ready_revision.endswith(candidate)
    routed = {(s.revision, s.percent, s.tag) for s in after.traffic_statuses}
    assert routed == {(stable, 100, ""), (candidate, 0, "canary")}
    tag_url = next(s.uri for s in after.traffic_statuses if s.tag == "canary")
    assert tag_url == f"{world.url('fleet')}/canary---prediction-coordinator"

    status, body = await fleet_json(world, "prediction-coordinator", f"{tag_url}/health")
    assert (status, body["revision"], body["version"]) == (200, candidate, "v3")
    for _ in range(5):
        _, body = await fleet_json(world, "prediction-coordinator", f"{after.uri}/health")
        assert body["revision"] == stable


async def test_a_stale_etag_is_refused_with_aborted(services_client: run_v2.ServicesClient) -> None:
    service = unnamed(await asyncio.to_thread(services_client.get_service, name=name_of("mlb-prediction-worker")))
    service.labels["owner"] = "mlb"
    await asyncio.to_thread(lambda: services_client.update_service(service=service).result(timeout=30))
    service.labels["owner"] = "someone-else"
    with pytest.raises(exceptions.Conflict) as refused:
        await asyncio.to_thread(services_client.update_service, service=service)
    assert refused.value.response.json()["error"]["status"] == "ABORTED"


async def test_traffic_must_sum_to_100(services_client: run_v2.ServicesClient) -> None:
    service = unnamed(await asyncio.to_thread(services_client.get_service,
                                              name=name_of("nba-phase3-analytics-processors")))
    stable = service.traffic_statuses[0].revision
    del service.traffic[:]
    service.traffic.append(run_v2.TrafficTarget(type_=REVISION, revision=stable, percent=95))
    with pytest.raises(exceptions.BadRequest, match="sum to 100, not 95"):
        await asyncio.to_thread(services_client.update_service, service=service)


async def test_a_new_service_cannot_start_at_zero_percent(world: World, services_client: run_v2.ServicesClient) -> None:
    template = run_v2.RevisionTemplate(containers=[run_v2.Container(image="us-docker.pkg.dev/x/y/new:v1")],
                                       revision="brand-new-00001-aaa")
    no_traffic = run_v2.Service(template=template, traffic=[
        run_v2.TrafficTarget(type_=REVISION, revision="brand-new-00001-aaa", percent=0, tag="canary")])
    with pytest.raises(exceptions.BadRequest, match="must send traffic to its first revision"):
        await asyncio.to_thread(services_client.create_service, parent=PARENT, service=no_traffic,
                                service_id="brand-new")

    created = await asyncio.to_thread(lambda: services_client.create_service(
        parent=PARENT, service=run_v2.Service(template=template), service_id="brand-new").result(timeout=30))
    assert created.traffic[0].type_ == LATEST
    assert created.traffic_statuses[0].revision == "brand-new-00001-aaa"
    with pytest.raises(exceptions.Conflict):
        await asyncio.to_thread(services_client.create_service, parent=PARENT,
                                service=run_v2.Service(template=template), service_id="brand-new")
    await asyncio.to_thread(lambda: services_client.delete_service(name=name_of("brand-new")).result(timeout=30))
    with pytest.raises(exceptions.NotFound):
        await asyncio.to_thread(services_client.get_service, name=name_of("brand-new"))


async def test_a_revision_that_cannot_start_fails_the_operation_and_keeps_traffic(
    world: World, services_client: run_v2.ServicesClient
) -> None:
    image = world.config.services["nba-phase4-precompute-processors"].image + ":crashes"
    world.behaviours.declare_image(image, {"start": "fail"})
    before = await asyncio.to_thread(services_client.get_service,
                                     name=name_of("nba-phase4-precompute-processors"))
    stable = before.traffic_statuses[0].revision
    operation = await asyncio.to_thread(
        services_client.update_service,
        service=canary_update(before, image, "nba-phase4-precompute-processors-crash", stable))
    with pytest.raises(exceptions.GoogleAPICallError, match="failed to start and listen on the port"):
        await asyncio.to_thread(operation.result, timeout=30)
    after = await asyncio.to_thread(services_client.get_service, name=name_of("nba-phase4-precompute-processors"))
    assert after.terminal_condition.state == run_v2.Condition.State.CONDITION_FAILED
    assert [(s.revision, s.percent) for s in after.traffic_statuses] == [(stable, 100)]
    assert after.latest_ready_revision.endswith(stable)


async def test_health_endpoints_reflect_what_the_control_api_declares(world: World) -> None:
    service = world.run.services["nba-admin-dashboard"]
    revision = service.traffic_statuses[0]["revision"]
    url = world.run.url_for("nba-admin-dashboard")
    async with httpx.AsyncClient(base_url=world.url("control")) as control:
        response = await control.patch(f"/revisions/{revision}",
                                       json={"failing_checks": ["firestore", "redis"]})
        assert response.status_code == 200
        status, body = await fleet_json(world, "nba-admin-dashboard", f"{url}/ready")
        assert status == 503 and body["status"] == "unhealthy" and body["revision"] == revision
        failing = {c["name"]: c["detail"] for c in body["checks"] if c["status"] == "fail"}
        assert set(failing) == {"firestore", "redis"}
        assert "Deadline Exceeded" in failing["firestore"]

        assert (await control.patch(f"/revisions/{revision}", json={"failing_checks": [], "down": True})).is_success
        async with httpx.AsyncClient(headers=as_the_bot(world, "nba-admin-dashboard")) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(f"{url}/health")

        refused = await control.patch(f"/revisions/{revision}", json={"error_rate": 3})
        assert refused.status_code == 400 and "error_rate" in refused.json()["error"]
        assert (await control.patch(f"/revisions/{revision}", json={"down": False})).is_success
        status, body = await fleet_json(world, "nba-admin-dashboard", f"{url}/ready")
        assert status == 200 and {c["status"] for c in body["checks"]} == {"pass"}


async def test_unknown_fields_are_refused_like_google_does(world: World) -> None:
    response = await raw(world, "PATCH", f"/v2/{name_of('nba-grading-service')}",
                         json={"template": {"containers": [{"image": "x/y/z:1"}]}, "trafic": []})
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "trafic" in response.json()["error"]["message"]


async def test_a_page_size_above_the_maximum_is_coerced_and_a_negative_one_refused(
    world: World, services_client: run_v2.ServicesClient
) -> None:
    """AIP-158 (https://google.aip.dev/158): "If the user specifies page_size greater than the maximum permitted by
    the API, the API should coerce the size to the maximum permitted page size"; "If the user specifies a negative
    value for page_size, the API must send an INVALID_ARGUMENT error"."""
    pager = await asyncio.to_thread(services_client.list_services, request={"parent": PARENT, "page_size": 5000})
    listed = await asyncio.to_thread(lambda: [s.name for s in pager])
    assert sorted(listed) == sorted(name_of(name) for name in world.run.services)
    refused = await raw(world, "GET", f"/v2/{PARENT}/services", params={"pageSize": -1})
    assert refused.status_code == 400 and refused.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_revisions_of_every_service_are_listed_under_the_dash(
    world: World, revisions_client: run_v2.RevisionsClient
) -> None:
    """ListRevisionsRequest.parent: "To list all Revisions across Services, use "-" instead of Service name"
    (https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.services.revisions/list)."""
    pager = await asyncio.to_thread(revisions_client.list_revisions,
                                    request={"parent": name_of("-"), "page_size": 3})
    listed = await asyncio.to_thread(lambda: [r.name for r in pager])
    services = {name.split("/services/")[1].split("/")[0] for name in listed}
    assert services == set(world.run.services)
    assert len(listed) == len(set(listed)) == len(world.run.listed_revisions("-"))


async def test_revisions_page_and_operations_can_be_waited_on(
    world: World, revisions_client: run_v2.RevisionsClient
) -> None:
    pager = await asyncio.to_thread(revisions_client.list_revisions,
                                    request={"parent": name_of("prediction-worker"), "page_size": 1})
    names = await asyncio.to_thread(lambda: [r.name for r in pager])
    assert len(names) >= 2 and len(set(names)) == len(names)

    service = (await raw(world, "GET", f"/v2/{name_of('prediction-worker')}")).json()
    service["labels"] = {"waited": "yes"}
    del service["template"]["revision"]
    operation = (await raw(world, "PATCH", f"/v2/{name_of('prediction-worker')}", json=service)).json()
    assert operation["done"] is False
    for _ in range(50):  # WaitOperation is best-effort: wait again until it says done
        waited = (await raw(world, "POST", f"/v2/{operation['name']}:wait", json={"timeout": "10s"})).json()
        if waited["done"]:
            break
    assert waited["done"] is True and waited["response"]["labels"] == {"waited": "yes"}
