"""The Artifact Registry emulator (Docker images, https://cloud.google.com/artifact-registry/docs/reference/rest/v1/
projects.locations.repositories.dockerImages), checked against the discovery document's DockerImage schema, and the
bot's adapter (bot/adapters/artifacts.py) reading upload times through it with the real client library: by tag and
by digest, refused without roles/artifactregistry.reader, not found, and read once per image (kept in the store, on
SQLite and PostgreSQL: tests/contract/conftest.py's `store`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from bot.adapters.artifacts import Artifacts
from bot.adapters.store import Store
from bot.environment import Environment
from sandbox.runner import bot_environment
from sandbox.world import World
from tests.conftest import google_auth
from tests.contract.schemas import assert_google

REPOSITORY = "projects/nba-props-platform/locations/us-west2/repositories/cloud-run"
IMAGE = "us-west2-docker.pkg.dev/nba-props-platform/cloud-run/nba-grading-service"
UPLOADED = "2026-11-30T08:15:00Z"


@pytest.fixture
def artifacts(world: World, store: Store) -> Artifacts:
    return Artifacts(Environment.from_env(bot_environment(world, "sqlite://")), store, timeout=5)


async def declare(world: World, image: str, **fields: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=world.url("control")) as control:
        answer = await control.post("/images", json={"image": image, **fields})
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


async def test_list_and_get_answer_dockerimages_as_the_discovery_document_has_them(world: World) -> None:
    declared = await declare(world, f"{IMAGE}:v31", upload_time=UPLOADED, build_time="2026-11-30T08:10:00Z")
    registry = declared["registry"]
    assert isinstance(registry, dict)
    async with httpx.AsyncClient(base_url=world.url("artifact_registry"), headers=google_auth(world)) as http:
        listed = (await http.get(f"/v1/{REPOSITORY}/dockerImages", params={"pageSize": 2})).json()
        assert_google("artifactregistry.v1", "ListDockerImagesResponse", listed)
        assert len(listed["dockerImages"]) == 2 and listed["nextPageToken"]
        image = (await http.get(f"/v1/{registry['name']}")).json()
        assert_google("artifactregistry.v1", "DockerImage", image)
        assert image["tags"] == ["v31"] and image["uploadTime"].startswith("2026-11-30T08:15:00")
        assert image["buildTime"].startswith("2026-11-30T08:10:00")
        assert image["uri"] == f"{IMAGE}@{image['name'].rpartition('@')[2]}"
        newest = (await http.get(f"/v1/{REPOSITORY}/dockerImages",
                                 params={"orderBy": "upload_time desc", "pageSize": 1})).json()["dockerImages"][0]
        assert newest["uploadTime"] >= image["uploadTime"]
        bad = await http.get(f"/v1/{REPOSITORY}/dockerImages", params={"orderBy": "size"})
        assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
        by_tag = await http.get(f"/v1/{REPOSITORY}/dockerImages/nba-grading-service:v31")
        assert by_tag.status_code == 404 and by_tag.json()["error"]["status"] == "NOT_FOUND"
    async with httpx.AsyncClient(base_url=world.url("artifact_registry")) as anonymous:
        refused = await anonymous.get(f"/v1/{REPOSITORY}/dockerImages")
    assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"


async def test_the_adapter_reads_the_upload_time_by_tag_and_by_digest(world: World, artifacts: Artifacts) -> None:
    declared = await declare(world, f"{IMAGE}:v32", upload_time="2026-11-30T09:00:00Z")
    registry = declared["registry"]
    assert isinstance(registry, dict)
    by_tag = await asyncio.to_thread(artifacts.read, f"{IMAGE}:v32")
    assert by_tag.upload_time == datetime(2026, 11, 30, 9, 0, tzinfo=UTC) and not by_tag.why
    by_digest = await asyncio.to_thread(artifacts.read, str(registry["uri"]))
    assert by_digest.upload_time == by_tag.upload_time
    assert by_digest.build_time is not None and by_digest.build_time < by_digest.upload_time


async def test_a_tag_pushed_again_moves_to_the_new_upload(world: World, artifacts: Artifacts) -> None:
    await declare(world, f"{IMAGE}:moving", upload_time="2026-11-29T09:00:00Z")
    await declare(world, f"{IMAGE}:moving", upload_time="2026-11-30T10:00:00Z")
    moved = await asyncio.to_thread(artifacts.read, f"{IMAGE}:moving")
    assert moved.upload_time == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


async def test_an_image_the_registry_lacks_is_unknown_with_the_reason(artifacts: Artifacts) -> None:
    missing = await asyncio.to_thread(artifacts.read, f"{IMAGE}:never-pushed")
    assert missing.upload_time is None and missing.why == "not in Artifact Registry"
    other_repository = await asyncio.to_thread(artifacts.read,
                                               "us-west2-docker.pkg.dev/nba-props-platform/no-such-repo/app:v1")
    assert other_repository.why == "not in Artifact Registry"
    elsewhere = await asyncio.to_thread(artifacts.read, "docker.io/library/nginx:1.27")
    assert elsewhere.upload_time is None and "not an Artifact Registry image" in elsewhere.why


async def test_without_the_reader_role_the_read_is_refused_and_names_the_role(world: World,
                                                                              artifacts: Artifacts) -> None:
    held = list(world.iam.roles)
    world.iam.set_roles([r for r in held if r != "roles/artifactregistry.reader"])
    try:
        refused = await asyncio.to_thread(artifacts.read, f"{IMAGE}:v1")
        before = len(world.registry.calls)
        several = await artifacts.upload_times([f"{IMAGE}:v1", f"{IMAGE}:v2", f"{IMAGE}:v31"])
        assert len(world.registry.calls) == before + 1, "once refused, the figure's other images are not asked"
        assert {upload.why for upload in several.values()} == {refused.why}
    finally:
        world.iam.set_roles(held)
    again = await artifacts.upload_times([f"{IMAGE}:v1"])
    assert again[f"{IMAGE}:v1"].upload_time is not None, "a refusal is not kept: granted the role, it reads"
    assert refused.upload_time is None
    assert refused.why == ("Artifact Registry refused: the bot's service account lacks "
                           "`artifactregistry.dockerimages.list`: grant it roles/artifactregistry.reader on the "
                           "repository")


async def test_each_image_is_read_from_the_registry_once_then_from_the_store(world: World, artifacts: Artifacts,
                                                                             store: Store) -> None:
    await declare(world, f"{IMAGE}:v33", upload_time="2026-11-30T07:00:00Z")
    images = [f"{IMAGE}:v33", f"{IMAGE}:v33", f"{IMAGE}:gone"]
    before = len(world.registry.calls)
    first = await artifacts.upload_times(images)
    assert len(world.registry.calls) - before == 2  # one read per distinct image
    again = await artifacts.upload_times(images)
    assert len(world.registry.calls) - before == 2, "the second figure reads nothing from the registry"
    assert first == again
    assert again[f"{IMAGE}:v33"].upload_time == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert again[f"{IMAGE}:gone"].upload_time is None
