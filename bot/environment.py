"""Where the bot's collaborators live. Production uses Google's and Slack's defaults; the sandbox and the
tests point each one at 127.0.0.1 through these variables (the sandbox writes them as `bot_env`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

VARIABLES = {
    "slack_api_url": "CHATOPS_SLACK_API_URL",
    "cloud_run_endpoint": "CHATOPS_CLOUD_RUN_ENDPOINT",
    "secret_manager_endpoint": "CHATOPS_SECRET_MANAGER_ENDPOINT",
    "logging_endpoint": "CHATOPS_LOGGING_ENDPOINT",
    "monitoring_endpoint": "CHATOPS_MONITORING_ENDPOINT",
    "artifact_registry_endpoint": "CHATOPS_ARTIFACT_REGISTRY_ENDPOINT",
    "google_credentials": "CHATOPS_GOOGLE_CREDENTIALS",
    "database_url": "CHATOPS_DATABASE_URL",
    "public_url": "CHATOPS_PUBLIC_URL",
    "metadata_host": "GCE_METADATA_HOST",  # google-auth's own variable: the metadata server's host:port
}


@dataclass(frozen=True)
class Environment:
    slack_api_url: str | None = None
    cloud_run_endpoint: str | None = None
    secret_manager_endpoint: str | None = None
    logging_endpoint: str | None = None
    monitoring_endpoint: str | None = None
    artifact_registry_endpoint: str | None = None
    google_credentials: str | None = None
    database_url: str | None = None
    public_url: str | None = None
    metadata_host: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Environment:
        source = os.environ if env is None else env
        return cls(**{field: source.get(name) or None for field, name in VARIABLES.items()})

    @property
    def anonymous_google(self) -> bool:
        """Emulators take no credentials; real Google takes Application Default Credentials."""
        return self.google_credentials == "anonymous"
