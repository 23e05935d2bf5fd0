"""The Secret Manager emulator, driven by google-cloud-secret-manager's REST transport
(https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access)."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager_v1

from bot.checksum import crc32c
from sandbox.google_errors import GoogleError
from sandbox.secretmanager import SecretManager, secretmanager_app
from sandbox.serving import Listener, start, stop
from sandbox.world import World
from tests.conftest import also_granted, client_options, google_auth, google_credentials
from tests.contract.schemas import assert_google


@pytest.fixture(scope="module")
def client(world: World) -> secretmanager_v1.SecretManagerServiceClient:
    return secretmanager_v1.SecretManagerServiceClient(
        transport="rest", credentials=google_credentials(world),
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
    with also_granted(world, "roles/secretmanager.admin"):
        await versions_are_added_accessed_by_number_and_disabled(world, client, parent)


async def versions_are_added_accessed_by_number_and_disabled(
    world: World, client: secretmanager_v1.SecretManagerServiceClient, parent: str
) -> None:
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
    one = await asyncio.to_thread(client.access_secret_version, name=f"{secret.name}/versions/1")
    assert one.payload.data == first
    versions = await asyncio.to_thread(lambda: list(client.list_secret_versions(parent=secret.name)))
    assert [(v.name.rsplit("/", 1)[1], v.state.name) for v in versions] == [("2", "DISABLED"), ("1", "ENABLED")]

    with pytest.raises(exceptions.BadRequest, match="checksum"):
        await asyncio.to_thread(client.add_secret_version, parent=secret.name,
                                payload={"data": b"x", "data_crc32c": crc32c(b"y")})


async def test_latest_is_the_newest_version_even_when_it_cannot_be_read(
    world: World, client: secretmanager_v1.SecretManagerServiceClient
) -> None:
    """`latest` is "an alias to the most recently created SecretVersion" (https://cloud.google.com/secret-manager/
    docs/reference/rest/v1/projects.secrets.versions/access): once that version is disabled or destroyed, reading
    `latest` fails with FAILED_PRECONDITION, Google's "Secret Version [...] is in DISABLED state."
    (external-secrets/external-secrets#4042), rather than falling back to the older, enabled version."""
    with also_granted(world, "roles/secretmanager.admin"):
        secret = await asyncio.to_thread(client.create_secret, parent="projects/nba-props-platform",
                                         secret_id="latest-test", secret={"replication": {"automatic": {}}})
        for _ in range(2):
            value = secrets.token_bytes(16)
            await asyncio.to_thread(client.add_secret_version, parent=secret.name,
                                    payload={"data": value, "data_crc32c": crc32c(value)})
        await asyncio.to_thread(client.disable_secret_version, name=f"{secret.name}/versions/2")
        latest = "projects/nba-props-platform/secrets/latest-test/versions/latest"
        with pytest.raises(exceptions.BadRequest) as disabled:
            await asyncio.to_thread(client.access_secret_version, name=latest)
        await asyncio.to_thread(client.destroy_secret_version, name=f"{secret.name}/versions/2")
        with pytest.raises(exceptions.BadRequest) as destroyed:
            await asyncio.to_thread(client.access_secret_version, name=latest)
        described = await asyncio.to_thread(client.get_secret_version, name=latest)
    number = world.run.project_number
    assert disabled.value.message.endswith(
        f": Secret Version [projects/{number}/secrets/latest-test/versions/2] is in DISABLED state.")
    assert destroyed.value.message.endswith(
        f": Secret Version [projects/{number}/secrets/latest-test/versions/2] is in DESTROYED state.")
    assert disabled.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert (described.name.rsplit("/", 1)[1], described.state.name) == ("2", "DESTROYED")


async def test_a_caller_without_versions_access_is_refused_before_any_lookup() -> None:
    """:access needs secretmanager.versions.access on the version named (same page); the refusal reaches the
    client, also for a secret that does not exist."""
    asked: list[tuple[str, str]] = []

    def no_access(permission: str, resource: str) -> None:
        asked.append((permission, resource))
        if permission == "secretmanager.versions.access":
            raise GoogleError("PERMISSION_DENIED", f"Permission '{permission}' denied for resource "
                                                   f"'{resource}' (or it may not exist).")

    manager = SecretManager("nba-props-platform", "123456789012", authorize=no_access)
    manager.put("slack-bot-token", secrets.token_bytes(16))
    listener = await start(Listener("secret_manager", secretmanager_app(manager)))
    try:
        client = secretmanager_v1.SecretManagerServiceClient(
            transport="rest", credentials=AnonymousCredentials(), client_options=client_options(listener.url))
        for name in ("slack-bot-token", "no-such-secret"):
            with pytest.raises(exceptions.Forbidden, match=r"secretmanager\.versions\.access' denied"):
                await asyncio.to_thread(client.access_secret_version,
                                        name=f"projects/nba-props-platform/secrets/{name}/versions/latest")
        described = await asyncio.to_thread(client.get_secret, name="projects/nba-props-platform/secrets/"
                                                                   "slack-bot-token")
    finally:
        await stop(listener)
    assert described.name == "projects/123456789012/secrets/slack-bot-token"  # this IAM refuses only :access
    assert asked == [*[("secretmanager.versions.access", f"projects/nba-props-platform/secrets/{name}/versions/latest")
                       for name in ("slack-bot-token", "no-such-secret")],
                     ("secretmanager.secrets.get", "projects/nba-props-platform/secrets/slack-bot-token")]
    assert manager.accesses == []


async def test_a_missing_secret_is_not_found(client: secretmanager_v1.SecretManagerServiceClient) -> None:
    with pytest.raises(exceptions.NotFound, match="slack-bot-tokn"):
        await asyncio.to_thread(client.access_secret_version,
                                name="projects/nba-props-platform/secrets/slack-bot-tokn/versions/latest")


async def test_responses_validate_against_the_discovery_document(world: World) -> None:
    with also_granted(world, "roles/secretmanager.viewer"):
        await responses_validate_against_the_discovery_document(world)


async def responses_validate_against_the_discovery_document(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.url("secret_manager"), headers=google_auth(world)) as http:
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


async def test_secret_accessor_reads_payloads_and_nothing_else(
    world: World, client: secretmanager_v1.SecretManagerServiceClient
) -> None:
    """roles/secretmanager.secretAccessor "Allows accessing the payload of secrets" and holds
    secretmanager.versions.access only (https://cloud.google.com/iam/docs/roles-permissions/secretmanager,
    https://cloud.google.com/secret-manager/docs/access-control): the bot, which holds just that, may read its
    Slack token, and every other method is PERMISSION_DENIED with the permission it lacked."""
    assert world.iam.roles.count("roles/secretmanager.secretAccessor") == 1
    project = "projects/nba-props-platform"
    secret = f"{project}/secrets/{world.config.secrets.slack_bot_token}"
    assert (await asyncio.to_thread(client.access_secret_version, name=f"{secret}/versions/latest")).payload.data
    attempts = {
        "secretmanager.secrets.list": lambda: list(client.list_secrets(parent=project)),
        "secretmanager.secrets.get": lambda: client.get_secret(name=secret),
        "secretmanager.secrets.create": lambda: client.create_secret(
            parent=project, secret_id="not-allowed", secret={"replication": {"automatic": {}}}),
        "secretmanager.versions.add": lambda: client.add_secret_version(parent=secret, payload={"data": b"x"}),
        "secretmanager.versions.disable": lambda: client.disable_secret_version(name=f"{secret}/versions/1"),
        "secretmanager.secrets.delete": lambda: client.delete_secret(name=secret),
    }
    for permission, attempt in attempts.items():
        with pytest.raises(exceptions.Forbidden) as denied:
            await asyncio.to_thread(attempt)
        assert (denied.value.reason, denied.value.domain) == ("IAM_PERMISSION_DENIED", "secretmanager.googleapis.com")
        assert denied.value.metadata["permission"] == permission
    assert world.secret_manager.secret(world.config.secrets.slack_bot_token).versions[0].state == "ENABLED"
    assert "not-allowed" not in world.secret_manager.secrets


async def test_lists_page_and_filter_by_name_label_and_state(
    world: World, client: secretmanager_v1.SecretManagerServiceClient
) -> None:
    """ListSecrets "If the number is greater than 25000, it is capped at 25000" and pages with page_token
    (https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/list); filters such as
    `name:asecret OR name:bsecret` and labels, "Regular expressions are not supported in the API"
    (https://cloud.google.com/secret-manager/docs/filtering)."""
    project = "projects/nba-props-platform"
    with also_granted(world, "roles/secretmanager.admin"):
        for index in range(5):
            await asyncio.to_thread(client.create_secret, parent=project, secret_id=f"paged-{index}",
                                    secret={"replication": {"automatic": {}}, "labels": {"team": f"t{index % 2}"}})
        first = await asyncio.to_thread(client.list_secrets, request={"parent": project, "page_size": 2,
                                                                      "filter": "name:paged-"})
        pages = await asyncio.to_thread(lambda: [[s.name.rsplit("/", 1)[1] for s in page.secrets]
                                                 for page in first.pages])
        either = await asyncio.to_thread(lambda: [s.name.rsplit("/", 1)[1] for s in client.list_secrets(
            request={"parent": project, "filter": "name:paged-1 OR name:paged-4"})])
        team = await asyncio.to_thread(lambda: [s.name.rsplit("/", 1)[1] for s in client.list_secrets(
            request={"parent": project, "filter": "labels.team=t1 name:paged", "page_size": 30000})])
        with pytest.raises(exceptions.BadRequest, match="Regular expressions"):
            await asyncio.to_thread(lambda: list(client.list_secrets(
                request={"parent": project, "filter": 'name ~ "paged-.*"'})))
        await asyncio.to_thread(client.disable_secret_version,
                                name=f"{project}/secrets/{world.config.secrets.runbook_link_key}/versions/1")
        try:
            enabled = await asyncio.to_thread(lambda: list(client.list_secret_versions(
                request={"parent": f"{project}/secrets/{world.config.secrets.runbook_link_key}",
                         "filter": "state:ENABLED"})))
        finally:
            await asyncio.to_thread(client.enable_secret_version,
                                    name=f"{project}/secrets/{world.config.secrets.runbook_link_key}/versions/1")
    assert pages == [["paged-0", "paged-1"], ["paged-2", "paged-3"], ["paged-4"]]
    assert either == ["paged-1", "paged-4"]
    assert team == ["paged-1", "paged-3"]
    assert enabled == []
