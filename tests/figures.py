"""Figures the test command prints at its end: faults survived, requests refused, inputs tried.

A test counts what it proved as it goes; the counts travel with its report (on pytest-xdist too, from each
worker to the controller) and are summed once the run is over. A test that fails still counts what it got
through, so the figures say what was exercised, and the pass/fail line says whether it held.
"""

from __future__ import annotations

from collections import Counter

PREFIX = "figure: "

counted: Counter[str] = Counter()


def count(what: str, n: int = 1) -> None:
    counted[what] += n


def take() -> list[tuple[str, int]]:
    """The counts since the last take, as a report's user properties."""
    taken = [(PREFIX + what, n) for what, n in counted.items()]
    counted.clear()
    return taken
