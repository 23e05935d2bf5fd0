"""`/deploy`'s arguments: which images a service may be deployed from, said before anything changes."""

from __future__ import annotations

import pytest

from bot.config import Config, ConfigError, parse_config
from bot.domain.policy import repository_allowed
from commands.deploy import Deploy, DeployRequest
from commands.grammar import UserError, tokenize
from tests.conftest import EXAMPLE_CONFIG

REPO = "us-west2-docker.pkg.dev/nba-props-platform/cloud-run"


def parse(config: Config, text: str) -> DeployRequest | UserError:
    args = tokenize(text, Deploy.usage)
    assert not isinstance(args, UserError)
    return Deploy().parse(args, config)


def test_an_image_from_the_services_own_repository_is_accepted(example_config: Config) -> None:
    request = parse(example_config, f"prediction-worker image={REPO}/prediction-worker@sha256:{'a' * 64}")
    assert isinstance(request, DeployRequest) and request.image.endswith("a" * 64)


@pytest.mark.parametrize("image", [
    "docker.io/attacker/prediction-worker:v3",
    f"{REPO}/nba-grading-service:v3",
    f"{REPO}/prediction-worker/nested:v3",
])
def test_an_image_from_elsewhere_is_refused_naming_the_allowed_repositories(example_config: Config,
                                                                           image: str) -> None:
    refused = parse(example_config, f"prediction-worker image={image}")
    assert isinstance(refused, UserError)
    assert f"prediction-worker deploys only from `{REPO}/prediction-worker`" in refused.problem
    assert "tag=v3" in refused.instead


def test_a_pattern_in_the_config_widens_what_a_service_may_deploy() -> None:
    text = EXAMPLE_CONFIG.read_text().replace(
        "    image: us-west2-docker.pkg.dev/nba-props-platform/cloud-run/prediction-worker\n",
        "    image: us-west2-docker.pkg.dev/nba-props-platform/cloud-run/prediction-worker\n"
        "    repositories: [us-west2-docker.pkg.dev/nba-props-platform/cloud-run/*, "
        "us-docker.pkg.dev/nba-props-platform/hotfix-*/prediction-worker]\n")
    config = parse_config(text)
    assert isinstance(parse(config, f"prediction-worker image={REPO}/prediction-worker-gpu:v3"), DeployRequest)
    assert isinstance(parse(config, "prediction-worker image=us-docker.pkg.dev/nba-props-platform/"
                                    "hotfix-2026-11/prediction-worker:v3"), DeployRequest)
    refused = parse(config, "prediction-worker image=us-docker.pkg.dev/nba-props-platform/other/prediction-worker:v3")
    assert isinstance(refused, UserError) and "`us-docker.pkg.dev/nba-props-platform/hotfix-*/prediction-worker`" \
        in refused.problem


@pytest.mark.parametrize("pattern, problem", [
    (f"{REPO}/*:latest", "has no tag or digest"),
    ("*/prediction-worker", "is not a repository pattern"),
    ("Docker.io/Library/python", "is not a repository pattern"),
])
def test_check_config_refuses_a_bad_repository_pattern(pattern: str, problem: str) -> None:
    text = EXAMPLE_CONFIG.read_text().replace(
        "    image: us-west2-docker.pkg.dev/nba-props-platform/cloud-run/mlb-prediction-worker\n",
        "    image: us-west2-docker.pkg.dev/nba-props-platform/cloud-run/mlb-prediction-worker\n"
        f"    repositories: ['{pattern}']\n")
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    (found,) = raised.value.problems
    assert found.path == "services.mlb-prediction-worker.repositories" and problem in found.message


def test_a_star_stays_within_one_path_segment() -> None:
    assert repository_allowed("r.dev/p/team-a", ["r.dev/p/team-*"])
    assert not repository_allowed("r.dev/p/team-a/x", ["r.dev/p/team-*"])
    assert not repository_allowed("r.dev/p/teamXa", ["r.dev/p/team.a"]), "a dot is a dot, not any character"
