"""The bot's own credentials, read from Secret Manager at start and nowhere else: Slack's bot token and signing
secret, the key that signs runbook links, the token of Cloud Monitoring's webhook channel, and in Socket Mode the
app-level token. Reading `latest` at start means a new version of a secret takes effect at the next start ("an
alias to the most recently created SecretVersion", https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access)."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from google.api_core import exceptions
from google.api_core.retry import Retry, if_transient_error
from google.cloud import secretmanager_v1

from bot.adapters.google_clients import client_kwargs
from bot.checksum import crc32c
from bot.config import Config
from bot.environment import Environment
from bot.runbook_links import MIN_KEY_BYTES

_ACCESSOR = "roles/secretmanager.secretAccessor"


class SecretsUnavailable(Exception):
    """One line that names the secret and what to do about it; the bot prints it and exits."""


MIN_WEBHOOK_TOKEN_CHARS = 16
"""A token in a URL is only as strong as it is long; and the log redactor hides only values of 8 characters or more."""


@dataclass(frozen=True)
class Credentials:
    """Slack's two, the key that signs runbook links (None when links point at `runbook_base_url`), the
    webhook token (None unless `defaults.alerts.monitoring_webhook`), and the app-level token (None unless the bot
    serves in Socket Mode)."""

    bot_token: str
    signing_secret: str
    runbook_link_key: str | None
    monitoring_webhook_token: str | None = None
    app_token: str | None = None

    def __repr__(self) -> str:
        return "Credentials(...)"

    def values(self) -> tuple[str, ...]:
        """Every value the log redactor must hide."""
        held = (self.bot_token, self.signing_secret, self.runbook_link_key, self.monitoring_webhook_token,
                self.app_token)
        return tuple(v for v in held if v is not None)


def read_secret(client: secretmanager_v1.SecretManagerServiceClient, project: str, name: str,
                where: str) -> str:
    path = f"projects/{project}/secrets/{name}/versions/latest"
    try:
        response = client.access_secret_version(
            name=path, timeout=5, retry=Retry(initial=0.25, maximum=2.0, timeout=5, predicate=if_transient_error))
    except exceptions.NotFound:
        raise SecretsUnavailable(
            f"secret '{name}' has no enabled version in project {project} (the bot reads it with {_ACCESSOR}): "
            f"create it with `gcloud secrets create {name} --project={project}` and add the value with "
            f"`gcloud secrets versions add {name} --data-file=-`") from None
    except exceptions.PermissionDenied:
        raise SecretsUnavailable(
            f"no access to secret '{name}' in project {project}: grant {_ACCESSOR} on it to the bot's "
            "service account") from None
    except exceptions.Unauthenticated:
        raise SecretsUnavailable(
            f"cannot read secret '{name}': no Google credentials (on Cloud Run the service account "
            "provides them; locally run `gcloud auth application-default login`)") from None
    except (exceptions.GoogleAPICallError, exceptions.RetryError, requests.RequestException) as exc:
        reason = str(exc).splitlines()[0][:200]
        raise SecretsUnavailable(f"cannot reach Secret Manager at {where} to read secret '{name}' "
                                 f"(it needs {_ACCESSOR}): {reason}") from None
    data = response.payload.data
    if response.payload.data_crc32c and response.payload.data_crc32c != crc32c(data):
        raise SecretsUnavailable(f"secret '{name}' arrived corrupted (CRC32C mismatch); try again")
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretsUnavailable(f"secret '{name}' is not UTF-8 text") from None
    if not value:
        raise SecretsUnavailable(f"secret '{name}' is empty: add a version with the value")
    return value


def _link_key(client: secretmanager_v1.SecretManagerServiceClient, project: str, name: str, where: str) -> str:
    value = read_secret(client, project, name, where)
    if len(value.encode("utf-8")) < MIN_KEY_BYTES:
        raise SecretsUnavailable(
            f"secret '{name}' is too short to sign runbook links: an HMAC-SHA256 key needs at least "
            f"{MIN_KEY_BYTES} bytes; add a version with `openssl rand -base64 {MIN_KEY_BYTES} | "
            f"gcloud secrets versions add {name} --data-file=-`")
    return value


def _webhook_token(client: secretmanager_v1.SecretManagerServiceClient, project: str, name: str,
                   where: str) -> str:
    value = read_secret(client, project, name, where)
    if len(value) < MIN_WEBHOOK_TOKEN_CHARS:
        raise SecretsUnavailable(
            f"secret '{name}' is too short to authenticate Cloud Monitoring's webhook: use at least "
            f"{MIN_WEBHOOK_TOKEN_CHARS} random characters, e.g. `openssl rand -hex 32 | gcloud secrets versions add "
            f"{name} --data-file=-`, and the same value in the channel's URL (?auth_token=...) or Basic password")
    return value


APP_TOKEN_PREFIX = "xapp-"
"""App-level tokens start `xapp-` ("App-level token starting with `xapp-`", Bolt's SocketModeHandler; the token
kinds: https://docs.slack.dev/authentication/tokens)."""


def _app_token(client: secretmanager_v1.SecretManagerServiceClient, project: str, name: str, where: str) -> str:
    value = read_secret(client, project, name, where)
    if not value.startswith(APP_TOKEN_PREFIX):
        raise SecretsUnavailable(
            f"secret '{name}' does not hold an app-level token (one starts {APP_TOKEN_PREFIX}): in the app's settings, "
            f"Basic Information > App-Level Tokens, generate one with the scope connections:write and add it with "
            f"`gcloud secrets versions add {name} --data-file=-`")
    return value


def fetch_credentials(config: Config, env: Environment, *, socket_mode: bool = False) -> Credentials:
    client = secretmanager_v1.SecretManagerServiceClient(**client_kwargs(env.secret_manager_endpoint, env))
    where = env.secret_manager_endpoint or "secretmanager.googleapis.com"
    names = config.secrets
    return Credentials(
        bot_token=read_secret(client, config.project, names.slack_bot_token, where),
        signing_secret=read_secret(client, config.project, names.slack_signing_secret, where),
        runbook_link_key=(None if config.runbook_base_url is not None
                          else _link_key(client, config.project, names.runbook_link_key, where)),
        monitoring_webhook_token=(_webhook_token(client, config.project, names.monitoring_webhook_token, where)
                                  if config.defaults.alerts.monitoring_webhook else None),
        app_token=_app_token(client, config.project, names.slack_app_token, where) if socket_mode else None,
    )
