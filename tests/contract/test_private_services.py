"""Cloud Run's IAM check in front of the fleet: who gets past it on a service URL and on a tag URL.

https://cloud.google.com/run/docs/securing/managing-access and
https://cloud.google.com/run/docs/authenticating/service-to-service: a caller of a private service presents a
Google-signed ID token whose audience is the service's URL and whose member holds roles/run.invoker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from google.cloud import run_v2

from sandbox.idtoken import IdTokenIssuer
from sandbox.world import World
from tests.conftest import open_to_all_users

PARENT = "projects/nba-props-platform/locations/us-west2"
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST


@dataclass(frozen=True)
class Private:
    name: str
    url: str
    tag_url: str


@pytest.fixture(scope="module")
async def private(world: World, services_client: run_v2.ServicesClient) -> AsyncIterator[Private]:
    """A service deployed with a tag on its latest revision, nobody granted allUsers."""
    name = "private-reports"
    template = run_v2.RevisionTemplate(containers=[run_v2.Container(image="us-docker.pkg.dev/p/r/reports:v1")])
    service = run_v2.Service(template=template, traffic=[run_v2.TrafficTarget(type_=LATEST, percent=100, tag="blue")])
    created = await asyncio.to_thread(lambda: services_client.create_service(
        parent=PARENT, service=service, service_id=name).result(timeout=30))
    yield Private(name, created.uri, next(s.uri for s in created.traffic_statuses if s.tag == "blue"))
    await asyncio.to_thread(lambda: services_client.delete_service(name=f"{PARENT}/services/{name}").result(timeout=30))


async def get(url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient() as client:
        return await client.get(f"{url}/health", headers=headers)


async def test_without_a_token_a_private_service_answers_403_from_the_front_end(private: Private) -> None:
    """403 with Google's HTML page, the container never reached (kkom/gdrive-backup#36: "The request was not
    authenticated. Either allow unauthenticated invocations or set the proper Authorization header.", a 403)."""
    for url in (private.url, private.tag_url):
        response = await get(url)
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert "Your client does not have permission to get URL <code>/health</code>" in response.text


async def test_the_bots_token_for_the_service_url_opens_the_service_url_and_its_tag_url(
        world: World, private: Private) -> None:
    """The audience is the service's URL; audiences are per service and apply to all its revisions
    (https://cloud.google.com/run/docs/configuring/custom-audiences), so the tag URL takes the same token."""
    token = world.id_tokens.mint(audience=private.url, email=world.service_account)
    main, tagged = await get(private.url, token), await get(private.tag_url, token)
    assert main.status_code == tagged.status_code == 200
    assert main.json()["status"] == "healthy" and tagged.json()["revision"] == main.json()["revision"]
    assert (await get(private.url, world.id_tokens.mint(audience=private.url + "/",
                                                        email=world.service_account))).status_code == 200


async def test_a_token_for_the_tag_url_opens_the_tag_url_and_the_service_url(world: World, private: Private) -> None:
    """The audience must match "the receiving service's *.run.app URL"
    (https://cloud.google.com/run/docs/configuring/custom-audiences); a tag URL is one of the service's run.app URLs
    (https://cloud.google.com/run/docs/rollouts-rollbacks-traffic-migration), so a caller that names the URL
    it calls, as https://cloud.google.com/run/docs/authenticating/service-to-service shows, gets in. A tag of
    another service is still another service's audience."""
    token = world.id_tokens.mint(audience=private.tag_url, email=world.service_account)
    assert (await get(private.tag_url, token)).status_code == 200
    assert (await get(private.url, token)).status_code == 200
    elsewhere = world.id_tokens.mint(audience=world.run.tag_url("prediction-worker", "blue"),
                                     email=world.service_account)
    assert (await get(private.tag_url, elsewhere)).status_code == 401


async def test_tokens_cloud_run_cannot_accept_are_refused_with_401(world: World, private: Private) -> None:
    """Another audience (GoogleCloudPlatform/cloud-run-proxy#10: audience "demo" -> 401;
    GoogleCloudPlatform/cloud-networking-solutions#78: an `aud` that is not the service's run.app URL -> 401),
    a tag URL the service does not have, an expired token, one signed by a key that is not
    Google's, and something that is not a JWT (assumed 401 like any token that cannot be verified)."""
    other_service = world.run.url_for("prediction-worker")
    stranger = IdTokenIssuer()
    refused = {
        "another service's audience": world.id_tokens.mint(audience=other_service, email=world.service_account),
        "a tag it does not have": world.id_tokens.mint(audience=world.run.tag_url(private.name, "green"),
                                                        email=world.service_account),
        "expired": world.id_tokens.mint(audience=private.url, email=world.service_account,
                                        issued_at=time.time() - 3601),
        "signed by another key": stranger.mint(audience=private.url, email=world.service_account),
        "not a JWT": "ya29.an-access-token",
    }
    for why, token in refused.items():
        for url in (private.url, private.tag_url):
            response = await get(url, token)
            assert response.status_code == 401, why
            assert "<h1>Error: Unauthorized</h1>" in response.text


async def test_a_valid_token_of_a_member_without_run_invoker_is_forbidden(world: World, private: Private) -> None:
    """Being authenticated is not enough: the member needs roles/run.invoker on the service
    (https://cloud.google.com/run/docs/securing/managing-access)."""
    token = world.id_tokens.mint(audience=private.url, email="intruder@nba-props-platform.iam.gserviceaccount.com")
    response = await get(private.url, token)
    assert response.status_code == 403 and "<h1>Error: Forbidden</h1>" in response.text


async def test_a_service_open_to_all_users_answers_without_a_token(world: World, private: Private) -> None:
    """allUsers holding roles/run.invoker makes a service public
    (https://cloud.google.com/run/docs/authenticating/public)."""
    with open_to_all_users(world, private.name):
        response = await get(private.url)
    assert response.status_code == 200
    assert (await get(private.url)).status_code == 403
