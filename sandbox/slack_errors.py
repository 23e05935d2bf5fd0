"""Slack's error codes as exceptions, raised by the workspace's rules and answered by the Web API."""

from __future__ import annotations

from collections.abc import Sequence


class SlackError(Exception):
    """A Slack error code; `details` are the json-pointer messages Slack adds to `invalid_blocks`."""

    def __init__(self, error: str, details: Sequence[str] = ()) -> None:
        super().__init__(error)
        self.error = error
        self.details = list(details)


class RateLimited(SlackError):
    """`ratelimited`, answered with HTTP 429 and `Retry-After: <retry_after>`."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("ratelimited")
        self.retry_after = retry_after


class MissingScope(SlackError):
    """`missing_scope`, with the scope the method needs and the ones the token has."""

    def __init__(self, needed: str, provided: Sequence[str]) -> None:
        super().__init__("missing_scope")
        self.needed = needed
        self.provided = tuple(provided)
