"""Every Google API of the world asks for an OAuth 2 access token, and takes exactly those its metadata server
issues: a call without one, or with anything else, is answered 401 UNAUTHENTICATED in Google's shape before any
other check ("Request is missing required authentication credential. ..." with ErrorInfo CREDENTIALS_MISSING,
googleapis/google-api-php-client#1528, reactmore/morelab#17; "Request had invalid authentication credentials.
..." with ACCESS_TOKEN_TYPE_UNSUPPORTED, GoogleCloudPlatform/cloud-logging-data-source-plugin#126). Driven by the
real clients, which raise google-api-core's Unauthorized."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError
from google.cloud import logging, monitoring_v3, run_v2
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.oauth2.credentials import Credentials

from sandbox.world import World
from tests.conftest import client_options

PROJECT = "nba-props-platform"
PARENT = f"projects/{PROJECT}/locations/us-west2"
MISSING = ("Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or "
           "other valid authentication credential. See https://developers.google.com/identity/sign-in/web/"
           "devconsole-project.")
INVALID = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
           "valid authentication credential. See https://developers.google.com/identity/sign-in/web/"
           "devconsole-project.")


async def metadata_token(world: World) -> str:
    """What google-auth's compute_engine credentials fetch on Cloud Run
    (https://cloud.google.com/run/docs/container-contract#metadata-server)."""
    async with httpx.AsyncClient(base_url=world.url("metadata"), headers={"Metadata-Flavor": "Google"}) as http:
        answer = await http.get("/computeMetadata/v1/instance/service-accounts/default/token")
    token: str = answer.json()["access_token"]
    return token


def reads(world: World) -> dict[str, tuple[str, str, dict[str, Any] | None]]:
    """One read of each REST API: (method, URL, JSON body)."""
    secret = f"projects/{PROJECT}/secrets/{world.config.secrets.slack_bot_token}/versions/latest"
    return {
        "run.googleapis.com": ("GET", f"{world.url('cloud_run')}/v2/{PARENT}/services/prediction-worker", None),
        "secretmanager.googleapis.com": ("GET", f"{world.url('secret_manager')}/v1/{secret}:access", None),
        "logging.googleapis.com": ("POST", f"{world.url('logging')}/v2/entries:list",
                                   {"resourceNames": [f"projects/{PROJECT}"], "pageSize": 1}),
        "monitoring.googleapis.com": ("GET", f"{world.url('monitoring')}/v3/projects/{PROJECT}/timeSeries",
                                      None),
        "artifactregistry.googleapis.com": ("GET", f"{world.url('artifact_registry')}/v1/{PARENT}/repositories/"
                                            "cloud-run/dockerImages", None),
    }


async def answers(world: World, token: str | None) -> dict[str, httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(headers=headers) as http:
        return {service: await http.request(method, url, json=body)
                for service, (method, url, body) in reads(world).items()}


async def test_a_call_without_credentials_is_401_credentials_missing_on_every_api(world: World) -> None:
    accesses = len(world.secret_manager.accesses)
    for service, answer in (await answers(world, None)).items():
        error = answer.json()["error"]
        assert (answer.status_code, error["status"], error["message"]) == (401, "UNAUTHENTICATED", MISSING), service
        [info] = error["details"]
        assert (info["reason"], info["domain"], info["metadata"]["service"]) == (
            "CREDENTIALS_MISSING", "googleapis.com", service)
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="https://accounts.google.com/"'
    assert len(world.secret_manager.accesses) == accesses, "refused before the secret is read"


async def test_the_real_client_without_credentials_gets_no_further(world: World) -> None:
    """google-auth answers a 401 by refreshing its credentials, which anonymous ones cannot: the call fails."""
    client = run_v2.ServicesClient(transport="rest", credentials=AnonymousCredentials(),
                                   client_options=client_options(world.url("cloud_run")))
    with pytest.raises(GoogleAuthError, match="cannot be refreshed"):
        await asyncio.to_thread(client.get_service, name=f"{PARENT}/services/prediction-worker")


async def test_a_token_the_metadata_server_did_not_issue_is_401_invalid(world: World) -> None:
    """An ID token is no access token (ACCESS_TOKEN_TYPE_UNSUPPORTED); a made-up access token is refused too."""
    id_token = world.id_tokens.mint(audience="https://example.com", email=world.service_account)
    for garbage in (id_token, "ya29.not-issued-by-this-world"):
        for service, answer in (await answers(world, garbage)).items():
            assert (answer.status_code, answer.json()["error"]["message"]) == (401, INVALID), service
    wrong_type = (await answers(world, id_token))["run.googleapis.com"].json()["error"]["details"][0]
    assert wrong_type["reason"] == "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    assert wrong_type["metadata"]["method"] == "google.cloud.run.v2.Services.GetService"


async def test_an_expired_token_is_401_and_a_fresh_one_from_the_metadata_server_is_served(world: World) -> None:
    """Access tokens last IdentityLimits.access_token_lifetime_s (just under an hour,
    https://cloud.google.com/docs/authentication/token-types#access); the real clients work with a fresh one."""
    token = await metadata_token(world)
    run = run_v2.ServicesClient(transport="rest", credentials=Credentials(token=token),  # type: ignore[no-untyped-call]
                                client_options=client_options(world.url("cloud_run")))
    logs = logging.Client(project=PROJECT, credentials=Credentials(token=token),  # type: ignore[no-untyped-call]
                          _use_grpc=False, client_options={"api_endpoint": world.url("logging")})
    assert (await asyncio.to_thread(run.get_service, name=f"{PARENT}/services/prediction-worker")).uri
    await asyncio.to_thread(lambda: list(logs.list_entries(filter_="severity>=ERROR", max_results=1)))
    world.identity_limits.access_token_lifetime_s = 0
    try:
        stale = await metadata_token(world)
    finally:
        world.identity_limits.access_token_lifetime_s = 3599
    refused = (await answers(world, stale))["secretmanager.googleapis.com"]
    assert refused.status_code == 401 and refused.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"


async def test_monitoring_over_grpc_takes_the_token_as_authorization_metadata(world: World) -> None:
    """google-cloud-monitoring speaks gRPC, where the bearer token travels as `authorization` metadata."""
    request = {"name": f"projects/{PROJECT}", "filter": 'metric.type = "run.googleapis.com/request_count"',
               "interval": {"start_time": {"seconds": 0}, "end_time": {"seconds": 60}}}

    def listed(metadata: tuple[tuple[str, str], ...]) -> list[Any]:
        channel = grpc.insecure_channel(world.endpoints()["monitoring_endpoint"])
        client = monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))
        return list(client.list_time_series(request=request, metadata=metadata, retry=None))

    with pytest.raises(exceptions.Unauthenticated, match="missing required authentication credential"):
        await asyncio.to_thread(listed, ())
    token = await metadata_token(world)
    assert await asyncio.to_thread(listed, (("authorization", f"Bearer {token}"),)) == []
