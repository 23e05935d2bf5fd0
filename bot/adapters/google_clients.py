"""Construction of Google API clients: REST transport, an optional endpoint override, and credentials."""

from __future__ import annotations

from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials

from bot.environment import Environment


def client_kwargs(endpoint: str | None, env: Environment) -> dict[str, Any]:
    """Keyword arguments shared by every GAPIC client the bot makes.

    REST rather than gRPC: one HTTP stack to reason about, and the same wire protocol the sandbox speaks.
    """
    kwargs: dict[str, Any] = {"transport": "rest"}
    if endpoint:
        kwargs["client_options"] = ClientOptions(api_endpoint=endpoint)
    if env.anonymous_google:
        kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return kwargs
