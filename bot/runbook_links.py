"""Where runbook links point, and who may open the bot's own runbook pages.

A runbook names hosts, buckets and commands: the bot serves it only to people who got the link from Slack.
Each link carries an HMAC-SHA256 of its path under a key read from Secret Manager at start. The token does
not expire, so a link in last month's alert still opens; adding a new version of the key's secret and
restarting the bot invalidates every link written before. Alternatively the config points links at an
external web view of the runbooks (a repository's), which guards them with its own sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Protocol
from urllib.parse import quote

TOKEN = "sig"
"""The query parameter that carries a link's token: one parameter, so a link needs no `&`, one of Slack's
three control characters in message text (https://docs.slack.dev/messaging/formatting-message-text/)."""

INDEX = "/runbooks"

MIN_KEY_BYTES = 32
"""RFC 2104 section 2: "the minimal recommended length for K is L bytes (as the hash output length)", and
section 3: "less than L bytes is strongly discouraged"; SHA-256's L is 32 (https://www.ietf.org/rfc/rfc2104)."""


def page_path(runbook: str) -> str:
    """The path a runbook's page is served at, as the web app sees it (decoded): what a token signs."""
    return f"{INDEX}/{runbook}"


class LinkKey:
    """Signs and checks paths. Holds the key itself, so it is never shown: its repr names no value."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a link key needs at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def __repr__(self) -> str:
        return "LinkKey(...)"

    def token(self, path: str) -> str:
        digest = hmac.new(self._key, path.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def admits(self, path: str, token: str | None) -> bool:
        """In constant time, as the hmac docs advise for an externally supplied digest
        (https://docs.python.org/3.12/library/hmac.html, compare_digest)."""
        if token is None:
            return False
        return hmac.compare_digest(self.token(path).encode("ascii"), token.encode("utf-8"))


class RunbookPages(Protocol):
    def url(self, runbook: str) -> str:
        """The page's URL without a fragment: the caller adds the section."""
        ...


class SignedPages:
    """The bot's own pages, each URL carrying the token of its path."""

    def __init__(self, base_url: str, key: LinkKey) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key

    def url(self, runbook: str) -> str:
        path = page_path(runbook)
        return f"{self.base_url}{quote(path)}?{TOKEN}={self.key.token(path)}"


class ExternalPages:
    """A web view of the runbooks directory, e.g. https://github.com/OWNER/REPO/blob/main/runbooks: GitHub
    serves a file at .../blob/BRANCH/PATH (https://docs.github.com/en/repositories/working-with-files/using-files/
    getting-permanent-links-to-files) and gives each heading the anchor `slugify` computes."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def url(self, runbook: str) -> str:
        return f"{self.base_url}/{quote(runbook)}.md"
