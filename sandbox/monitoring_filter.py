"""The Cloud Monitoring filter language (https://cloud.google.com/monitoring/api/v3/filters), as
`timeSeries.list` reads it, so a filter written for real Monitoring selects the same series here.

Grammar (as in Google's other filter languages, OR binds tighter than AND; juxtaposition is AND):

    filter      = conjunction
    conjunction = disjunction { [ "AND" ] disjunction }
    disjunction = negation { "OR" negation }
    negation    = "NOT" negation | "(" conjunction ")" | comparison
    comparison  = selector operator ( string | number | function )
    selector    = project | metric.type | resource.type
                | (metric|resource).label[s].KEY | metadata.(system|user)_labels.KEY     (KEY may be quoted)
    operator    = "=" | "!=" | ":" | "<" | "<=" | ">" | ">="
    function    = starts_with | ends_with | has_substring | one_of | monitoring.regex.full_match

`:` tests for a substring; ordering compares numbers by value and other text lexicographically; a
function is used with `=` or `!=`. A comparison on a label the series lacks is false, so its `!=` is
true. A time-series listing must name exactly one metric type with a top-level `metric.type = "..."`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                   ">=": operator.ge}
_OPERATORS = ("!=", "<=", ">=", "=", "<", ">", ":")
_KEYWORDS = frozenset({"AND", "OR", "NOT"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_SELECTORS = ("project, metric.type, metric.labels.KEY, resource.type, resource.labels.KEY, "
              "metadata.system_labels.KEY or metadata.user_labels.KEY")


class FilterError(ValueError):
    """A filter Monitoring would refuse; the message names the problem and its column."""

    def __init__(self, problem: str, position: int) -> None:
        self.problem = problem
        self.column = position + 1
        super().__init__(f"{problem} (column {self.column})")


@dataclass(frozen=True)
class Subject:
    """What a filter can see of one time series."""

    projects: tuple[str, ...]  # the project id and number: `project = ...` matches either
    metric_type: str
    metric_labels: Mapping[str, str]
    resource_type: str
    resource_labels: Mapping[str, str]


class Predicate(Protocol):
    def __call__(self, subject: Subject) -> bool: ...


Values = Callable[[Subject], Sequence[str]]


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", "number", "op", "(", ")", ",", "." or "end"
    text: str  # a string's value with escapes resolved, otherwise the source text
    position: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            tokens.append(_Token("end", "", at))
            return tokens
        char = text[at]
        op = next((op for op in _OPERATORS if text.startswith(op, at)), None)
        number = _NUMBER.match(text, at)
        word = _WORD.match(text, at)
        if char in "(),.":
            tokens.append(_Token(char, char, at))
            at += 1
        elif op is not None:
            tokens.append(_Token("op", op, at))
            at += len(op)
        elif char == '"':
            value, end = _string(text, at)
            tokens.append(_Token("string", value, at))
            at = end
        elif number is not None:
            tokens.append(_Token("number", number.group(), at))
            at = number.end()
        elif word is not None:
            tokens.append(_Token("word", word.group(), at))
            at = word.end()
        else:
            raise FilterError(f"unexpected character {char!r}", at)


def _string(text: str, start: int) -> tuple[str, int]:
    r"""A double-quoted string; \" and \\ are escapes, any other backslash is kept (regexes need them)."""
    out: list[str] = []
    at = start + 1
    while at < len(text):
        char = text[at]
        if char == '"':
            return "".join(out), at + 1
        if char == "\\" and at + 1 < len(text):
            following = text[at + 1]
            out.append(following if following in '"\\' else "\\" + following)
            at += 2
        else:
            out.append(char)
            at += 1
    raise FilterError("unterminated string", start)


# --- predicates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Comparison:
    selector: str
    values: Values
    test: Callable[[str], bool]
    negate: bool
    literal: str | None  # the string of a plain `selector = "..."`, so the metric type can be read off

    def __call__(self, subject: Subject) -> bool:
        matched = any(map(self.test, self.values(subject)))
        return not matched if self.negate else matched


@dataclass(frozen=True)
class _All:
    parts: tuple[Predicate, ...]

    def __call__(self, subject: Subject) -> bool:
        return all(part(subject) for part in self.parts)


@dataclass(frozen=True)
class _Any:
    parts: tuple[Predicate, ...]

    def __call__(self, subject: Subject) -> bool:
        return any(part(subject) for part in self.parts)


@dataclass(frozen=True)
class _Not:
    inner: Predicate

    def __call__(self, subject: Subject) -> bool:
        return not self.inner(subject)


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


def _ordered(op: str, literal: str) -> Callable[[str], bool]:
    """Numbers by value when both sides are numbers (label values are text on the wire), else as text."""
    compare = _ORDERINGS[op]
    bound = _number(literal)

    def test(value: str) -> bool:
        have = _number(value)
        if bound is not None and have is not None:
            return compare(have, bound)
        return compare(value, literal)

    return test


def _equals(literal: str) -> Callable[[str], bool]:
    bound = _number(literal)
    return lambda value: value == literal or (bound is not None and _number(value) == bound)


# --- parser -------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def keyword(self) -> str | None:
        token = self.token
        return token.text if token.kind == "word" and token.text in _KEYWORDS else None

    def describe(self, token: _Token) -> str:
        if token.kind == "end":
            return "the end of the filter"
        return f'"{token.text}"' if token.kind == "string" else repr(token.text)

    def expect(self, kind: str, what: str) -> _Token:
        if self.token.kind != kind:
            raise FilterError(f"expected {what} but found {self.describe(self.token)}", self.token.position)
        return self.advance()

    def filter(self) -> list[Predicate]:
        if self.token.kind == "end":
            raise FilterError("the filter is empty", 0)
        parts = self.conjuncts()
        if self.token.kind != "end":
            raise FilterError(f"unexpected {self.describe(self.token)}", self.token.position)
        return parts

    def conjuncts(self) -> list[Predicate]:
        """Top-level AND-ed parts, flattening parenthesised conjunctions, so `metric.type` can be found."""
        parts: list[Predicate] = []
        while True:
            part = self.disjunction()
            parts.extend(part.parts if isinstance(part, _All) else [part])
            if self.keyword() == "AND":
                self.advance()
            elif self.token.kind not in ("word", "("):  # juxtaposed terms are AND-ed too
                return parts

    def disjunction(self) -> Predicate:
        parts = [self.negation()]
        while self.keyword() == "OR":
            self.advance()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else _Any(tuple(parts))

    def negation(self) -> Predicate:
        if self.keyword() == "NOT":
            self.advance()
            return _Not(self.negation())
        if self.token.kind == "(":
            self.advance()
            parts = self.conjuncts()
            self.expect(")", "')'")
            return parts[0] if len(parts) == 1 else _All(tuple(parts))
        return self.comparison()

    def comparison(self) -> Predicate:
        start = self.token
        if start.kind != "word" or self.keyword():
            raise FilterError(f"expected a selector such as metric.type but found {self.describe(start)}",
                              start.position)
        path = [self.advance().text]
        while self.token.kind == ".":
            self.advance()
            segment = self.token
            if segment.kind not in ("word", "string"):
                raise FilterError(f"expected a name after '.' but found {self.describe(segment)}", segment.position)
            path.append(self.advance().text)
        values = _selector(path, start.position)
        selector = ".".join(path)
        op = self.expect("op", f"an operator (=, !=, :, <, <=, >, >=) after {selector}")
        value = self.token
        negate = op.text == "!="
        if self.at_function():
            if op.text not in ("=", "!="):
                raise FilterError(f"a function can only follow = or !=, not {op.text!r}", value.position)
            return _Comparison(selector, values, self.function(), negate, None)
        if value.kind not in ("string", "number"):
            raise FilterError(f"expected a quoted string, a number or a function after {op.text!r} but found "
                              f"{self.describe(value)}", value.position)
        self.advance()
        literal = value.text
        if op.text in ("=", "!="):
            plain = literal if value.kind == "string" and not negate else None
            return _Comparison(selector, values, _equals(literal), negate, plain)
        if op.text == ":":
            return _Comparison(selector, values, lambda found: literal in found, False, None)
        return _Comparison(selector, values, _ordered(op.text, literal), False, None)

    def at_function(self) -> bool:
        """A dotted name followed by '(', e.g. monitoring.regex.full_match(...)."""
        at = self.index
        while self.tokens[at].kind == "word" and self.tokens[at + 1].kind == ".":
            at += 2
        return self.tokens[at].kind == "word" and self.tokens[at + 1].kind == "("

    def function(self) -> Callable[[str], bool]:
        start = self.token
        name = self.advance().text
        while self.token.kind == ".":
            self.advance()
            name += "." + self.expect("word", "a function name").text
        self.expect("(", f"'(' after {name}")
        arguments: list[str] = []
        while self.token.kind != ")":
            if arguments:
                self.expect(",", "',' or ')'")
            arguments.append(self.expect("string", f"a quoted string as argument of {name}").text)
        self.advance()
        return _function(name, arguments, start.position)


def _selector(path: list[str], position: int) -> Values:
    if path == ["project"]:
        return lambda subject: subject.projects
    if path == ["metric", "type"]:
        return lambda subject: (subject.metric_type,)
    if path == ["resource", "type"]:
        return lambda subject: (subject.resource_type,)
    if len(path) == 3 and path[1] in ("label", "labels") and path[0] in ("metric", "resource"):
        key, kind = path[2], path[0]

        def label(subject: Subject) -> Sequence[str]:
            labels = subject.metric_labels if kind == "metric" else subject.resource_labels
            return (labels[key],) if key in labels else ()

        return label
    if len(path) == 3 and path[0] == "metadata" and path[1] in ("system_labels", "user_labels"):
        return lambda subject: ()  # the sandbox's Cloud Run revisions carry no metadata labels
    raise FilterError(f"unknown selector {'.'.join(path)!r}; use {_SELECTORS}", position)


def _function(name: str, arguments: list[str], position: int) -> Callable[[str], bool]:
    if name == "one_of":
        if not arguments:
            raise FilterError("one_of needs at least one value", position)
        choices = frozenset(arguments)
        return lambda value: value in choices
    single: dict[str, Callable[[str], Callable[[str], bool]]] = {
        "starts_with": lambda prefix: lambda value: value.startswith(prefix),
        "ends_with": lambda suffix: lambda value: value.endswith(suffix),
        "has_substring": lambda part: lambda value: part in value,
        "monitoring.regex.full_match": lambda pattern: _full_match(pattern, position),
    }
    if name not in single:
        raise FilterError(f"unknown function {name!r}; use {', '.join([*single, 'one_of'])}", position)
    if len(arguments) != 1:
        raise FilterError(f"{name} takes exactly one argument, got {len(arguments)}", position)
    return single[name](arguments[0])


def _full_match(pattern: str, position: int) -> Callable[[str], bool]:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise FilterError(f"invalid regular expression {pattern!r}: {exc}", position) from None
    return lambda value: compiled.fullmatch(value) is not None


# --- entry point --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitoringFilter:
    """A compiled filter: call it with a Subject. `metric_type` is the one type it names."""

    metric_type: str
    predicate: Predicate

    def __call__(self, subject: Subject) -> bool:
        return self.predicate(subject)


def compile_filter(text: str) -> MonitoringFilter:
    parts = _Parser(text).filter()
    types = {part.literal for part in parts
             if isinstance(part, _Comparison) and part.selector == "metric.type" and part.literal is not None}
    if len(types) != 1:
        problem = "names more than one" if types else "does not name a"
        raise FilterError(f'the filter {problem} metric type; write exactly one metric.type = "..." joined to '
                          "the rest with AND", 0)
    return MonitoringFilter(types.pop(), _All(tuple(parts)))
