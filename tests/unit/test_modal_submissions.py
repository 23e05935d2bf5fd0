"""A modal's Submit read as the command it stands for: the words it would have been typed with, and each problem
put on the field that caused it, found by the command's own parser."""

from __future__ import annotations

import pytest

from bot.config import Config
from bot.render.modals import (
    DURATION_BLOCK,
    IMAGE_BLOCK,
    OVERRIDE_BLOCK,
    REASON_BLOCK,
    REVISION_BLOCK,
    SERVICE_BLOCK,
    STRATEGY_BLOCK,
)
from commands.deploy import Deploy
from commands.grammar import UserError, tokenize
from commands.incidents import SilenceCommand
from commands.modals import deploy_fields, field_errors, rollback_fields, silence_fields, typed, values_of
from commands.rollback import Rollback

REGISTRY = "us-west2-docker.pkg.dev/nba-props-platform/cloud-run"


def deploy(service: str = "prediction-worker", strategy: str = "canary", image: str = "v3") -> dict[str, str]:
    return {SERVICE_BLOCK: service, STRATEGY_BLOCK: strategy, IMAGE_BLOCK: image}


def test_a_submission_reads_as_the_typed_command() -> None:
    assert typed(deploy_fields(deploy())) == "prediction-worker canary tag=v3"
    assert typed(deploy_fields(deploy(image=f"{REGISTRY}/prediction-worker:v3"))) == (
        f"prediction-worker canary image={REGISTRY}/prediction-worker:v3")
    assert typed(silence_fields({SERVICE_BLOCK: "svc", DURATION_BLOCK: "2h", REASON_BLOCK: "db work"})) == (
        "svc 2h 'db work'")
    assert typed(rollback_fields({SERVICE_BLOCK: "svc"})) == "svc"
    assert typed(rollback_fields({SERVICE_BLOCK: "svc", REVISION_BLOCK: "svc-00041-xyz"})) == "svc to=svc-00041-xyz"


def test_the_state_of_a_view_gives_each_fields_value() -> None:
    view = {"state": {"values": {
        SERVICE_BLOCK: {"a": {"type": "external_select", "selected_option": {"value": "svc"}}},
        IMAGE_BLOCK: {"b": {"type": "plain_text_input", "value": "  v3 "}},
        REASON_BLOCK: {"c": {"type": "plain_text_input", "value": None}}}}}
    assert values_of(view) == {SERVICE_BLOCK: "svc", IMAGE_BLOCK: "v3"}
    assert values_of({"state": "nonsense"}) == {}


@pytest.mark.parametrize(("values", "field", "says"), [
    (deploy(image="docker.io/evil/worker:v3"), IMAGE_BLOCK, "docker.io/evil/worker is not one of them"),
    (deploy(image="v3!"), IMAGE_BLOCK, "is not a valid image tag"),
    (deploy(image="v3 dry-run"), IMAGE_BLOCK, "One word"),
    (deploy(image='v3"'), IMAGE_BLOCK, "One word"),
    (deploy(service="no-such-service"), SERVICE_BLOCK, "no-such-service"),
    (deploy(strategy="canary direct"), STRATEGY_BLOCK, "One word"),
])
def test_a_deploy_problem_is_put_on_its_field(example_config: Config, values: dict[str, str], field: str,
                                              says: str) -> None:
    errors = field_errors(Deploy(), deploy_fields(values), example_config)
    assert list(errors) == [field] and says in errors[field]
    assert "`" not in errors[field], "a field's error is plain text"


def test_a_valid_deploy_and_silence_have_no_errors(example_config: Config) -> None:
    assert field_errors(Deploy(), deploy_fields(deploy()), example_config) == {}
    silence = {SERVICE_BLOCK: "prediction-worker", DURATION_BLOCK: "2h", REASON_BLOCK: "BigQuery maintenance"}
    assert field_errors(SilenceCommand(), silence_fields(silence), example_config) == {}


def test_a_silence_reason_that_reads_as_an_option_is_refused_on_the_reason(example_config: Config) -> None:
    silence = {SERVICE_BLOCK: "prediction-worker", DURATION_BLOCK: "2h", REASON_BLOCK: "because to=elsewhere"}
    assert list(field_errors(SilenceCommand(), silence_fields(silence), example_config)) == [REASON_BLOCK]


def test_free_text_is_typed_as_one_quoted_word_whatever_quotes_it_holds(example_config: Config) -> None:
    """An override's reason and a silence's reason hold blanks and quotes (straight or curly, an apostrophe alone):
    the form types them as one word, so the command reads exactly what was written, never an unclosed quote."""
    overridden = deploy_fields({**deploy(), OVERRIDE_BLOCK: "odds feed \u201cfix\u201d before tip-off, it's urgent"})
    assert field_errors(Deploy(), overridden, example_config) == {}
    args = tokenize(typed(overridden), Deploy.usage)
    assert not isinstance(args, UserError)
    assert args.options == {"tag": "v3", "override": "odds feed \"fix\" before tip-off, it's urgent"}
    assert typed(deploy_fields(deploy())) == "prediction-worker canary tag=v3", "no override: none typed"
    silence = {SERVICE_BLOCK: "prediction-worker", DURATION_BLOCK: "2h", REASON_BLOCK: "BigQuery\u2019s maintenance"}
    assert field_errors(SilenceCommand(), silence_fields(silence), example_config) == {}
    parsed = tokenize(typed(silence_fields(silence)), SilenceCommand.usage)
    assert not isinstance(parsed, UserError) and parsed.words == ("2h", "BigQuery's maintenance")


def test_a_rollback_revision_must_be_one_word(example_config: Config) -> None:
    picked = {SERVICE_BLOCK: "prediction-worker", REVISION_BLOCK: "a b"}
    assert list(field_errors(Rollback(), rollback_fields(picked), example_config)) == [REVISION_BLOCK]
