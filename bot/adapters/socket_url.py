"""The first Socket Mode URL, opened at start with the app-level token.

slack_sdk's Socket Mode client retries a refused `apps.connections.open` every ten seconds forever, so a wrong
token would leave the bot up and deaf. Opened here first, a refusal stops start-up in one line naming the secret;
the URL is then the client's first connection, so start-up spends one call of the method's Tier 1 ("1+ per
minute", https://docs.slack.dev/reference/methods/apps.connections.open), not two.
"""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.adapters.secrets import SecretsUnavailable

_REFUSED = {
    "not_allowed_token_type": "is not an app-level token",
    "invalid_auth": "is not a valid app-level token (revoked, or of another app)",
    "not_authed": "was not accepted as a token",
    "missing_scope": "lacks the scope connections:write",
}


def first_url(app_token: str, base_url: str | None, secret: str) -> str:
    client = WebClient(base_url=base_url, timeout=10) if base_url else WebClient(timeout=10)
    where = base_url or "https://slack.com/api/"
    try:
        response = client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = str(exc.response.get("error", ""))
        what = _REFUSED.get(error, f"was refused ({error})")
        raise SecretsUnavailable(
            f"secret '{secret}' {what}: Slack's apps.connections.open answered {error}; generate an app-level token "
            f"with the scope connections:write (Basic Information > App-Level Tokens) and add it with "
            f"`gcloud secrets versions add {secret} --data-file=-`") from None
    except OSError as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise SecretsUnavailable(f"cannot reach Slack at {where} to open a Socket Mode connection with secret "
                                 f"'{secret}': {reason}") from None
    return str(response["url"])
