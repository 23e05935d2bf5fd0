"""The subset of Secret Manager's list filter that this sandbox models, so a `filter=` sent to ListSecrets or
ListSecretVersions narrows the answer as Google's does instead of being ignored.

From "Filter lists of secrets and secret versions" (https://cloud.google.com/secret-manager/docs/filtering): terms
such as `name:asecret OR name:bsecret` and `labels.KEY=VALUE`; "Regular expressions are not supported in the API".
The grammar is the one of Google's list filters (https://google.aip.dev/160): juxtaposition or AND joins terms, OR
binds tighter than AND, NOT or `-` negates; `:` on text is "has" (a substring here, as the page's `name:asecret`
example matches names containing it) and `:*` asks whether a label is present.

    filter      = conjunction
    conjunction = disjunction { [ "AND" ] disjunction }
    disjunction = negation { "OR" negation }
    negation    = ( "NOT" | "-" ) negation | comparison
    comparison  = field ( ":" | "=" | "!=" ) value                  value: a word or a "quoted string"

Fields: `name` (the resource name), `labels.KEY` (secrets), `state` (versions). Parentheses, timestamps
(`create_time`) and the other fields of the page are not modelled: a filter naming them is refused with
INVALID_ARGUMENT, so nothing passes silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

_TOKEN = re.compile(r'\s*(?:(?P<quoted>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|:|~)|(?P<word>[^\s:=!~"]+))')
_FIELD = re.compile(r"name|state|labels\.[a-z0-9_-]+")

Record = Mapping[str, str]
"""What a term is matched against: `name`, `state` and `labels.KEY`, as text."""
Predicate = Callable[[Record], bool]


class SecretFilterError(ValueError):
    """A filter Secret Manager would refuse; the message says what is wrong."""


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise SecretFilterError(f"Invalid filter at column {position + 1}: {text[position:position + 20]!r}")
        quoted = match["quoted"]
        tokens.append(quoted if quoted is not None else (match["op"] or match["word"]))
        position = match.end()
    return tokens


def parse(text: str) -> Predicate:
    """A predicate over records; the empty filter keeps everything."""
    tokens = _tokens(text)
    if not tokens:
        return lambda record: True
    predicate, rest = _conjunction(tokens)
    if rest:
        raise SecretFilterError(f"Invalid filter: unexpected {rest[0]!r}")
    return predicate


def _conjunction(tokens: list[str]) -> tuple[Predicate, list[str]]:
    terms: list[Predicate] = []
    while tokens:
        if tokens[0] == "AND":
            tokens = tokens[1:]
        term, tokens = _disjunction(tokens)
        terms.append(term)
    return (lambda record: all(term(record) for term in terms)), tokens


def _disjunction(tokens: list[str]) -> tuple[Predicate, list[str]]:
    first, tokens = _negation(tokens)
    options = [first]
    while tokens and tokens[0] == "OR":
        option, tokens = _negation(tokens[1:])
        options.append(option)
    return (lambda record: any(option(record) for option in options)), tokens


def _negation(tokens: list[str]) -> tuple[Predicate, list[str]]:
    if tokens and tokens[0] == "NOT":
        inner, rest = _negation(tokens[1:])
        return (lambda record: not inner(record)), rest
    if tokens and tokens[0].startswith("-") and len(tokens[0]) > 1:
        inner, rest = _negation([tokens[0][1:], *tokens[1:]])
        return (lambda record: not inner(record)), rest
    return _comparison(tokens)


def _comparison(tokens: list[str]) -> tuple[Predicate, list[str]]:
    if len(tokens) < 3:
        raise SecretFilterError(f"Invalid filter: expected FIELD:VALUE or FIELD=VALUE, got {' '.join(tokens)!r}")
    field, op, raw = tokens[0], tokens[1], tokens[2]
    if op == "~":
        raise SecretFilterError("Regular expressions are not supported in the API.")
    if op not in (":", "=", "!=") or not _FIELD.fullmatch(field):
        raise SecretFilterError(f"Invalid filter term {field}{op}{raw}: this sandbox filters on name, state and "
                                "labels.KEY with ':', '=' or '!='")
    value = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
    rest = tokens[3:]
    if op == ":" and value == "*":
        return (lambda record: field in record), rest
    if op == ":":
        return (lambda record: value in record.get(field, "")), rest
    if op == "=":
        return (lambda record: record.get(field) == value), rest
    return (lambda record: record.get(field) != value), rest
