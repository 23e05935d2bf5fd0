"""Health probes over HTTP, many at once, each bounded by its own timeout.

httpx's API on aiohttp's connection pool: httpx's own async pool collapses above a few dozen
connections (encode/httpx#3215), and `/health all` over a large fleet needs a hundred in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from bot.config import HealthPaths
from bot.domain.health import Endpoint, Probe

_MAX_BODY = 256 * 1024


class Prober:
    def __init__(self, concurrency: int = 100, transport: httpx.AsyncBaseTransport | None = None) -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.AsyncClient(transport=transport or AiohttpTransport(limits=limits),
                                         headers={"User-Agent": "chatops-prober/1"}, follow_redirects=False)
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency

    async def probe(self, endpoint: Endpoint, base_url: str, path: str, limit_s: float, *, audience: str = "") -> Probe:
        url = base_url.rstrip("/") + path
        async with self._slots:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(limit_s):
                    response = await self._client.get(url, timeout=limit_s)
            except TimeoutError:
                return Probe(endpoint, path, url, None, limit_s * 1000, error=f"timed out after {limit_s:g} s")
            except httpx.HTTPError as exc:
                elapsed = (time.perf_counter() - started) * 1000
                return Probe(endpoint, path, url, None, elapsed, error=_describe(exc))
            elapsed = (time.perf_counter() - started) * 1000
        body = None
        is_json = response.headers.get("content-type", "").startswith("application/json")
        if is_json and len(response.content) < _MAX_BODY:
            try:
                parsed = json.loads(response.content)
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        return Probe(endpoint, path, url, response.status_code, elapsed, body)

    async def probe_service(self, base_url: str, paths: HealthPaths, *, audience: str = "") -> list[Probe]:
        endpoints: Sequence[tuple[Endpoint, str]] = (
            ("liveness", paths.liveness), ("readiness", paths.readiness), ("deep", paths.deep))
        return list(await asyncio.gather(*(
            self.probe(endpoint, base_url, path, paths.timeout) for endpoint, path in endpoints)))

    async def probe_many(self, targets: Sequence[tuple[str, HealthPaths]]) -> list[list[Probe]]:
        """Probe many services from a fixed pool of workers, in the order given.

        A thousand services then start a few dozen tasks rather than four thousand at once: creating those
        in one go held the event loop for over 100 ms, and Slack's acks waited behind it.
        """
        results: list[list[Probe]] = [[] for _ in targets]
        pending = iter(enumerate(targets))

        async def worker() -> None:
            for index, (url, paths) in pending:  # one iterator shared by every worker: each target taken once
                results[index] = await self.probe_service(url, paths)

        await asyncio.gather(*(worker() for _ in range(max(1, min(len(targets), self._concurrency // 3)))))
        return results

    async def aclose(self) -> None:
        await self._client.aclose()


def _describe(exc: httpx.HTTPError) -> str:
    """In words an on-call engineer acts on. The aiohttp transport maps a refused connection to httpx's
    ConnectTimeout, so the original aiohttp error decides."""
    cause = exc.__cause__
    reason = str(cause or exc) or type(cause or exc).__name__
    if isinstance(cause, aiohttp.ClientConnectorError) or (cause is None and isinstance(exc, httpx.ConnectError)):
        return f"connection failed: {reason}"
    if isinstance(cause, aiohttp.ServerTimeoutError) or (cause is None and isinstance(exc, httpx.TimeoutException)):
        return f"timed out: {reason}"
    return f"no answer: {reason}"
