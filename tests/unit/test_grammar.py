"""The shared command grammar: what people type, and the answers their mistakes get."""

from __future__ import annotations

from commands.grammar import Args, UserError, check_options, check_words, resolve_service, tokenize

SERVICES = ["prediction-coordinator", "prediction-worker", "mlb-prediction-worker", "nba-grading-service"]


def test_words_and_options_are_separated() -> None:
    args = tokenize('prediction-worker canary image=us-docker.pkg.dev/p/r/w:v3 "dry-run"', "/deploy")
    assert args == Args(("prediction-worker", "canary", "dry-run"), {"image": "us-docker.pkg.dev/p/r/w:v3"})
    assert isinstance(args, Args) and args.target == "prediction-worker" and args.words == ("canary", "dry-run")


def test_typographic_quotes_from_slack_clients_work() -> None:
    assert tokenize("svc “two words”", "/x") == Args(("svc", "two words"), {})


def test_malformed_input_is_explained() -> None:
    assert isinstance(tokenize('svc "open', "/x"), UserError)
    broken = tokenize("svc image=", "/deploy <service>")
    assert isinstance(broken, UserError) and "needs a key and a value" in broken.problem
    twice = tokenize("svc tag=a TAG=b", "/deploy")
    assert isinstance(twice, UserError) and "given twice" in twice.problem


def test_services_match_exactly_by_unique_prefix_or_not_at_all() -> None:
    assert resolve_service("prediction-worker", SERVICES, command="/health") == "prediction-worker"
    assert resolve_service("PREDICTION-W", SERVICES, command="/health") == "prediction-worker"
    assert resolve_service("mlb", SERVICES, command="/health") == "mlb-prediction-worker"
    assert resolve_service("all", SERVICES, command="/health", allow_all=True) == "all"
    ambiguous = resolve_service("prediction", SERVICES, command="/health")
    assert isinstance(ambiguous, UserError) and "`prediction-coordinator`, `prediction-worker`" in ambiguous.problem


def test_near_misses_get_a_did_you_mean_and_the_fix() -> None:
    miss = resolve_service("prediction-wrker", SERVICES, command="/deploy")
    assert isinstance(miss, UserError)
    assert miss.text() == (":warning: there is no service `prediction-wrker`. Did you mean `prediction-worker`?\n"
                           "Try `/deploy prediction-worker`")


def test_no_service_at_all_lists_the_choices() -> None:
    missing = resolve_service(None, SERVICES, command="/health", allow_all=True)
    assert isinstance(missing, UserError) and missing.instead == "`/health all` or `/health prediction-coordinator`"
    unknown = resolve_service("zzz", SERVICES, command="/health")
    assert isinstance(unknown, UserError) and "nba-grading-service" in unknown.problem


def test_unknown_words_and_options_are_refused_with_suggestions() -> None:
    args = Args(("svc", "canery"), {"imge": "x"})
    word = check_words(args, ("canary", "direct"), "/deploy")
    assert word is not None and "did you mean `canary`" in word.problem
    option = check_options(args, ("image", "tag"), "/deploy")
    assert option is not None and "did you mean `image`" in option.problem
