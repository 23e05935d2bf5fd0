"""The prober over real HTTP: bounded concurrency, order kept, failures described rather than raised."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.adapters.prober import Prober
from bot.config import HealthPaths
from sandbox.serving import Listener, start, stop


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
        results = await prober.probe_many([(f"{url}/svc-{i}", HealthPaths()) for i in range(40)])
    finally:
        await prober.aclose()
    assert [probes[0].body["revision"] for probes in results if probes[0].body] == [f"svc-{i}" for i in range(40)]
    assert all([p.endpoint for p in probes] == ["liveness", "readiness", "deep"] for probes in results)
    assert counting.most <= 9


async def test_a_dropped_connection_and_a_timeout_are_described(server: tuple[str, Counting]) -> None:
    url, _ = server
    prober = Prober(concurrency=4)
    try:
        dropped = await prober.probe("liveness", f"{url}/dead", "/health", 2.0)
        slow = await prober.probe("liveness", f"{url}/slow", "/health", 0.005)
        refused = await prober.probe("liveness", "http://127.0.0.1:1", "/health", 2.0)
    finally:
        await prober.aclose()
    assert dropped.status is None and dropped.error.startswith("no answer")
    assert slow.status is None and slow.error == "timed out after 0.005 s"
    assert refused.status is None and refused.error.startswith("connection failed")
