"""IAM in the Cloud Run emulator, through google-cloud-run's REST client: every method checks its permission,
deploying needs actAs on the runtime service account, and services carry invoker policies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from google.api_core import exceptions
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from sandbox.iam import DEFAULT_ROLES
from sandbox.world import PUBLIC_SERVICES, World
from tests.conftest import google_auth
from tests.contract.schemas import assert_google

PARENT = "projects/nba-props-platform/locations/us-west2"


def name_of(service: str) -> str:
    return f"{PARENT}/services/{service}"


@asynccontextmanager
async def roles(world: World, granted: list[str]) -> AsyncIterator[None]:
    """The bot's project roles for the length of a test, set and restored through the control API."""
    async with httpx.AsyncClient(base_url=world.url("control")) as control:
        assert (await control.put("/iam", json={"roles": granted})).status_code == 200
        try:
            yield
        finally:
            assert (await control.put("/iam", json={"roles": list(DEFAULT_ROLES)})).status_code == 200


async def test_the_control_api_shows_and_replaces_the_bots_roles(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.url("control")) as control:
        shown = (await control.get("/iam")).json()
        assert shown == {"member": "serviceAccount:chatops@nba-props-platform.iam.gserviceaccount.com",
                         "roles": list(DEFAULT_ROLES)}
        refused = await control.put("/iam", json={"roles": ["roles/run.developer", "roles/run.deployer"]})
        assert refused.status_code == 400
        assert "roles/run.deployer" in refused.json()["error"] and "roles/run.admin" in refused.json()["error"]
        assert (await control.get("/iam")).json()["roles"] == list(DEFAULT_ROLES)


async def test_a_caller_without_the_permission_gets_googles_denial_with_its_error_info(
    world: World, services_client: run_v2.ServicesClient
) -> None:
    """google-api-core exposes the ErrorInfo of a PERMISSION_DENIED (reason IAM_PERMISSION_DENIED, metadata
    {permission, resource}: google/api/error_reason.proto) as exc.reason / exc.metadata; the message is Cloud
    Run's (https://github.com/google-github-actions/deploy-cloudrun/issues/182)."""
    async with roles(world, ["roles/logging.viewer"]):
        with pytest.raises(exceptions.Forbidden) as denied:
            await asyncio.to_thread(services_client.get_service, name=name_of("prediction-worker"))
        with pytest.raises(exceptions.Forbidden):
            await asyncio.to_thread(lambda: list(services_client.list_services(parent=PARENT)))
        with pytest.raises(exceptions.Forbidden, match=r"run\.services\.get"):
            await asyncio.to_thread(services_client.get_service, name=name_of("no-such-service"))
    assert denied.value.reason == "IAM_PERMISSION_DENIED"
    assert denied.value.domain == "run.googleapis.com"
    assert denied.value.metadata == {"permission": "run.services.get", "resource": name_of("prediction-worker")}
    assert denied.value.message.endswith(f": Permission 'run.services.get' denied on resource "
                                         f"'{name_of('prediction-worker')}' (or resource may not exist).")


async def test_a_service_in_another_project_is_denied_with_the_same_error_info(
    services_client: run_v2.ServicesClient, revisions_client: run_v2.RevisionsClient
) -> None:
    """The bot holds no role in another project, so Google answers there as for a missing role at home:
    PERMISSION_DENIED with ErrorInfo IAM_PERMISSION_DENIED {permission, resource} (google/api/error_reason.proto;
    https://google.aip.dev/211: permission is checked before existence)."""
    elsewhere = "projects/someone-else/locations/us-west2"
    with pytest.raises(exceptions.Forbidden) as denied:
        await asyncio.to_thread(services_client.get_service, name=f"{elsewhere}/services/prediction-worker")
    with pytest.raises(exceptions.Forbidden) as listed:
        await asyncio.to_thread(lambda: list(revisions_client.list_revisions(
            parent=f"{elsewhere}/services/prediction-worker")))
    assert (denied.value.reason, denied.value.domain) == ("IAM_PERMISSION_DENIED", "run.googleapis.com")
    assert denied.value.metadata == {"permission": "run.services.get",
                                     "resource": f"{elsewhere}/services/prediction-worker"}
    assert listed.value.metadata == {"permission": "run.revisions.list",
                                     "resource": f"{elsewhere}/services/prediction-worker"}


async def test_a_viewer_reads_but_cannot_write(world: World, services_client: run_v2.ServicesClient) -> None:
    """roles/run.viewer "Can view the state of all Cloud Run resources, including IAM policies"
    (https://cloud.google.com/run/docs/reference/iam/roles)."""
    async with roles(world, ["roles/run.viewer", "roles/iam.serviceAccountUser"]):
        service = await asyncio.to_thread(services_client.get_service, name=name_of("nba-grading-service"))
        service.template.revision = ""
        service.labels["touched"] = "yes"
        with pytest.raises(exceptions.Forbidden) as denied:
            await asyncio.to_thread(services_client.update_service, service=service)
    assert denied.value.metadata["permission"] == "run.services.update"


async def test_deploying_needs_act_as_on_the_runtime_service_account(
    world: World, services_client: run_v2.ServicesClient
) -> None:
    """"Certain operations, like creating or updating a service or revision, require the deployer account to have
    permissions on the service identity resource" (https://cloud.google.com/run/docs/configuring/service-accounts);
    the default identity is the Compute Engine default service account; Google's refusal:
    https://github.com/GoogleCloudPlatform/cloud-run-release-manager/issues/81. A traffic-only write creates no
    revision and needs no actAs."""
    compute = f"{world.run.project_number}-compute@developer.gserviceaccount.com"
    async with roles(world, ["roles/run.developer"]):
        service = await asyncio.to_thread(services_client.get_service, name=name_of("prediction-coordinator"))
        stable = service.traffic_statuses[0].revision
        service.template.revision = ""
        service.template.containers[0].env.append(run_v2.EnvVar(name="MODE", value="act-as-check"))
        with pytest.raises(exceptions.Forbidden) as denied:
            await asyncio.to_thread(services_client.update_service, service=service)
        del service.template.containers[0].env[:]
        del service.traffic[:]
        service.traffic.append(run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
            revision=stable, percent=100))
        routed = await asyncio.to_thread(lambda: services_client.update_service(service=service).result(timeout=30))
    assert denied.value.message.endswith(f": Permission 'iam.serviceaccounts.actAs' denied on service account "
                                         f"{compute} (or it may not exist).")
    assert denied.value.reason == "IAM_PERMISSION_DENIED" and denied.value.domain == "iam.googleapis.com"
    assert routed.latest_created_revision == service.latest_created_revision


async def test_services_are_seeded_private_or_public_and_the_state_says_which(world: World) -> None:
    """Private services bind the bot's account to roles/run.invoker; the public one binds allUsers
    (https://cloud.google.com/run/docs/authenticating/public)."""
    async with httpx.AsyncClient(base_url=world.url("control")) as control:
        state = (await control.get("/state")).json()["services"]
    for name in world.config.services:
        assert state[name]["private"] is (name not in PUBLIC_SERVICES)
        assert world.iam.may_invoke(name, world.iam.email)
        assert world.iam.may_invoke(name, None) is (name in PUBLIC_SERVICES)


async def test_get_iam_policy_returns_the_services_bindings(
    world: World, services_client: run_v2.ServicesClient
) -> None:
    """services:getIamPolicy (GET v2/{resource}:getIamPolicy, run.services.getIamPolicy, which run.developer
    holds); the JSON validates against the discovery document's GoogleIamV1Policy."""
    policy = await asyncio.to_thread(services_client.get_iam_policy,
                                     request=iam_policy_pb2.GetIamPolicyRequest(resource=name_of("prediction-worker")))
    assert [(b.role, list(b.members)) for b in policy.bindings] == [("roles/run.invoker", [world.iam.member])]
    assert policy.version == 1 and policy.etag
    async with httpx.AsyncClient(base_url=world.url("cloud_run"), headers=google_auth(world)) as client:
        body = (await client.get(f"/v2/{name_of('nba-admin-dashboard')}:getIamPolicy")).json()
        refused = await client.get(f"/v2/{name_of('nba-admin-dashboard')}:getIamPolicy",
                                   params={"options.requestedPolicyVersion": 2})
    assert_google("run.v2", "GoogleIamV1Policy", body)
    assert body["bindings"] == [{"role": "roles/run.invoker", "members": ["allUsers"]}]
    assert refused.status_code == 400  # "Valid values are 0, 1, and 3. Requests specifying an invalid value ..."


async def test_set_iam_policy_needs_run_admin_and_a_fresh_etag(
    world: World, services_client: run_v2.ServicesClient
) -> None:
    """run.developer "Can get but not set IAM policies" (https://cloud.google.com/run/docs/securing/managing-access);
    a stale etag "fails with a 409 error code and ABORTED status"
    (https://cloud.google.com/python/docs/reference/iam/latest/google.cloud.iam_v2.types.UpdatePolicyRequest)."""
    resource = name_of("mlb-prediction-worker")
    read = await asyncio.to_thread(services_client.get_iam_policy,
                                   request=iam_policy_pb2.GetIamPolicyRequest(resource=resource))
    grant = policy_pb2.Policy(bindings=[*read.bindings, policy_pb2.Binding(
        role="roles/run.invoker", members=["serviceAccount:scheduler@nba-props-platform.iam.gserviceaccount.com"])],
        etag=read.etag)
    with pytest.raises(exceptions.Forbidden) as denied:
        await asyncio.to_thread(services_client.set_iam_policy,
                                request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=grant))
    assert denied.value.metadata["permission"] == "run.services.setIamPolicy"
    async with roles(world, ["roles/run.admin"]):
        written = await asyncio.to_thread(services_client.set_iam_policy,
                                          request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=grant))
        with pytest.raises(exceptions.Conflict) as stale:
            await asyncio.to_thread(services_client.set_iam_policy,
                                    request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=grant))
    assert written.etag != read.etag
    assert world.iam.may_invoke("mlb-prediction-worker", "scheduler@nba-props-platform.iam.gserviceaccount.com")
    assert stale.value.response.json()["error"]["status"] == "ABORTED"


async def test_test_iam_permissions_answers_the_subset_held(
    world: World, services_client: run_v2.ServicesClient
) -> None:
    """testIamPermissions returns "A subset of TestPermissionsRequest.permissions that the caller is allowed"."""
    asked = iam_policy_pb2.TestIamPermissionsRequest(
        resource=name_of("prediction-worker"),
        permissions=["run.services.update", "run.services.setIamPolicy", "run.routes.invoke"])
    answer = await asyncio.to_thread(services_client.test_iam_permissions, request=asked)
    assert list(answer.permissions) == ["run.services.update", "run.routes.invoke"]
    async with httpx.AsyncClient(base_url=world.url("cloud_run"), headers=google_auth(world)) as client:
        body = (await client.post(f"/v2/{name_of('prediction-worker')}:testIamPermissions",
                                  json={"permissions": ["run.services.get"]})).json()
        wildcard = await client.post(f"/v2/{name_of('prediction-worker')}:testIamPermissions",
                                     json={"permissions": ["run.*"]})
    assert_google("run.v2", "GoogleIamV1TestIamPermissionsResponse", body)
    assert body == {"permissions": ["run.services.get"]} and wildcard.status_code == 400


async def test_turning_the_invoker_check_off_needs_set_iam_policy(world: World) -> None:
    """"To disable or re-enable the Invoker IAM check on a service, you must have ... run.services.setIamPolicy"
    (https://cloud.google.com/run/docs/authenticating/public)."""
    async with httpx.AsyncClient(base_url=world.url("cloud_run"), headers=google_auth(world)) as client:
        service = (await client.get(f"/v2/{name_of('nba-phase4-precompute-processors')}")).json()
        del service["template"]["revision"]
        refused = await client.patch(f"/v2/{service['name']}", json={**service, "invokerIamDisabled": True})
    assert refused.status_code == 403
    assert refused.json()["error"]["details"][0]["metadata"]["permission"] == "run.services.setIamPolicy"
    assert world.iam.private("nba-phase4-precompute-processors")
