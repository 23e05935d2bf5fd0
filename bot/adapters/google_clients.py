"""Construction of Google API clients: REST transport, an optional endpoint override, and credentials."""

from __future__ import annotations

from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth import compute_engine
from google.auth.credentials import AnonymousCredentials, Credentials

from bot.adapters.idtokens import MetadataAt
from bot.environment import Environment


class _MetadataCredentials(Credentials):
    """The service account's access tokens from the metadata server the environment names (GCE_METADATA_HOST):
    what Application Default Credentials find on Cloud Run, bound to that host because google-auth reads the
    variable only once, at import (see `idtokens.MetadataAt`). compute_engine's credentials do the talking."""

    def __init__(self, host: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._inner = compute_engine.Credentials(universe_domain="googleapis.com")  # type: ignore[no-untyped-call]
        self._at = MetadataAt(host)

    def refresh(self, request: Any) -> None:
        self._inner.refresh(self._at)  # type: ignore[no-untyped-call]
        self.token, self.expiry = self._inner.token, self._inner.expiry


def credentials(env: Environment) -> Credentials | None:
    """None: Application Default Credentials (production). An environment that names the metadata server gets
    that server's tokens; "anonymous" sends none (an emulator used on its own)."""
    if env.anonymous_google:
        return AnonymousCredentials()  # type: ignore[no-untyped-call]
    if env.metadata_host:
        return _MetadataCredentials(env.metadata_host)
    return None


def client_kwargs(endpoint: str | None, env: Environment) -> dict[str, Any]:
    """Keyword arguments shared by every GAPIC client the bot makes.

    REST rather than gRPC: one HTTP stack to reason about, and the same wire protocol the sandbox speaks.
    """
    kwargs: dict[str, Any] = {"transport": "rest"}
    if endpoint:
        kwargs["client_options"] = ClientOptions(api_endpoint=endpoint)
    found = credentials(env)
    if found is not None:
        kwargs["credentials"] = found
    return kwargs
