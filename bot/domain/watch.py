"""After a promotion: has the service got worse than it was before the deploy?

The promoted revision's error lines per minute are held against the stable revision's in the hour before the
deploy; a rate well above it (twice the baseline, and at least one more line a minute, so a quiet service is
not flagged for one line), or a health check failing, is a degradation worth telling the deployer about. The bot
only says so, with a Roll back button: after promotion a person decides. The button is about the revision it
warned of: once that revision no longer serves (someone rolled back or deployed since), it does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class WatchReading:
    baseline_per_min: float  # the stable revision's error lines a minute, before the deploy
    errors: int  # the promoted revision's error lines since its promotion
    minutes: float
    failing_checks: tuple[str, ...] = ()

    @property
    def per_min(self) -> float:
        return self.errors / self.minutes if self.minutes > 0 else 0.0


def degraded(reading: WatchReading) -> str | None:
    """Why the service looks worse than before the deploy, or None."""
    reasons = []
    if reading.minutes > 0 and reading.per_min > 2 * reading.baseline_per_min + 1:
        reasons.append(f"{reading.errors} error lines in {reading.minutes:.0f} min since promotion "
                       f"({reading.per_min:.1f} a minute, against {reading.baseline_per_min:.1f} before the deploy)")
    if reading.failing_checks:
        reasons.append("failing checks: " + ", ".join(f"`{c}`" for c in reading.failing_checks))
    return "; ".join(reasons) or None


def still_serves(warned: str, routed: Sequence[tuple[str, int]]) -> bool:
    """Whether the revision a warning was about still gets a share of what Cloud Run routes."""
    return any(revision == warned and percent > 0 for revision, percent in routed)
