"""Who may do what: decided from the config's roles; a refusal names the role needed."""

from __future__ import annotations

from bot.domain.policy import Allowed, Grant, Refused, decide, groups_of

GRANTS = (
    Grant("deployer", frozenset({"S07SRE", "U07LEAD"}), frozenset({"deploy", "rollback", "health"}), frozenset({"*"})),
    Grant("ml-owner", frozenset({"U07ML"}), frozenset({"deploy"}), frozenset({"prediction-worker"})),
    Grant("everyone", frozenset({"*"}), frozenset({"health"}), frozenset({"*"})),
)


def test_a_member_of_a_group_may_deploy() -> None:
    assert decide(GRANTS, "U07ONCALL", frozenset({"S07SRE"}), "deploy", "svc") == Allowed("deployer")


def test_a_role_can_be_limited_to_services() -> None:
    assert decide(GRANTS, "U07ML", frozenset(), "deploy", "prediction-worker") == Allowed("ml-owner")
    refused = decide(GRANTS, "U07ML", frozenset(), "deploy", "nba-grading-service")
    assert refused == Refused("deploy", "nba-grading-service", ("deployer",))
    assert refused.message() == "You can't deploy nba-grading-service: that needs the *deployer* role."


def test_everyone_may_look_but_not_touch() -> None:
    assert decide(GRANTS, "U07VIEWER", frozenset(), "health", None) == Allowed("everyone")
    refused = decide(GRANTS, "U07VIEWER", frozenset(), "rollback", "svc")
    assert isinstance(refused, Refused) and refused.roles == ("deployer",)


def test_an_action_no_role_allows_says_so() -> None:
    refused = decide(GRANTS, "U07LEAD", frozenset(), "pause", "svc")
    assert isinstance(refused, Refused)
    assert refused.message() == "Nobody may pause svc: no role in the config allows it."


def test_group_membership_comes_from_the_configured_groups() -> None:
    assert groups_of("U1", {"S1": ["U1", "U2"], "S2": ["U3"]}) == frozenset({"S1"})
