"""google-cloud-run (REST) for what the bot reads and changes: services, revisions and their traffic.

The client is synchronous; every call runs in a worker thread so the event loop keeps acking Slack.
"""

from __future__ import annotations

import asyncio
import time

import requests
from google.api_core import exceptions
from google.cloud import run_v2

from bot.adapters.google_clients import client_kwargs
from bot.environment import Environment


class CloudRunUnavailable(Exception):
    """The Admin API could not be reached or refused; the message is fit to show a user."""


class CloudRunGateway:
    def __init__(self, project: str, region: str, env: Environment, *, url_ttl: float = 60.0) -> None:
        self.parent = f"projects/{project}/locations/{region}"
        kwargs = client_kwargs(env.cloud_run_endpoint, env)
        self.services = run_v2.ServicesClient(**kwargs)
        self.revisions = run_v2.RevisionsClient(**kwargs)
        self._url_ttl = url_ttl
        self._urls: dict[str, str] = {}
        self._urls_at = 0.0

    def service_name(self, service: str) -> str:
        return f"{self.parent}/services/{service}"

    async def service_urls(self) -> dict[str, str]:
        """Every service's URL, from one paged list call; URLs change rarely, so they are cached briefly."""
        if self._urls and time.monotonic() - self._urls_at < self._url_ttl:
            return self._urls

        def fetch() -> dict[str, str]:
            listing = self.services.list_services(request={"parent": self.parent, "page_size": 1000}, timeout=15)
            return {s.name.rsplit("/", 1)[-1]: s.uri for s in listing}

        try:
            self._urls = await asyncio.to_thread(fetch)
        except (exceptions.GoogleAPICallError, exceptions.RetryError, requests.RequestException) as exc:
            if self._urls:
                return self._urls  # a stale map beats none while the Admin API is down
            raise CloudRunUnavailable(f"the Cloud Run Admin API did not answer ({_reason(exc)})") from None
        self._urls_at = time.monotonic()
        return self._urls


def _reason(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
