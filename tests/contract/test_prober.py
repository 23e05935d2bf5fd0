"""The prober over real HTTP: bounded concurrency, order kept, failures described rather than raised, and
private services called with the bot's ID token."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from google.cloud import run_v2

from bot.adapters.idtokens import IdTokens
from bot.adapters.prober import Prober, Target
from bot.config import HealthPaths
from bot.domain.health import Status, classify
from sandbox.runner import bot_environment
from sandbox.serving import Listener, start, stop
from sandbox.world import World
from tests.conftest import bot_may_not_invoke


class Counting:
    def __init__(self) -> None:
        self.now = 0
        self.most = 0


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Counting]]:
    counting = Counting()

    async def answer(request: web.Request) -> web.StreamResponse:
        counting.now += 1
        counting.most = max(counting.most, counting.now)
        try:
            await asyncio.sleep(0.02)
            if request.match_info["name"] == "dead":
                if request.transport is not None:
                    request.transport.close()
                raise web.HTTPServiceUnavailable()
            return web.json_response({"status": "ok", "revision": request.match_info["name"]})
        finally:
            counting.now -= 1

    app = web.Application()
    app.router.add_get("/{name}/{path:.*}", answer)
    listener = await start(Listener("fleet", app))
    yield listener.url, counting
    await stop(listener)


async def test_many_services_are_probed_in_order_never_above_the_limit(server: tuple[str, Counting]) -> None:
    url, counting = server
    prober = Prober(concurrency=9)
    try:
        results = await prober.probe_many([Target(f"{url}/svc-{i}", HealthPaths(), None) for i in range(40)])
    finally:
        await prober.aclose()
    assert [probes[0].body["revision"] for probes in results if probes[0].body] == [f"svc-{i}" for i in range(40)]
    assert all([p.endpoint for p in probes] == ["liveness", "readiness", "deep"] for probes in results)
    assert counting.most <= 9


async def test_a_dropped_connection_and_a_timeout_are_described(server: tuple[str, Counting]) -> None:
    url, _ = server
    prober = Prober(concurrency=4)
    try:
        dropped = await prober.probe("liveness", f"{url}/dead", "/health", 2.0, audience=None)
        slow = await prober.probe("liveness", f"{url}/slow", "/health", 0.005, audience=None)
        refused = await prober.probe("liveness", "http://127.0.0.1:1", "/health", 2.0, audience=None)
    finally:
        await prober.aclose()
    assert dropped.status is None and dropped.error.startswith("no answer")
    assert slow.status is None and slow.error == "timed out after 0.005 s"
    assert refused.status is None and refused.error.startswith("connection failed")


@pytest.fixture
async def bot_prober(world: World) -> AsyncIterator[Prober]:
    """The prober as the bot builds it in the sandbox: ID tokens from the world's metadata server."""
    prober = Prober(concurrency=6, tokens=IdTokens(bot_environment(world, "sqlite://")["GCE_METADATA_HOST"]))
    yield prober
    await prober.aclose()


@pytest.fixture
async def tagged(services_client: run_v2.ServicesClient) -> AsyncIterator[str]:
    """A private service deployed with a tag on its revision, as a canary deploy tags its candidate."""
    parent = "projects/nba-props-platform/locations/us-west2"
    template = run_v2.RevisionTemplate(containers=[run_v2.Container(image="us-docker.pkg.dev/p/r/tagged:v1")])
    latest = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
    service = run_v2.Service(template=template, traffic=[run_v2.TrafficTarget(type_=latest, percent=100, tag="probe")])
    await asyncio.to_thread(lambda: services_client.create_service(
        parent=parent, service=service, service_id="tagged-prober").result(timeout=30))
    yield "tagged-prober"
    await asyncio.to_thread(lambda: services_client.delete_service(
        name=f"{parent}/services/tagged-prober").result(timeout=30))


async def test_a_private_service_is_probed_with_the_bots_id_token_on_its_url_and_its_tag_url(
        world: World, bot_prober: Prober, tagged: str) -> None:
    """The audience is the service URL for both (https://cloud.google.com/run/docs/configuring/custom-audiences:
    audiences are per service); one token serves all three endpoints and both URLs."""
    url, tag_url = world.run.url_for(tagged), world.run.tag_url(tagged, "probe")
    minted = world.metadata.identity_requests
    on_url = await bot_prober.probe_service(url, HealthPaths(), audience=url)
    on_tag = await bot_prober.probe_service(tag_url, HealthPaths(), audience=url)
    assert [p.status for p in on_url + on_tag] == [200] * 6, [p.error for p in on_url + on_tag]
    assert classify(tagged, on_url).status is Status.HEALTHY
    assert world.metadata.identity_requests == minted + 1


async def test_each_further_audience_costs_one_identity_call_not_a_ping(world: World) -> None:
    """A thousand services are a thousand audiences: the metadata server is found once, then asked only for
    tokens."""
    tokens = IdTokens(bot_environment(world, "sqlite://")["GCE_METADATA_HOST"])
    pings, minted = world.metadata.pings, world.metadata.identity_requests
    names = ("nba-grading-service", "prediction-worker", "mlb-prediction-worker")
    audiences = [world.run.url_for(name) for name in names]
    found = [await tokens.token(audience) for audience in audiences]
    assert all(found) and len(set(found)) == 3
    assert world.metadata.identity_requests - minted == 3
    assert world.metadata.pings - pings == 1


async def test_a_403_says_to_grant_the_bot_run_invoker(world: World, bot_prober: Prober) -> None:
    """A valid token of a member without roles/run.invoker is refused with 403
    (https://cloud.google.com/run/docs/securing/managing-access): /health says what to grant, and does not
    call the service unhealthy, since the service itself never answered."""
    service = "nba-grading-service"
    url = world.run.url_for(service)
    with bot_may_not_invoke(world, service):
        probes = await bot_prober.probe_service(url, HealthPaths(), audience=url)
    assert {p.status for p in probes} == {403}
    health = classify(service, probes)
    assert health.status is Status.UNREACHABLE
    assert health.reason == ("403 Forbidden: the bot's service account may not invoke this service "
                             "(grant it roles/run.invoker on it)")


async def test_without_a_metadata_server_probes_go_out_without_a_token_and_say_so(world: World) -> None:
    url = world.run.url_for("nba-grading-service")
    prober = Prober(concurrency=3, tokens=IdTokens("127.0.0.1:1"))
    try:
        probe = await prober.probe("liveness", url, "/health", 2.0, audience=url)
    finally:
        await prober.aclose()
    assert probe.status == 403 and "no ID token" in probe.error


class Asked:
    """A token source that records which thread asks it."""

    def __init__(self) -> None:
        self.threads: set[str] = set()

    async def token(self, audience: str) -> str | None:
        self.threads.add(threading.current_thread().name)
        return None


async def test_probes_run_on_the_probers_own_thread_which_ends_on_aclose(server: tuple[str, Counting]) -> None:
    """Slack's acks share the caller's loop: the probing, token fetches included, happens on another."""
    url, _ = server
    asked = Asked()
    prober = Prober(concurrency=6, tokens=asked)
    results = await prober.probe_many([Target(f"{url}/svc-{i}", HealthPaths(), f"{url}/svc-{i}") for i in range(4)])
    assert [probes[0].status for probes in results] == [200] * 4
    assert asked.threads == {"prober"}
    assert "prober" in {thread.name for thread in threading.enumerate()}
    await prober.aclose()
    assert "prober" not in {thread.name for thread in threading.enumerate()}
    with pytest.raises(RuntimeError, match="closed"):
        await prober.probe("liveness", f"{url}/svc-0", "/health", 2.0, audience=None)


async def test_a_cancelled_caller_cancels_its_probes(server: tuple[str, Counting]) -> None:
    url, counting = server
    prober = Prober(concurrency=30)
    try:
        many = asyncio.create_task(prober.probe_many([Target(f"{url}/svc-{i}", HealthPaths(), None)
                                                      for i in range(200)]))
        while counting.now == 0:  # noqa: ASYNC110 - the fixture's server offers no event to wait on
            await asyncio.sleep(0.005)
        many.cancel()
        with pytest.raises(asyncio.CancelledError):
            await many
        await asyncio.sleep(0.1)  # what was in flight answers (20 ms); nothing new is sent
        assert counting.now == 0
        assert counting.most <= 30
    finally:
        await prober.aclose()
