"""Whatever anyone types, clicks or writes into the config, the bot answers with a typed request or a message that
helps (UserError, Invalid, ConfigError), never an exception: properties over generated input (hypothesis)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.config import Config, ConfigError, parse_config
from bot.render.change_control import UNLOCK
from bot.slack_route import parsed
from commands.buttons import ACTIONS, LINK_BUTTONS, Click, UnlockClick, invocation_of, read_click, routable
from commands.framework import Command, Invalid, Invocation, Plan, Runtime, plan_command
from commands.grammar import MAX_TEXT, Args, UserError, tokenize
from commands.registry import all_commands
from tests import figures
from tests.conftest import EXAMPLE_CONFIG

QUICK = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])
"""Modest and repeatable, so the suite stays quick and a failure shows up on every run, not once in a while."""

CONFIG = parse_config(EXAMPLE_CONFIG.read_text())
COMMANDS = all_commands()
SERVICES = list(CONFIG.services)

# -- what people type --------------------------------------------------------------------------------------------

_WORDS = st.sampled_from([*SERVICES, "all", "canary", "direct", "dry-run", "full", "30m", "2h", "1d", "7d", "8d",
                          "0m", "99999999999999999999d", "٣h", "²m", "morning", "pregame", "deploy", "help", "/help",
                          "payload", "", " ", "\"", "'", "\u201c", "\u2019", "\\", "=", "==", "`", "<!channel>", "\x00",
                          "\ud800", "prediction", "prediction-wrker", "nba-"])
_OPTIONS = st.builds(lambda key, value: f"{key}={value}",
                     st.sampled_from(["image", "tag", "to", "TAG", "Image", "x", ""]),
                     st.one_of(st.sampled_from(["v3", "latest", "", "a" * 200, "prediction-worker-00001-abc",
                                                "us-west2-docker.pkg.dev/nba-props-platform/cloud-run/"
                                                "prediction-worker:v3", "evil.example/x:1", "x@sha256:" + "a" * 64,
                                                "\"quoted value\""]), st.text(max_size=30)))
_DURATIONS = st.from_regex(r"[0-9٣²]{1,25}[mhdMs]?", fullmatch=True)
COMMAND_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(_WORDS, _OPTIONS, st.text(max_size=20)), max_size=8).map(" ".join),
    st.builds(lambda first, rest: " ".join([first, *rest]), st.sampled_from([*SERVICES, "all", "nba", "morning"]),
              st.lists(st.one_of(_DURATIONS, _WORDS, _OPTIONS), max_size=4)),
)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
@QUICK
@given(text=COMMAND_TEXT)
@example(text="prediction-worker 99999999999999999999d")  # found by this test: timedelta overflowed in /silence
@example(text="prediction-worker 1000000000d")
def test_every_command_parses_any_text_into_a_request_or_a_helpful_message(command: Command[Any], text: str) -> None:
    figures.count("generated inputs tried (hypothesis): command text, parsed")
    args = tokenize(text, command.usage)
    request = args if isinstance(args, UserError) else command.parse(args, CONFIG)
    if isinstance(request, UserError):
        assert request.problem and request.text().startswith(":warning: ")
        return
    assert not isinstance(request, Args | Invalid), "a parser returns its own typed request"
    target = command.target(request)
    assert target is None or target in CONFIG.services, "the policy is asked about a service that exists"


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
@QUICK
@given(text=COMMAND_TEXT)
def test_the_pipeline_plans_any_text_without_raising(command: Command[Any], text: str) -> None:
    """What runs before the ack: grammar, parser, the service the policy decides about, the acknowledgement."""
    figures.count("generated inputs tried (hypothesis): command text, planned by the pipeline")
    invocation = Invocation(command.slash, text, "U07VIEWER01", "viewer", "C07DEPLOYS1", "https://hooks.slack.test/x")
    planned = plan_command(command, invocation, cast(Runtime, SimpleNamespace(config=CONFIG)))
    assert isinstance(planned, Plan | Invalid)
    if isinstance(planned, Invalid):
        assert f"Usage: `{command.usage}`" in planned.answer
    else:
        request = command.parse(cast(Args, tokenize(text, command.usage)), CONFIG)
        assert planned.needs == command.needs(request) and planned.action == (command.action or command.name)
        assert planned.needs in (command.action, "status", None), "a subcommand needs the command's action or less"


def test_text_over_the_limit_is_refused_politely_and_unread() -> None:
    """Slack documents no limit for a command's text; 4,000 is the bot's (see commands/grammar.py, and
    https://api.slack.com/changelog/2018-04-truncating-really-long-messages)."""
    at_limit = tokenize("prediction-worker " + "x" * (MAX_TEXT - len("prediction-worker ")), "/health <service>")
    assert isinstance(at_limit, Args)
    refused = tokenize("\"" + "x" * MAX_TEXT, "/health <service>")  # an unclosed quote, never looked at
    assert isinstance(refused, UserError)
    assert refused.problem == "that is 4,001 characters; a command takes at most 4,000, and none needs that many."
    assert "xxx" not in refused.text(), "what was typed is not echoed back"


# -- what people click -------------------------------------------------------------------------------------------

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=4),
                     max_leaves=12)
_VALUES = st.one_of(_JSON, st.sampled_from(["1", "1:0", "12:3", "0", "-1", "1:", ":1", "1:2:3", "²", "٣", "9" * 19,
                                            "9" * 18, "1:99999", " 1", "1 ", "1\n", "abc", "",
                                            "prediction-worker@1764979200123456", "all@1", "all@" + "9" * 16,
                                            "all@" + "9" * 17, "x@", "@1", "Prediction-Worker@1", "a-@1\n"]))
_ACTION = st.fixed_dictionaries({}, optional={
    "action_id": st.one_of(st.sampled_from([*ACTIONS, *LINK_BUTTONS, UNLOCK, "bogus", ""]), _JSON),
    "value": _VALUES, "block_id": _JSON, "type": st.sampled_from(["button", "static_select"])})
CLICK = st.fixed_dictionaries({"type": st.sampled_from(["block_actions", "interactive_message", "view_submission"])},
                              optional={"actions": st.one_of(st.lists(st.one_of(_ACTION, _JSON), max_size=3), _JSON),
                                        "user": st.one_of(st.fixed_dictionaries({"id": _JSON, "username": _JSON}),
                                                          _JSON),
                                        "channel": st.one_of(st.fixed_dictionaries({"id": _JSON}), _JSON),
                                        "response_url": _JSON})


@QUICK
@given(payload=st.one_of(CLICK, st.dictionaries(st.text(max_size=10), _JSON, max_size=5)))
def test_any_click_payload_reads_as_a_button_or_says_what_is_wrong(payload: dict[str, Any]) -> None:
    figures.count("generated inputs tried (hypothesis): button click payloads")
    click = read_click(payload)
    invocation = invocation_of(payload)
    assert all(isinstance(v, str) for v in vars(invocation).values())
    if isinstance(click, Click):
        assert click.verb == ACTIONS[click.action_id] and 0 <= click.subject < 10**18
        assert routable(payload) or payload.get("type") != "block_actions"
    elif isinstance(click, UnlockClick):
        assert payload["actions"][0]["action_id"] == UNLOCK and click.since.tzinfo is not None
        assert payload["actions"][0]["value"].startswith(click.service + "@")
    elif isinstance(click, Invalid):
        assert click.problem and click.answer.endswith("nothing was done.")
    else:
        assert click is None and payload["actions"][0]["action_id"] in LINK_BUTTONS


@QUICK
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                      _JSON.map(lambda v: ("payload=" + json.dumps(v)).encode()), _JSON.map(lambda v: json.dumps(v)
                                                                                                 .encode())),
       content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json", "text/plain", ""]))
def test_any_body_is_read_as_a_mapping_or_refused(body: bytes, content_type: str) -> None:
    """What the route does with a signed body before Bolt sees it."""
    figures.count("generated inputs tried (hypothesis): request bodies")
    read = parsed(body, content_type)
    assert read is None or isinstance(read, dict)


# -- what operators write ----------------------------------------------------------------------------------------

EXAMPLE = yaml.safe_load(EXAMPLE_CONFIG.read_text())
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                     st.sampled_from(["60s", "5m", "500ms", "-1s", "1e309", "*", "C07DEPLOYS1", "U07X", "S07Y",
                                      "us-west2", "latest", "* * * * *", "61 * * * *", "Mars/Olympus"]))
_YAMLISH = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.one_of(st.text(max_size=12), st.integers(), st.booleans()), inner, max_size=4), max_leaves=15)


def _replace_somewhere(data: Any, path: list[int], value: Any) -> Any:
    """The example config with one node, chosen by `path`, replaced: near misses are where loaders break."""
    if not path or not isinstance(data, dict | list) or not data:
        return value
    keys = list(data) if isinstance(data, dict) else list(range(len(data)))
    key = keys[path[0] % len(keys)]
    copy: Any = dict(data) if isinstance(data, dict) else list(data)
    copy[key] = _replace_somewhere(data[key], path[1:], value)
    return copy


def _loads_or_explains(text: str) -> None:
    try:
        assert isinstance(parse_config(text), Config)
    except ConfigError as error:
        assert error.problems and all(p.message for p in error.problems)
        assert "Traceback" not in str(error)


@QUICK
@given(text=st.one_of(st.text(max_size=300), st.lists(st.sampled_from(
    ["project: x\n", "region: us-west2\n", "services:\n", "  a:\n", "    image: x\n", "roles: {}\n", "- 1\n",
     "? [a, b]\n: c\n", "&a [*a]\n", "!!python/object:os.system x\n", "key: value\nkey: again\n", "\t", ": ",
     "{", "}", "[", "]", "|\n", ">\n", "%YAML 1.1\n", "---\n", "...\n", "'", "\"", "*x\n", "!!binary AA==\n",
     "!!set {a}\n", "!!omap [a: 1]\n", "{? [1]: 2}\n", "{[1]: 2}\n"]), max_size=12).map("".join)))
@example(text="{[]}")  # found by this test: an unhashable key broke the duplicate-key check
@example(text="project: &x [*x]")  # an alias that refers to itself
@example(text="a: " + "[" * 2000 + "]" * 2000)
@example(text="a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(  # ten to the eighth values from nine lines
    f"{name}: &{name} [{', '.join([f'*{inner}'] * 10)}]\n" for inner, name in zip("abcdefg", "bcdefgh", strict=True)))
def test_any_config_text_loads_or_explains_itself(text: str) -> None:
    figures.count("generated inputs tried (hypothesis): config files (text)")
    _loads_or_explains(text)


@QUICK
@given(data=_YAMLISH)
def test_any_structure_loads_or_explains_itself(data: Any) -> None:
    figures.count("generated inputs tried (hypothesis): config files (structures)")
    _loads_or_explains(yaml.safe_dump(data))


@QUICK
@given(path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6), value=_YAMLISH)
def test_the_example_config_with_any_one_node_changed_loads_or_explains_itself(path: list[int], value: Any) -> None:
    figures.count("generated inputs tried (hypothesis): config files (the example, one node changed)")
    _loads_or_explains(yaml.safe_dump(_replace_somewhere(EXAMPLE, path, value), sort_keys=False))
