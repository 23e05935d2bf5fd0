"""Health probes over HTTP, many at once, each bounded by its own timeout.

aiohttp's client, with a pool of a hundred connections: httpx's own async pool collapses above a few dozen
(encode/httpx#3215), and httpx's API over aiohttp's pool (httpx-aiohttp) cost more than half of each probe's CPU
in its request and response models, which made `/health all` over a thousand services CPU-bound (profiled).

The probes run on the prober's own event loop in a daemon thread, with their own client (and ID tokens) on that
loop: three thousand requests of a thousand-service sweep or `/health all` otherwise share the web server's loop
with Slack's acks, which must answer within 3 s, and held them up by a hundred milliseconds and more.

Private services answer only callers that send an ID token for the service's URL, on the service URL and
on its tag URLs alike (https://cloud.google.com/run/docs/authenticating/service-to-service): each probe
names that audience and carries a token when one can be had. Cloud Run's own refusals (401, 403, an HTML
page from its front end) are described in words that say what to do. What a service says (every string of its
health body) and the errors of a failed request are outside text bound for Slack, escaped here for mrkdwn.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp

from bot.config import HealthPaths
from bot.domain.health import Endpoint, Probe
from bot.render.mrkdwn import escape

_MAX_BODY = 256 * 1024

T = TypeVar("T")


class TokenSource(Protocol):
    async def token(self, audience: str) -> str | None:
        """An ID token for the audience, or None when none can be had; never raises."""


@dataclass(frozen=True)
class Target:
    """One service to probe: where, which paths, and the audience its ID token must name (None: send none)."""

    url: str
    paths: HealthPaths
    audience: str | None


class Prober:
    """Awaitable from any event loop; the probing itself happens on the prober's own loop and thread, started at
    the first probe. `tokens` is asked only from that loop."""

    def __init__(self, concurrency: int = 100, tokens: TokenSource | None = None) -> None:
        self._concurrency = concurrency
        self._tokens = tokens
        self._starting = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._probes: _Probes | None = None
        self._closed = False

    async def probe(self, endpoint: Endpoint, base_url: str, path: str, limit_s: float, *,
                    audience: str | None) -> Probe:
        return await self._on_loop(lambda probes: probes.probe(endpoint, base_url, path, limit_s, audience=audience))

    async def probe_service(self, base_url: str, paths: HealthPaths, *, audience: str | None) -> list[Probe]:
        return await self._on_loop(lambda probes: probes.probe_service(base_url, paths, audience=audience))

    async def probe_many(self, targets: Sequence[Target]) -> list[list[Probe]]:
        """Probe many services from a fixed pool of workers, in the order given."""
        return await self._on_loop(lambda probes: probes.probe_many(targets))

    async def _on_loop(self, work: Callable[[_Probes], Coroutine[Any, Any, T]]) -> T:
        """`work(probes)` run on the prober's loop and awaited here; cancelling the caller cancels it there."""
        loop, probes = self._started()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work(probes), loop))

    def _started(self) -> tuple[asyncio.AbstractEventLoop, _Probes]:
        with self._starting:
            if self._closed:
                raise RuntimeError("the prober is closed")
            if self._loop is None or self._probes is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="prober", daemon=True)
                thread.start()
                # The client, its semaphore and the token fetches belong to the loop they serve.
                self._probes = asyncio.run_coroutine_threadsafe(self._make(), loop).result()
                self._loop, self._thread = loop, thread
            return self._loop, self._probes

    async def _make(self) -> _Probes:
        return _Probes(self._concurrency, self._tokens)

    async def aclose(self) -> None:
        """Close the client and end what still runs on the prober's loop, then stop the loop and its thread; a
        probe asked for afterwards raises."""
        with self._starting:
            self._closed = True
            loop, thread, probes = self._loop, self._thread, self._probes
            self._loop = self._thread = self._probes = None
        if loop is None or thread is None or probes is None:
            return
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_wind_down(probes), loop))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join)
            loop.close()


async def _wind_down(probes: _Probes) -> None:
    """On the prober's loop: close the client, cancel what is left (a token fetch), and end the loop's threads."""
    await probes.aclose()
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_default_executor()


class _Probes:
    """The probing itself: one client, one bound on requests in flight, on the loop it was made on."""

    def __init__(self, concurrency: int, tokens: TokenSource | None) -> None:
        # No cookie jar: a health endpoint's cookies mean nothing to the next probe, and storing them costs.
        self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                             headers={"User-Agent": "chatops-prober/1"},
                                             cookie_jar=aiohttp.DummyCookieJar())
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._tokens = tokens

    async def probe(self, endpoint: Endpoint, base_url: str, path: str, limit_s: float, *,
                    audience: str | None) -> Probe:
        url = base_url.rstrip("/") + path
        token = await self._tokens.token(audience) if self._tokens is not None and audience else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self._slots:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(limit_s), self._client.get(url, headers=headers,
                                                                      allow_redirects=False) as response:
                    status = response.status
                    content_type = response.headers.get("content-type", "")
                    content = await response.read()
            except TimeoutError:
                return Probe(endpoint, path, url, None, limit_s * 1000, error=f"timed out after {limit_s:g} s")
            except aiohttp.ClientError as exc:
                elapsed = (time.perf_counter() - started) * 1000
                return Probe(endpoint, path, url, None, elapsed, error=escape(_describe(exc)))
            elapsed = (time.perf_counter() - started) * 1000
        body = None
        if content_type.startswith("application/json") and len(content) < _MAX_BODY:
            try:
                parsed = json.loads(content)
            except ValueError:
                parsed = None
            body = _escaped(parsed) if isinstance(parsed, dict) else None
        refused = _refusal(status, sent_token=token is not None) if body is None else ""
        return Probe(endpoint, path, url, status, elapsed, body, error=refused)

    async def probe_service(self, base_url: str, paths: HealthPaths, *, audience: str | None) -> list[Probe]:
        endpoints: Sequence[tuple[Endpoint, str]] = (
            ("liveness", paths.liveness), ("readiness", paths.readiness), ("deep", paths.deep))
        return list(await asyncio.gather(*(
            self.probe(endpoint, base_url, path, paths.timeout, audience=audience) for endpoint, path in endpoints)))

    async def probe_many(self, targets: Sequence[Target]) -> list[list[Probe]]:
        """Probe many services from a fixed pool of workers, in the order given.

        A thousand services then start a few dozen tasks rather than four thousand at once: creating those
        in one go held the event loop for over 100 ms, and Slack's acks waited behind it.
        """
        results: list[list[Probe]] = [[] for _ in targets]
        pending = iter(enumerate(targets))

        async def worker() -> None:
            for index, target in pending:  # one iterator shared by every worker: each target taken once
                results[index] = await self.probe_service(target.url, target.paths, audience=target.audience)

        await asyncio.gather(*(worker() for _ in range(max(1, min(len(targets), self._concurrency // 3)))))
        return results

    async def aclose(self) -> None:
        await self._client.close()


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, dict):
        return {escape(key): _escaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    return value


def _refusal(status: int, *, sent_token: bool) -> str:
    """Cloud Run's front end refusing the bot, in words that say what to do; "" for any other answer.

    403 without a token: the service is private (https://cloud.google.com/run/docs/securing/managing-access);
    403 with one: the token's member lacks roles/run.invoker; 401: the token itself was not accepted (another
    audience, expired), https://cloud.google.com/run/docs/authenticating/service-to-service.
    """
    if status == 403 and sent_token:
        return ("403 Forbidden: the bot's service account may not invoke this service "
                "(grant it roles/run.invoker on it)")
    if status == 403:
        return ("403 Forbidden: the service is private and the bot had no ID token to send "
                "(is the metadata server reachable?)")
    if status == 401:
        return "401 Unauthorized: Cloud Run did not accept the bot's ID token for this service"
    return ""


def _describe(exc: aiohttp.ClientError) -> str:
    """In words an on-call engineer acts on."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection failed: {reason}"
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return f"timed out: {reason}"
    return f"no answer: {reason}"
