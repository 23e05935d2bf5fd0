"""Slack's published limits, as the `slack` limit group, and the meters that enforce its rate limits.

Rate limits are "applied on a 'per API method per workspace/team per app' basis" and "rate limit windows are
per minute" (https://docs.slack.dev/apis/web-api/rate-limits); the sandbox has one workspace and one app, so
a meter per method is per method per workspace per app. A refused call is answered "HTTP 429 Too Many
Requests" with "a Retry-After HTTP header containing the number of seconds until you can retry" (same page).

Each tier is read as exactly its lower bound, over a sliding window ("Tier 2: 20+ per minute" allows 20 calls
in any 60 s, never 40 across the turn of a minute): the "+" and the bursts the page mentions are quantified
nowhere, so the sandbox grants neither (assumption: the stricter reading).
"""

from __future__ import annotations

import math
import time
from collections import deque
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
    "usergroups.users.list": "tier2",
    "reactions.add": "tier3",
}
"""Each method's tier, from the "Rate limits" fact of its page at https://docs.slack.dev/reference/methods/<name>,
as slackapi's Java SDK also lists them (slack-api-client/src/main/java/com/slack/api/methods/
MethodsRateLimits.java). conversations.history and .replies keep Tier 3: the 2025 limits for commercially
distributed non-Marketplace apps spare "internal customer-built applications" such as chatops."""


class MethodMeter:
    """Calls per method within the last `window_s`, refused past the method's tier."""

    def __init__(self, limits: SlackLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._windows: dict[str, deque[float]] = {}

    def admit(self, method: str) -> None:
        """Count a call, or raise RateLimited with the seconds until the oldest counted call leaves the window."""
        allowed = TIERS[METHOD_TIERS[method]](self._limits)
        now, span = self._clock(), self._limits.window_s
        calls = self._windows.setdefault(method, deque())
        while calls and calls[0] <= now - span:
            calls.popleft()
        if len(calls) >= allowed:
            wait = calls[0] + span - now if calls else span
            raise RateLimited(max(1, math.ceil(wait)))
        calls.append(now)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class ChannelMeter:
    """chat.postMessage's per-channel limit: a token bucket of `post_burst` refilled at `post_per_channel_per_s`."""

    def __init__(self, limits: SlackLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, channel_id: str) -> None:
        now, rate = self._clock(), self._limits.post_per_channel_per_s
        burst = float(self._limits.post_burst)
        bucket = self._buckets.setdefault(channel_id, _Bucket(burst, now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / rate if rate > 0 else self._limits.window_s
            raise RateLimited(max(1, math.ceil(wait)))
        bucket.tokens -= 1
