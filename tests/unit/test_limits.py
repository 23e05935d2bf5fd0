"""The control API's figures: a change is all or nothing, and only to figures that exist."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sandbox.limits import LimitError, Limits


@dataclass
class _Quota:
    reads_per_minute: int = 60
    delay_s: float = 2.0
    enforced: bool = True


def test_a_patch_changes_only_the_named_figures() -> None:
    limits = Limits()
    quota = _Quota()
    limits.register("logging", quota)
    assert limits.patch("logging", {"reads_per_minute": 5}) == {"reads_per_minute": 5, "delay_s": 2.0,
                                                                "enforced": True}
    assert quota.reads_per_minute == 5 and limits.to_json() == {"logging": {"reads_per_minute": 5, "delay_s": 2.0,
                                                                            "enforced": True}}


@pytest.mark.parametrize("change, message", [
    ({"reads_per_minit": 5}, "no figure 'reads_per_minit'"),
    ({"delay_s": -1}, "a number >= 0"),
    ({"delay_s": "1s"}, "a number >= 0"),
    ({"enforced": 1}, "true or false"),
])
def test_a_bad_patch_changes_nothing(change: dict[str, object], message: str) -> None:
    limits = Limits()
    quota = _Quota()
    limits.register("logging", quota)
    with pytest.raises(LimitError, match=message):
        limits.patch("logging", {"reads_per_minute": 7, **change})
    assert quota == _Quota()


def test_an_unknown_group_is_named() -> None:
    with pytest.raises(LimitError, match="no limit group 'loging'"):
        Limits().patch("loging", {})
