"""The Secret Manager emulator, driven by google-cloud-secret-manager's REST transport."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager_v1

from bot.checksum import crc32c
from sandbox.world import World
from tests.conftest import client_options
from tests.contract.schemas import assert_google


@pytest.fixture(scope="module")
def client(world: World) -> secretmanager_v1.SecretManagerServiceClient:
    return secretmanager_v1.SecretManagerServiceClient(
        transport="rest", credentials=AnonymousCredentials(),
        client_options=client_options(world.url("secret_manager")))


def test_crc32c_matches_the_published_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


async def test_the_bots_slack_credentials_are_stored_only_here(
    world: World, client: secretmanager_v1.SecretManagerServiceClient
) -> None:
    names = world.config.secrets
    for name in (names.slack_bot_token, names.slack_signing_secret):
        response = await asyncio.to_thread(client.access_secret_version,
                                           name=f"projects/nba-props-platform/secrets/{name}/versions/latest")
        assert response.payload.data
        assert response.payload.data_crc32c == crc32c(response.payload.data)
        assert response.name.endswith("/versions/1")
    token = (await asyncio.to_thread(client.access_secret_version,
                                     name=f"projects/nba-props-platform/secrets/{names.slack_bot_token}/versions/1"))
    assert token.payload.data.decode().startswith("xoxb-")
    assert token.payload.data.decode() not in str(world.endpoints())


async def test_versions_are_added_accessed_by_number_and_disabled(
    world: World, client: secretmanager_v1.SecretManagerServiceClient
) -> None:
    parent = "projects/nba-props-platform"
    secret = await asyncio.to_thread(client.create_secret, parent=parent, secret_id="rotation-test",
                                     secret={"replication": {"automatic": {}}})
    assert secret.name == f"projects/{world.run.project_number}/secrets/rotation-test"
    first, second = secrets.token_bytes(16), secrets.token_bytes(16)
    for value in (first, second):
        await asyncio.to_thread(client.add_secret_version, parent=secret.name,
                                payload={"data": value, "data_crc32c": crc32c(value)})
    latest = await asyncio.to_thread(client.access_secret_version, name=f"{secret.name}/versions/latest")
    assert latest.payload.data == second
    one = await asyncio.to_thread(client.access_secret_version, name=f"{secret.name}/versions/1")
    assert one.payload.data == first

    await asyncio.to_thread(client.disable_secret_version, name=f"{secret.name}/versions/2")
    with pytest.raises(exceptions.BadRequest, match="DISABLED"):
        await asyncio.to_thread(client.access_secret_version, name=f"{secret.name}/versions/2")
    latest = await asyncio.to_thread(client.access_secret_version, name=f"{secret.name}/versions/latest")
    assert latest.payload.data == first
    versions = await asyncio.to_thread(lambda: list(client.list_secret_versions(parent=secret.name)))
    assert [(v.name.rsplit("/", 1)[1], v.state.name) for v in versions] == [("2", "DISABLED"), ("1", "ENABLED")]

    with pytest.raises(exceptions.BadRequest, match="checksum"):
        await asyncio.to_thread(client.add_secret_version, parent=secret.name,
                                payload={"data": b"x", "data_crc32c": crc32c(b"y")})


async def test_a_missing_secret_is_not_found(client: secretmanager_v1.SecretManagerServiceClient) -> None:
    with pytest.raises(exceptions.NotFound, match="slack-bot-tokn"):
        await asyncio.to_thread(client.access_secret_version,
                                name="projects/nba-props-platform/secrets/slack-bot-tokn/versions/latest")


async def test_responses_validate_against_the_discovery_document(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.url("secret_manager")) as http:
        name = f"projects/nba-props-platform/secrets/{world.config.secrets.slack_signing_secret}"
        assert_google("secretmanager.v1", "Secret", (await http.get(f"/v1/{name}")).json())
        assert_google("secretmanager.v1", "ListSecretsResponse",
                      (await http.get("/v1/projects/nba-props-platform/secrets")).json())
        assert_google("secretmanager.v1", "ListSecretVersionsResponse",
                      (await http.get(f"/v1/{name}/versions")).json())
        assert_google("secretmanager.v1", "AccessSecretVersionResponse",
                      (await http.get(f"/v1/{name}/versions/latest:access")).json())
        missing = await http.get("/v1/projects/nba-props-platform/secrets/nope/versions/latest:access")
        assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
