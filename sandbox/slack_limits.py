"""Slack's published limits, as the `slack` limit group, and the meters that enforce its rate limits.

Rate limits are "applied on a 'per API method per workspace/team per app' basis" and "rate limit windows are
per minute" (https://docs.slack.dev/apis/web-api/rate-limits); the sandbox has one workspace and one app, so
a meter per method is per method per workspace per app. A refused call is answered "HTTP 429 Too Many
Requests" with "a Retry-After HTTP header containing the number of seconds until you can retry" (same page).

Each tier is its figure as a sustained rate with room for a burst: the page says "Tier 3: 50+ per minute ...
Sporadic bursts are welcome", "Tier 2: 20+ ... allowing for occasional bursts of more requests", "Tier 4 ...
generous burst behavior", "Tier 1 ... A small amount of burst behavior is tolerated", and never quantifies the
"+" or the bursts. Chosen: a token bucket per method that holds the minute's figure plus a burst of
`tier_burst_fraction` of it (rounded up, so Tier 1 has one) and refills at the figure per minute. A client that
keeps to the figure is never refused, one that bursts after a quiet spell gets up to 1.5x the figure at once,
and one that keeps exceeding it is refused as soon as the burst is spent, with Retry-After the seconds until
the bucket holds a call again. Half is an assumption: enough that a bot which briefly exceeds the figure is not
taught that Slack refuses the first call past it, small enough that a bot relying on more is refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.slack_errors import RateLimited


@dataclass
class SlackLimits:
    """The `slack` limit group. Sources:
    https://docs.slack.dev/apis/web-api/rate-limits (tiers, windows, posting messages),
    https://docs.slack.dev/reference/methods/chat.postMessage#rate-limiting (its special tier),
    https://api.slack.com/interactivity/handling#message_responses (response_url),
    https://api.slack.com/changelog/2020-11-no-more-tokens-in-querystrings-for-newly-created-apps (tokens)."""

    tier1_per_min: int = 1
    """"Web API Tier 1: 1+ per minute"."""
    tier2_per_min: int = 20
    """"Web API Tier 2: 20+ per minute"."""
    tier3_per_min: int = 50
    """"Web API Tier 3: 50+ per minute"."""
    tier4_per_min: int = 100
    """"Web API Tier 4: 100+ per minute"."""
    window_s: float = 60.0
    """"Rate limit windows are per minute"."""
    tier_burst_fraction: float = 0.5
    """The burst a tier allows above its figure, as a fraction of it ("Sporadic bursts are welcome", never
    quantified); assumption: half, at least one call."""
    auth_test_per_min: int = 200
    """auth.test's special tier "allows hundreds of requests per minute"; assumption: the fewest that is
    hundreds, 200."""
    post_per_channel_per_s: float = 1.0
    """chat.postMessage "will generally allow an app to post 1 message per second to a specific channel"."""
    post_burst: int = 5
    """"Generous burst behavior is also granted", never quantified ("Slack does not share precise burst limits
    externally"); assumption: 5 messages at once per channel."""
    post_per_workspace_per_min: int = 300
    """"limiting posting to several hundred messages per minute" across the workspace; assumption: 300."""
    response_url_uses: int = 5
    """"you can use a response_url up to five times within 30 minutes"."""
    response_url_lifetime_s: float = 30 * 60.0
    """The 30 minutes of the same sentence."""
    token_in_query_refused: bool = True
    """"Apps created after February 24, 2021 may no longer send tokens as query parameters"; chatops is one."""
    event_ack_s: float = 3.0
    """Events API: "Your app should respond to the event request with an HTTP 2xx within three seconds"
    (https://docs.slack.dev/apis/events-api/#retries); past it the delivery failed (`http_timeout`)."""
    event_retry_1_s: float = 0.0
    """A failed delivery is retried "nearly immediately" (assumption: at once),"""
    event_retry_2_s: float = 60.0
    """"in 1 minute","""
    event_retry_3_s: float = 300.0
    """"in 5 minutes", and not again: "up to 3 times" (same page)."""


TIERS: dict[str, Callable[[SlackLimits], int]] = {
    "tier1": lambda limits: limits.tier1_per_min,
    "tier2": lambda limits: limits.tier2_per_min,
    "tier3": lambda limits: limits.tier3_per_min,
    "tier4": lambda limits: limits.tier4_per_min,
    "auth.test": lambda limits: limits.auth_test_per_min,
    "chat.postMessage": lambda limits: limits.post_per_workspace_per_min,
}
"""Per-minute figures by tier; the special tiers are named after their method."""

METHOD_TIERS: dict[str, str] = {
    "auth.test": "auth.test",
    "chat.postMessage": "chat.postMessage",
    "chat.update": "tier3",
    "chat.postEphemeral": "tier4",
    "chat.delete": "tier3",
    "conversations.history": "tier3",
    "conversations.replies": "tier3",
    "conversations.info": "tier3",
    "conversations.list": "tier2",
    "users.info": "tier4",
    "usergroups.list": "tier2",
    "usergroups.users.list": "tier2",
    "reactions.add": "tier3",
    "views.publish": "tier4",
    "chat.getPermalink": "tier4",
    "files.getUploadURLExternal": "tier4",
    "files.completeUploadExternal": "tier4",
    "files.info": "tier4",
    "views.open": "tier4",
    "views.update": "tier4",
    "views.push": "tier4",
    "apps.connections.open": "tier1",
}
"""Each method's tier, from the "Rate limits" fact of its page at https://docs.slack.dev/reference/methods/<name>,
(chat.getPermalink's is "Special", never quantified; assumption: Tier 4's figure), as slackapi's Java SDK also
lists them (slack-api-client/src/main/java/com/slack/api/methods/
MethodsRateLimits.java). conversations.history and .replies keep Tier 3: the 2025 limits for commercially
distributed non-Marketplace apps spare "internal customer-built applications" such as chatops."""


@dataclass
class _Bucket:
    tokens: float
    stamp: float

    def take(self, now: float, capacity: float, per_s: float, window_s: float) -> None:
        """Refill for the time passed, then spend one call or raise RateLimited with the seconds until one fits."""
        self.tokens = min(capacity, self.tokens + (now - self.stamp) * per_s)
        self.stamp = now
        if self.tokens < 1:
            wait = (1 - self.tokens) / per_s if per_s > 0 else window_s
            raise RateLimited(max(1, math.ceil(wait)))
        self.tokens -= 1


class MethodMeter:
    """Each method's tier: its figure per window, sustained, plus a burst (module docstring)."""

    def __init__(self, limits: SlackLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, method: str) -> None:
        """Count a call, or raise RateLimited with the seconds until the method's bucket holds one again."""
        figure = TIERS[METHOD_TIERS[method]](self._limits)
        capacity = figure + math.ceil(figure * self._limits.tier_burst_fraction)
        now = self._clock()
        bucket = self._buckets.setdefault(method, _Bucket(capacity, now))
        bucket.take(now, capacity, figure / self._limits.window_s, self._limits.window_s)


class ChannelMeter:
    """chat.postMessage's per-channel limit: a token bucket of `post_burst` refilled at `post_per_channel_per_s`."""

    def __init__(self, limits: SlackLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, channel_id: str) -> None:
        now, burst = self._clock(), float(self._limits.post_burst)
        bucket = self._buckets.setdefault(channel_id, _Bucket(burst, now))
        bucket.take(now, burst, self._limits.post_per_channel_per_s, self._limits.window_s)
