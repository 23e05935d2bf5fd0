"""ID tokens for calling private Cloud Run services, minted by the metadata server, fetched by google-auth.

A private service answers only requests carrying a Google-signed ID token whose audience is its URL
(https://cloud.google.com/run/docs/authenticating/service-to-service). On Cloud Run the metadata server mints
one for the bot's service account; google-auth does the talking (`fetch_id_token_credentials`: the ping, the
service account, then the identity endpoint). This adapter keeps one token per audience until shortly before it
expires, runs the blocking calls in a thread, and answers None where there is no metadata server (a laptop), so a
probe still goes out, without a token, and says what Cloud Run answered.

Every service is its own audience, so a fleet of a thousand needs a thousand tokens at once, each hour: the ping
and the service account are asked once, and each further audience is one call to the identity endpoint
(`with_target_audience` of the credentials found first), a third of the metadata calls and of the CPU.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import google.auth.transport.requests
import google.oauth2.id_token
from google.auth import exceptions

log = logging.getLogger(__name__)


class MetadataAt:
    """google-auth's requests transport, bound to one metadata server.

    google-auth reads GCE_METADATA_HOST once, when its metadata module is first imported
    (google/auth/compute_engine/_metadata.py), so a bot built later in the same process could not be pointed
    anywhere else; this transport sends every metadata request google-auth makes to the host the bot's
    environment names. Used only when that variable is set: on Cloud Run google-auth's defaults apply.
    """

    def __init__(self, host: str) -> None:
        self._host = host
        self._inner = google.auth.transport.requests.Request()

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: Any = None, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        target = urlunsplit((parts.scheme, self._host, parts.path, parts.query, ""))
        return self._inner(target, method=method, body=body, headers=headers, timeout=timeout, **kwargs)


@dataclass(frozen=True)
class _Held:
    token: str
    expires_at: float


class IdTokens:
    """`await tokens.token(audience)`: a valid ID token for the audience, or None when none can be had.

    `margin_s` renews a token that long before it expires, so none expires in flight; after finding no metadata
    server the adapter asks again only every `retry_s`, and says so in the log once.
    """

    def __init__(self, metadata_host: str | None = None, *, margin_s: float = 300.0, retry_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._host = metadata_host
        self._margin_s = margin_s
        self._retry_s = retry_s
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._fetching: dict[str, asyncio.Task[str | None]] = {}
        self._found: Any = None  # the first ID token credentials found: the others are copies of them
        self._absent_until = 0.0
        self._said_absent = False

    async def token(self, audience: str) -> str | None:
        now = self._clock()
        held = self._held.get(audience)
        if held is not None and held.expires_at - self._margin_s > now:
            return held.token
        if now < self._absent_until:
            return None
        fetching = self._fetching.get(audience)
        if fetching is None:  # one fetch per audience, however many probes ask at once
            fetching = asyncio.create_task(self._fetch(audience), name=f"id-token {audience}")
            self._fetching[audience] = fetching
            fetching.add_done_callback(lambda _: self._fetching.pop(audience, None))
        return await asyncio.shield(fetching)

    async def _fetch(self, audience: str) -> str | None:
        try:
            token, expires_at = await asyncio.to_thread(self._fetch_blocking, audience)
        except exceptions.DefaultCredentialsError as exc:
            self._absent_until = self._clock() + self._retry_s
            if not self._said_absent:
                self._said_absent = True
                log.warning("no metadata server (%s): probing private services without an ID token", exc)
            return None
        except (exceptions.GoogleAuthError, ValueError) as exc:
            log.warning("could not get an ID token for %s: %s", audience, exc)
            return None
        self._held[audience] = _Held(token, expires_at)
        return token

    def _fetch_blocking(self, audience: str) -> tuple[str, float]:
        request = MetadataAt(self._host) if self._host else google.auth.transport.requests.Request()
        if self._found is None:
            self._found = google.oauth2.id_token.fetch_id_token_credentials(  # type: ignore[no-untyped-call]
                audience, request=request)
        credentials = self._found.with_target_audience(audience)
        credentials.refresh(request)
        expires_at = credentials.expiry.replace(tzinfo=UTC).timestamp()
        return str(credentials.token), float(expires_at)
