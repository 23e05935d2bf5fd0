"""Slack's rate limits as the sandbox meters them, on a clock the test moves: per method within a one-minute
window at the method's tier (https://docs.slack.dev/apis/web-api/rate-limits), and chat.postMessage's own
per-channel rate (https://docs.slack.dev/reference/methods/chat.postMessage#rate-limiting)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from sandbox.slack_errors import RateLimited
from sandbox.slack_limits import ChannelMeter, MethodMeter, SlackLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused(admit: Callable[[str], None], key: str) -> int:
    with pytest.raises(RateLimited) as limited:
        admit(key)
    assert limited.value.error == "ratelimited"
    return limited.value.retry_after


def test_the_published_figures_are_the_defaults() -> None:
    assert dataclasses.asdict(SlackLimits()) == {
        "tier1_per_min": 1, "tier2_per_min": 20, "tier3_per_min": 50, "tier4_per_min": 100, "window_s": 60.0,
        "tier_burst_fraction": 0.5, "auth_test_per_min": 200, "post_per_channel_per_s": 1.0, "post_burst": 5,
        "post_per_workspace_per_min": 300, "response_url_uses": 5, "response_url_lifetime_s": 1800.0,
        "token_in_query_refused": True, "event_ack_s": 3.0, "event_retry_1_s": 0.0, "event_retry_2_s": 60.0,
        "event_retry_3_s": 300.0}


def test_a_tier_3_method_takes_a_burst_then_50_calls_a_minute_and_says_when_the_next_one_fits() -> None:
    """"Tier 3: 50+ per minute ... Sporadic bursts are welcome"; 429 with "a Retry-After HTTP header containing
    the number of seconds until you can retry" (https://docs.slack.dev/apis/web-api/rate-limits). The burst is
    the sandbox's assumption, half the figure."""
    clock = Clock()
    meter = MethodMeter(SlackLimits(), clock)
    for _ in range(75):
        meter.admit("chat.update")
    assert refused(meter.admit, "chat.update") == 2, "one call every 1.2 s refills the bucket"
    clock.now += 1.2
    meter.admit("chat.update")
    refused(meter.admit, "chat.update")


def test_a_client_that_keeps_to_the_figure_is_never_refused() -> None:
    """The figure is a floor ("50+"): 50 calls in every minute, however bunched within it, always pass."""
    clock = Clock()
    meter = MethodMeter(SlackLimits(), clock)
    for _ in range(10):
        for _ in range(50):
            meter.admit("conversations.history")
        clock.now += 60
    for _ in range(50):
        meter.admit("conversations.history")
        clock.now += 1.2
    meter.admit("conversations.history")


def test_a_client_that_keeps_exceeding_the_figure_is_refused_once_its_burst_is_spent() -> None:
    clock = Clock()
    meter = MethodMeter(SlackLimits(), clock)
    admitted = 0
    for _ in range(600):  # ten a second for a minute
        try:
            meter.admit("conversations.list")
            admitted += 1
        except RateLimited:
            pass
        clock.now += 0.1
    assert admitted == 20 + 10 + 19, "the figure, the burst of half of it, and the minute's refill"


def test_each_method_has_its_own_bucket_at_its_own_tier() -> None:
    """"Calls to other methods on behalf of this workspace are not restricted"
    (https://docs.slack.dev/apis/web-api/rate-limits)"""
    meter = MethodMeter(SlackLimits(), Clock())
    for _ in range(30):
        meter.admit("conversations.list")
    refused(meter.admit, "conversations.list")
    for _ in range(150):
        meter.admit("chat.postEphemeral")
    refused(meter.admit, "chat.postEphemeral")
    meter.admit("users.info")


def test_a_changed_figure_applies_to_the_next_call() -> None:
    limits = SlackLimits(tier_burst_fraction=0.0)
    meter = MethodMeter(limits, Clock())
    meter.admit("reactions.add")
    limits.tier3_per_min = 1
    meter.admit("reactions.add")  # what the bucket held is clamped to the new figure: one call
    assert refused(meter.admit, "reactions.add") == 60


def test_a_channel_takes_a_burst_then_one_message_a_second() -> None:
    """"1 message per second to a specific channel" with burst behaviour
    (https://docs.slack.dev/reference/methods/chat.postMessage#rate-limiting)"""
    clock = Clock()
    meter = ChannelMeter(SlackLimits(post_burst=2), clock)
    meter.admit("C1")
    meter.admit("C1")
    assert refused(meter.admit, "C1") == 1
    meter.admit("C2")
    clock.now += 1
    meter.admit("C1")
    refused(meter.admit, "C1")
