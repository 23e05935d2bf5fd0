"""google-auth's own code, pointed at the sandbox's metadata server the way a process is on Cloud Run.

google-auth reads GCE_METADATA_HOST once, when google.auth.compute_engine._metadata is first imported
(google/auth/compute_engine/_metadata.py), so each client runs in a fresh interpreter started with the
variables set: the same way the bot's process gets them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.idtoken import ISSUER, InvalidToken, unique_id
from sandbox.runner import bot_environment
from sandbox.world import World

_GOOGLE_AUTH = """
import json, sys
import google.auth
import google.auth.transport.requests
import google.oauth2.id_token
from google.auth import compute_engine

audience = sys.argv[1]
request = google.auth.transport.requests.Request()
fetched = google.oauth2.id_token.fetch_id_token(request, audience)
identity = compute_engine.IDTokenCredentials(request, audience, use_metadata_identity_endpoint=True)
identity.refresh(request)
default, project = google.auth.default()
default.refresh(request)
print(json.dumps({"fetched": fetched, "credentials": identity.token, "email": identity.service_account_email,
                  "project": project, "access_token": default.token, "default_email": default.service_account_email}))
"""


async def _google_auth(world: World, audience: str, home: Path) -> dict[str, Any]:
    """Run google-auth in a child with the bot's metadata variables and no other credentials to find."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "NO_GCE_CHECK")}
    metadata = {k: v for k, v in bot_environment(world, "sqlite://").items() if k.startswith("GCE_")}
    env.update(metadata, CLOUDSDK_CONFIG=str(home))  # an empty gcloud config: no user credentials either
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", _GOOGLE_AUTH, audience, env=env,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    answer: dict[str, Any] = json.loads(out)
    return answer


async def test_google_auths_fetch_id_token_and_id_token_credentials_get_tokens_from_the_sandbox(
        world: World, tmp_path: Path) -> None:
    """fetch_id_token pings the server, then asks `identity?audience=…&format=full`
    (https://cloud.google.com/run/docs/container-contract#metadata-server); the token is a Google ID token
    for the audience, naming the bot's service account (https://cloud.google.com/docs/authentication/token-types#id)."""
    audience = world.run.url_for("prediction-worker")
    answer = await _google_auth(world, audience, tmp_path)
    for token in (answer["fetched"], answer["credentials"]):
        claims = world.id_tokens.verify(token)
        assert claims["aud"] == audience and claims["iss"] == ISSUER
        assert claims["email"] == world.service_account and claims["email_verified"] is True
        assert claims["sub"] == claims["azp"] == unique_id(world.service_account)
        assert claims["exp"] - claims["iat"] == 3600
    assert answer["email"] == answer["default_email"] == world.service_account
    assert answer["project"] == world.config.project
    assert answer["access_token"].startswith("ya29.")


async def test_a_request_without_metadata_flavor_is_refused_and_answers_carry_the_header(world: World) -> None:
    """"requests must include the Metadata-Flavor: Google header" or they are refused with 403
    (https://cloud.google.com/compute/docs/metadata/querying-metadata,
    https://cloud.google.com/compute/docs/troubleshooting/troubleshoot-metadata-server: 403 when "the request
    fails security checks"); google-auth's ping also requires the header on the answer."""
    url = world.url("metadata") + "/computeMetadata/v1/instance/service-accounts/default/identity"
    async with httpx.AsyncClient() as client:
        bare = await client.get(url, params={"audience": "https://x.example"})
        wrong = await client.get(url, params={"audience": "https://x.example"}, headers={"Metadata-Flavor": "Gooogle"})
        good = await client.get(url, params={"audience": "https://x.example"}, headers={"Metadata-Flavor": "Google"})
        ping = await client.get(world.url("metadata") + "/", headers={"Metadata-Flavor": "Google"})
    assert bare.status_code == wrong.status_code == 403
    assert "Metadata-Flavor" in bare.text
    assert good.status_code == 200 and good.headers["Metadata-Flavor"] == "Google"
    assert ping.status_code == 200 and ping.headers["Metadata-Flavor"] == "Google"


async def test_the_identity_endpoint_requires_an_audience(world: World) -> None:
    """An ID token is always for an audience (the `audience` parameter of the identity endpoint,
    https://cloud.google.com/compute/docs/instances/verifying-instance-identity); without one, 400
    (the status is an assumption: the stricter answer rather than a token for nobody)."""
    url = world.url("metadata") + "/computeMetadata/v1/instance/service-accounts/default/identity"
    async with httpx.AsyncClient() as client:
        missing = await client.get(url, headers={"Metadata-Flavor": "Google"})
    assert missing.status_code == 400


async def test_project_and_region_answer_as_cloud_run_does(world: World) -> None:
    """Cloud Run's region entry is `projects/PROJECT-NUMBER/regions/REGION`
    (https://cloud.google.com/run/docs/container-contract#metadata-server; Google's samples parse it so, e.g.
    GoogleCloudPlatform/nodejs-docs-samples run/service-auth)."""
    root = world.url("metadata") + "/computeMetadata/v1/"
    async with httpx.AsyncClient(headers={"Metadata-Flavor": "Google"}) as client:
        region = await client.get(root + "instance/region")
        number = await client.get(root + "project/numeric-project-id")
        listing = await client.get(root + "instance/service-accounts/default/")
        other = await client.get(root + "instance/service-accounts/someone-else@example.com/email")
    assert region.text == f"projects/{world.run.project_number}/regions/{world.config.region}"
    assert number.text == world.run.project_number
    assert "identity" in listing.text.split() and "token" in listing.text.split()
    assert other.status_code == 404


async def test_a_token_outlives_neither_its_hour_nor_a_changed_lifetime(world: World) -> None:
    """exp = iat + the `identity.id_token_lifetime_s` limit (3600, Google's), and verification refuses a token
    past it (https://cloud.google.com/docs/authentication/token-types#id)."""
    old = world.id_tokens.mint(audience="https://a.example", email=world.service_account,
                               issued_at=time.time() - 3601)
    with pytest.raises(InvalidToken, match="expired"):
        world.id_tokens.verify(old)
    world.limits.patch("identity", {"id_token_lifetime_s": 60})
    try:
        short = world.id_tokens.verify(world.id_tokens.mint(audience="https://a.example", email=world.service_account))
    finally:
        world.limits.patch("identity", {"id_token_lifetime_s": 3600})
    assert short["exp"] - short["iat"] == 60
