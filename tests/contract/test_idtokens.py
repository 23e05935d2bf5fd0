"""The bot's ID tokens: google-auth's fetch against the sandbox's metadata server, cached per audience."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.adapters.idtokens import IdTokens
from sandbox.runner import bot_environment
from sandbox.world import World


def _host(world: World) -> str:
    return bot_environment(world, "sqlite://")["GCE_METADATA_HOST"]


async def test_a_token_names_the_audience_and_the_bots_service_account(world: World) -> None:
    """https://cloud.google.com/run/docs/authenticating/service-to-service: the token's audience is the
    receiving service's URL, its identity the caller's service account."""
    audience = world.run.url_for("prediction-coordinator")
    token = await IdTokens(_host(world)).token(audience)
    assert token is not None
    claims = world.id_tokens.verify(token)
    assert claims["aud"] == audience and claims["email"] == world.service_account


async def test_one_fetch_serves_every_probe_of_an_audience_until_shortly_before_it_expires(world: World) -> None:
    now = [1000.0]
    tokens = IdTokens(_host(world), margin_s=300, clock=lambda: now[0])
    audience = world.run.url_for("mlb-prediction-worker")
    before = world.metadata.identity_requests
    at_once = await asyncio.gather(*(tokens.token(audience) for _ in range(6)))
    again = await tokens.token(audience)
    assert len(set(at_once)) == 1 and again == at_once[0]
    assert world.metadata.identity_requests == before + 1
    other = await tokens.token(world.run.url_for("prediction-worker"))
    assert other != again and world.metadata.identity_requests == before + 2

    claims = world.id_tokens.verify(str(again))
    now[0] = claims["exp"] - 301  # still more than the margin left
    assert await tokens.token(audience) == again
    assert world.metadata.identity_requests == before + 2
    now[0] = claims["exp"] - 299  # inside the margin: renewed before it can expire in flight
    renewed = await tokens.token(audience)
    assert renewed is not None and world.id_tokens.verify(renewed)["aud"] == audience
    assert world.metadata.identity_requests == before + 3


async def test_without_a_metadata_server_there_is_no_token_and_one_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    """Running locally: google-auth finds no metadata server (its ping fails), so probes go without a token."""
    tokens = IdTokens("127.0.0.1:1", retry_s=300)
    with caplog.at_level(logging.WARNING, logger="bot.adapters.idtokens"):
        first = await tokens.token("https://a.example")
        second = await asyncio.wait_for(tokens.token("https://b.example"), 0.5)  # no second detection meanwhile
    assert first is None and second is None
    ours = [r.getMessage() for r in caplog.records if r.name == "bot.adapters.idtokens"]
    assert len(ours) == 1 and "no metadata server" in ours[0]
