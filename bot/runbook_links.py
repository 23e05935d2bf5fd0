"""Where runbook links point, and who may open the bot's own runbook pages.

A runbook names hosts, buckets and commands: the bot serves it only to people who got the link from Slack.
Each link carries an HMAC-SHA256 of its path and its expiry under a key read from Secret Manager at start. A link
opens for LINK_LIFETIME after the bot wrote it (to the end of that UTC day, so the links a message renders stay the
same all day), long enough for last month's alert, short enough that a link pasted elsewhere does not open a
runbook for good. Past it the page says the link has expired and where a fresh one is. Adding a new version of
the key's secret and restarting the bot invalidates every link written before. Alternatively the config points
links at an external web view of the runbooks (a repository's), which guards them with its own sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Literal, Protocol
from urllib.parse import quote

TOKEN = "sig"
"""The query parameter that carries a link's token: one parameter, so a link needs no `&`, one of Slack's
three control characters in message text (https://docs.slack.dev/messaging/formatting-message-text/)."""

INDEX = "/runbooks"

LINK_LIFETIME = timedelta(days=30)

LinkCheck = Literal["open", "expired", "refused"]
"""`expired`: the key signed this path, but its time has passed; `refused`: no token, or not one of the key's for
this path (missing, tampered, borrowed from another page)."""

_DAY_S = 86_400
_MOST_DIGITS = 12

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

    def token(self, path: str, expires: int) -> str:
        """`<expires>_<signature>`: seconds since the epoch, then the HMAC of the path and those seconds. Both in
        the characters of base64url, so the link stays one query parameter that needs no escaping."""
        digest = hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        return f"{expires}_{base64.urlsafe_b64encode(digest).rstrip(b'=').decode('ascii')}"

    def check(self, path: str, token: str | None, now: float) -> LinkCheck:
        """The signature in constant time, as the hmac docs advise for an externally supplied digest
        (https://docs.python.org/3.12/library/hmac.html, compare_digest); the expiry only once it is the key's."""
        expires, underscore, _ = (token or "").partition("_")
        if not underscore or not expires.isascii() or not expires.isdigit() or len(expires) > _MOST_DIGITS:
            return "refused"
        if not hmac.compare_digest(self.token(path, int(expires)).encode("ascii"), (token or "").encode("utf-8")):
            return "refused"
        return "open" if now < int(expires) else "expired"


class RunbookPages(Protocol):
    def url(self, runbook: str) -> str:
        """The page's URL without a fragment: the caller adds the section."""
        ...


def expiry(now: float, lifetime: timedelta = LINK_LIFETIME) -> int:
    """The end of the UTC day `lifetime` from `now`: a link opens for at least `lifetime`, at most a day more."""
    return (int(now) // _DAY_S + 1) * _DAY_S + int(lifetime.total_seconds())


class SignedPages:
    """The bot's own pages, each URL carrying the token of its path until its expiry."""

    def __init__(self, base_url: str, key: LinkKey, clock: Callable[[], float] = time.time) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.clock = clock

    def url(self, runbook: str) -> str:
        path = page_path(runbook)
        return f"{self.base_url}{quote(path)}?{TOKEN}={self.key.token(path, expiry(self.clock()))}"


class ExternalPages:
    """A web view of the runbooks directory, e.g. https://github.com/OWNER/REPO/blob/main/runbooks: GitHub
    serves a file at .../blob/BRANCH/PATH (https://docs.github.com/en/repositories/working-with-files/using-files/
    getting-permanent-links-to-files) and gives each heading the anchor `slugify` computes."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def url(self, runbook: str) -> str:
        return f"{self.base_url}/{quote(runbook)}.md"
