"""Slack's v0 request signature, which every request Slack sends an app carries: `v0=` and the hex HMAC-SHA256 of
`v0:<timestamp>:<body>` under the app's signing secret (https://api.slack.com/authentication/verifying-requests-from-slack)."""

from __future__ import annotations

import hashlib
import hmac


def sign(signing_secret: str, timestamp: str, body: str) -> str:
    digest = hmac.new(signing_secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"
