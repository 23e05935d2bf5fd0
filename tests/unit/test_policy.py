"""Who may do what: decided from the config's roles and teams; a refusal names the role needed and the teams that
hold it for the service."""

from __future__ import annotations

from bot.domain.policy import Allowed, Grant, Refused, TeamHolds, decide

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


GRADING, MODELS = "S07GRADING1", "S07MODELS01"
TEAMS = (
    Grant("deployer", frozenset({"S07SRE"}), frozenset({"deploy", "rollback", "health"}), frozenset({"*"})),
    Grant("everyone", frozenset({"*"}), frozenset({"health", "status"}), frozenset({"*"})),
    Grant("deployer", frozenset({GRADING}), frozenset({"deploy", "rollback", "health"}),
          frozenset({"nba-grading-service", "nba-phase*"}), team="grading"),
    Grant("deployer", frozenset({MODELS}), frozenset({"deploy", "rollback", "health"}),
          frozenset({"prediction-*"}), team="predictions"),
)


def test_a_team_member_may_act_on_the_teams_services_by_name_and_by_glob() -> None:
    for service in ("nba-grading-service", "nba-phase3-analytics-processors", "nba-phase4-precompute-processors"):
        assert decide(TEAMS, "U07GRADER", frozenset({GRADING}), "deploy", service) == Allowed("deployer", "grading")


def test_a_team_member_is_refused_on_another_teams_service_naming_the_team_and_role() -> None:
    refused = decide(TEAMS, "U07GRADER", frozenset({GRADING}), "deploy", "prediction-worker")
    assert refused == Refused("deploy", "prediction-worker", ("deployer",),
                              (TeamHolds("deployer", "predictions", MODELS),))
    assert refused.message() == ("You can't deploy prediction-worker: that needs the *deployer* role, which team "
                                 "*predictions* (<!subteam^S07MODELS01>) has for it.")


def test_a_glob_matches_whole_names_only() -> None:
    """`nba-phase*` is not `*nba-phase*`, and `prediction-*` does not reach mlb-prediction-worker."""
    for service in ("mlb-prediction-worker", "old-nba-phase3"):
        refused = decide(TEAMS, "U07ML", frozenset({GRADING, MODELS}), "deploy", service)
        assert isinstance(refused, Refused) and refused.teams == ()
        assert refused.message() == f"You can't deploy {service}: that needs the *deployer* role."


def test_every_team_that_holds_the_role_is_named() -> None:
    nights = Grant("deployer", frozenset({"S07NIGHTS1"}), frozenset({"deploy"}), frozenset({"prediction-worker"}),
                   team="nights")
    both = (*TEAMS, nights)
    refused = decide(both, "U07VIEWER", frozenset(), "deploy", "prediction-worker")
    assert isinstance(refused, Refused)
    assert refused.message() == ("You can't deploy prediction-worker: that needs the *deployer* role, which teams "
                                 "*predictions* (<!subteam^S07MODELS01>) and *nights* (<!subteam^S07NIGHTS1>) have "
                                 "for it.")


def test_a_teams_role_never_covers_a_fleet_wide_request() -> None:
    """A team's grant is for its services: `/health all` (no service) needs a global role."""
    only_teams = TEAMS[2:]
    refused = decide(only_teams, "U07GRADER", frozenset({GRADING}), "health", None)
    assert isinstance(refused, Refused)
    assert refused.message() == "Nobody may check health: no role in the config allows it."
    assert decide(TEAMS, "U07GRADER", frozenset({GRADING}), "health", None) == Allowed("everyone")


def test_global_roles_still_come_first_and_work_as_before() -> None:
    assert decide(TEAMS, "U07ONCALL", frozenset({"S07SRE", GRADING}), "deploy", "nba-grading-service") == \
        Allowed("deployer")


def test_an_unread_group_that_could_allow_it_fails_closed_and_says_why() -> None:
    refused = decide(TEAMS, "U07GRADER", frozenset(), "deploy", "nba-grading-service", unread=frozenset({GRADING}))
    assert isinstance(refused, Refused) and refused.unread == (GRADING,)
    assert refused.message() == ("I couldn't read the members of <!subteam^S07GRADING1> from Slack, so I can't tell "
                                 "whether you may deploy nba-grading-service; try again in a minute.")


def test_an_unread_group_that_could_not_allow_it_changes_nothing() -> None:
    """Someone allowed by name or by a group that was read is never held up by another group's outage."""
    assert decide(TEAMS, "U07GRADER", frozenset({GRADING}), "rollback", "nba-grading-service",
                  unread=frozenset({"S07SRE", MODELS})) == Allowed("deployer", "grading")
    refused = decide(TEAMS, "U07GRADER", frozenset({GRADING}), "deploy", "mlb-prediction-worker",
                     unread=frozenset({MODELS}))
    assert isinstance(refused, Refused) and refused.unread == ()
