"""Three instances of the bot on one PostgreSQL, Slack answering 429 (with Retry-After, as
https://docs.slack.dev/apis/web-api/rate-limits says) to half of all posts and redraws and losing the answer to two
posts, then one in twenty, after they landed, while incidents open and resolve and rollouts run
(tests/scenario/outbox_storm.py).
Once the outbox has drained, every message the outbox was asked for is in Slack exactly once, counted by the row id
each post carries, and every thread's first message shows what was last drawn for it. bench/outbox_429.py runs the
same storm for ten minutes."""

from __future__ import annotations

from pathlib import Path

from tests import figures
from tests.scenario.outbox_storm import storm


async def test_three_instances_through_half_of_all_posts_answered_429_post_each_message_once(
        tmp_path: Path) -> None:
    counted = await storm(tmp_path, duration_s=10.0, instances=3, limited=0.5, lost=0.05, lost_first=2,
                          drain_timeout_s=60.0)
    assert counted.rollouts >= 2 and counted.incidents_flapped >= 1 and counted.expected >= 15, counted
    assert counted.rate_limited >= 10 and counted.answers_lost >= 2, f"the faults struck: {counted}"
    assert counted.unsent == 0, f"every row sent: {counted}"
    assert counted.lost == 0 and counted.duplicates == 0, f"no message lost, none twice: {counted}"
    assert counted.posted == counted.expected and counted.stale == 0, counted
    figures.count("outbox messages posted once each by 3 instances through Slack 429s", counted.posted)
    figures.count("Slack 429s (fault) waited out by 3 instances' outboxes", counted.rate_limited)
    figures.count("outbox posts that landed with their answer lost, not posted twice", counted.answers_lost)
    figures.count("outbox messages posted twice by 3 instances through Slack 429s", counted.duplicates)
