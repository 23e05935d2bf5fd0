"""The Cloud Logging query language, enough of it that a filter written for real Logging selects the
same entries here.

Grammar, as the Logging docs define it (OR binds tighter than AND; NOT tightest; juxtaposition is AND):

    query      = [ conjunction ]
    conjunction= disjunction { [ "AND" ] disjunction }
    disjunction= negation { "OR" negation }
    negation   = ( "NOT" | "-" ) negation | primary
    primary    = "(" conjunction ")" | path OP values | text
    values     = value | "(" value-expression ")"         e.g. severity=(ERROR OR CRITICAL)

Matching follows the docs: `=` is exact, `:` is a case-insensitive substring ("has") and `field:*` tests
presence, `=~`/`!~` search a regular expression, ordering compares numbers, durations, times and
severity levels by value. A comparison on a field the entry lacks is false, so its NOT is true. A lone
text (bare or quoted) is a global search: any field of the entry has it. `--` starts a comment.

Functions, as https://cloud.google.com/logging/docs/view/logging-query-language#functions defines them:
`log_id("run.googleapis.com/requests")` matches entries of that log (the id of `logName`, URL-decoded), and
`sample(insertId, 0.25)` keeps a fraction of the entries that have a value for the field, chosen by a hash
of that value, so the same entry is in or out of the sample on every query.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

Predicate = Callable[[Mapping[str, Any]], bool]

SEVERITIES = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}

_TIME_FIELDS = frozenset({"timestamp", "receiveTimestamp"})
_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_OPERATORS = ("=~", "!~", "!=", ">=", "<=", "=", "<", ">", ":")
_KEYWORDS = frozenset({"AND", "OR", "NOT"})
_WORD_END = frozenset(' \t\r\n()"=!<>:~,')
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_DURATION = re.compile(r"-?\d+(\.\d+)?s")
_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)(?:[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d\d):?(\d\d)))?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FilterError(ValueError):
    """A filter Logging would refuse; the message names the problem and where it is, like Google's."""

    def __init__(self, problem: str, text: str, position: int) -> None:
        self.problem = problem
        self.position = position
        self.line = text.count("\n", 0, position) + 1
        self.column = position - (text.rfind("\n", 0, position) + 1) + 1
        super().__init__(f"Unparseable filter: {problem} at line {self.line}, column {self.column}")


def timestamp_nanos(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time (a bare date means its midnight UTC), or None.

    Nanoseconds, not datetime, because Logging timestamps carry nine fractional digits and order by them.
    The offset may lack its colon: google-cloud-logging itself sends `+0000`.
    """
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                          tzinfo=UTC)
    except ValueError:
        return None
    if sign is not None:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        moment -= offset if sign == "+" else -offset
    whole = (moment - _EPOCH) // timedelta(seconds=1)
    return whole * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", "op", "(", ")", "-" or "end"
    text: str  # a word's or string's value (escapes resolved), or the symbol itself
    position: int
    end: int
    path: tuple[str, ...] = ()  # the dotted segments the token spells, e.g. labels."k8s-pod/app"

    @property
    def keyword(self) -> str | None:
        """Only capitalised AND/OR/NOT are operators; in lower case they are search text, as in Logging."""
        return self.text if self.kind == "word" and self.text in _KEYWORDS else None


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    at = 0
    while True:
        at = _skip_space(text, at)
        if at >= len(text):
            tokens.append(_Token("end", "", at, at))
            return tokens
        char = text[at]
        op = next((op for op in _OPERATORS if text.startswith(op, at)), None)
        if char in "(),":
            tokens.append(_Token(char, char, at, at + 1))
        elif op is not None:
            tokens.append(_Token("op", op, at, at + len(op)))
        elif char == "-" and not (tokens and tokens[-1].kind == "op"):
            tokens.append(_Token("-", "-", at, at + 1))  # after an operator, `-5` is a negative number
        elif char in _WORD_END and char != '"':
            raise FilterError(f"unexpected character {char!r}", text, at)
        else:
            tokens.append(_word(text, at))
        at = tokens[-1].end


def _skip_space(text: str, at: int) -> int:
    while at < len(text):
        if text[at].isspace():
            at += 1
        elif text.startswith("--", at):
            newline = text.find("\n", at)
            at = len(text) if newline < 0 else newline
        else:
            break
    return at


def _word(text: str, start: int) -> _Token:
    """A bare word, a quoted string, or dotted segments mixing both."""
    segments: list[str] = []
    quoted = False
    at = start
    while True:
        if text.startswith('"', at):
            segment, at = _string(text, at)
            quoted = True
        else:
            end = at
            while end < len(text) and text[end] not in _WORD_END and text[end] != ".":
                end += 1
            segment, at = text[at:end], end
        segments.append(segment)
        if not text.startswith(".", at):
            break
        at += 1
    kind = "string" if quoted and len(segments) == 1 else "word"
    return _Token(kind, ".".join(segments), start, at, tuple(segments))


def _string(text: str, start: int) -> tuple[str, int]:
    r"""Backslash escapes \\, \", \n, \t and \r; any other escape is kept, so a regex "\d+" means digits."""
    out: list[str] = []
    at = start + 1
    while at < len(text):
        char = text[at]
        if char == '"':
            return "".join(out), at + 1
        if char == "\\" and at + 1 < len(text):
            escaped = text[at + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}.get(escaped, "\\" + escaped))
            at += 2
        else:
            out.append(char)
            at += 1
    raise FilterError("unterminated string", text, start)


# --- parser: builds the predicate while it reads ----------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0
        self.fields: set[str] = set()
        # Comparisons that put a floor under `timestamp`; when one is a top-level conjunct, a store can
        # skip every older entry.
        self.lower_bounds: dict[Predicate, int] = {}
        self.earliest: int | None = None

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def error(self, problem: str, token: _Token) -> FilterError:
        return FilterError(problem, self.text, token.position)

    def describe(self, token: _Token) -> str:
        return "end of filter" if token.kind == "end" else repr(self.text[token.position : token.end])

    def query(self) -> Predicate:
        if self.token.kind == "end":
            return _always
        parts = self.conjuncts(self.restriction)
        if self.token.kind != "end":
            raise self.error(f"unexpected {self.describe(self.token)}", self.token)
        self.earliest = max((self.lower_bounds[p] for p in parts if p in self.lower_bounds), default=None)
        return _all(parts)

    def conjunction(self, leaf: Callable[[], Predicate]) -> Predicate:
        return _all(self.conjuncts(leaf))

    def conjuncts(self, leaf: Callable[[], Predicate]) -> list[Predicate]:
        parts = [self.disjunction(leaf)]
        while True:
            if self.token.keyword == "AND":
                self.advance()
            elif not self.starts_term():
                return parts
            parts.append(self.disjunction(leaf))

    def starts_term(self) -> bool:
        """Juxtaposed terms are ANDed: `a b` is `a AND b`."""
        return self.token.kind in ("word", "string", "(", "-") and self.token.keyword in (None, "NOT")

    def disjunction(self, leaf: Callable[[], Predicate]) -> Predicate:
        parts = [self.negation(leaf)]
        while self.token.keyword == "OR":
            self.advance()
            parts.append(self.negation(leaf))
        return _any(parts)

    def negation(self, leaf: Callable[[], Predicate]) -> Predicate:
        if self.token.keyword == "NOT" or self.token.kind == "-":
            self.advance()
            inner = self.negation(leaf)
            return lambda entry: not inner(entry)
        return self.primary(leaf)

    def primary(self, leaf: Callable[[], Predicate]) -> Predicate:
        if self.token.kind != "(":
            return leaf()
        self.advance()
        inner = self.conjunction(leaf)
        if self.token.kind != ")":
            raise self.error(f"expected ')' but found {self.describe(self.token)}", self.token)
        self.advance()
        return inner

    def restriction(self) -> Predicate:
        """`path OP values`, or a lone text searched for in every field."""
        token = self.token
        if token.kind not in ("word", "string") or token.keyword:
            raise self.error(f"expected a comparison or search text but found {self.describe(token)}", token)
        self.advance()
        if self.token.kind == "op":
            op = self.advance()
            self.fields.add(".".join(token.path))
            return self.primary(lambda: self.comparison(token.path, op))
        if self.token.kind == "(" and self.token.position == token.end and token.kind == "word":
            return self.function(token)
        return _has_value(token.text)

    def function(self, name: _Token) -> Predicate:
        self.advance()
        args: list[_Token] = []
        while self.token.kind != ")":
            if args:
                if self.token.kind != ",":
                    raise self.error(f"expected ',' or ')' but found {self.describe(self.token)}", self.token)
                self.advance()
            if self.token.kind not in ("word", "string"):
                raise self.error(f"expected an argument but found {self.describe(self.token)}", self.token)
            args.append(self.advance())
        self.advance()
        if name.text == "log_id" and len(args) == 1:
            wanted = args[0].text
            return lambda entry: any(unquote(str(n)).partition("/logs/")[2] == wanted
                                     for n in _lookup(entry, ("logName",)))
        if name.text == "sample" and len(args) == 2:
            fraction = _number(args[1].text)
            if fraction is None or not 0 < fraction <= 1:
                raise self.error("sample() takes a fraction greater than 0.0 and no greater than 1.0", args[1])
            path = args[0].path
            self.fields.add(".".join(path))
            return lambda entry: any(_in_sample(value, fraction) for value in _lookup(entry, path))
        raise self.error(f"function {name.text}() with {len(args)} argument(s) is not supported here", name)

    def comparison(self, path: tuple[str, ...], op: _Token) -> Predicate:
        value = self.token
        if value.kind not in ("word", "string") or value.keyword:
            raise self.error(f"expected a value after {op.text!r} but found {self.describe(value)}", value)
        self.advance()
        if op.text == ":" and value.kind == "word" and value.text == "*":
            return lambda entry: bool(_lookup(entry, path))
        negate = op.text in ("!=", "!~")
        test = self.value_test({"!=": "=", "!~": "=~"}.get(op.text, op.text), path, value)
        values = _GETTERS.get(path, _lookup)
        if negate:
            return lambda entry: bool(found := values(entry, path)) and not any(map(test, found))

        def predicate(entry: Mapping[str, Any]) -> bool:
            return any(map(test, values(entry, path)))

        if path == ("timestamp",) and op.text in (">=", ">", "="):
            self.lower_bounds[predicate] = timestamp_nanos(value.text) or 0
        return predicate

    def value_test(self, op: str, path: tuple[str, ...], value: _Token) -> Callable[[Any], bool]:
        literal = unquote(value.text) if path == ("logName",) else value.text
        if op == ":":
            return _has_value(literal)
        if op == "=~":
            try:
                pattern = re.compile(literal)
            except re.error as exc:
                raise self.error(f"invalid regular expression {literal!r}: {exc}", value) from None
            return lambda found: isinstance(found, str | int | float) and bool(pattern.search(_text(found)))
        compare = _ORDERINGS[op]
        if path == ("severity",):
            level = _severity_level(literal)
            if level is None:
                names = ", ".join(SEVERITIES)
                raise self.error(f"invalid severity {literal!r}; expected one of {names} or 0..800", value)
            return lambda found: (have := _severity_level(found)) is not None and compare(have, level)
        if ".".join(path) in _TIME_FIELDS:
            nanos = timestamp_nanos(literal)
            if nanos is None:
                example = "2026-11-25T08:00:00Z"
                raise self.error(f"invalid timestamp {literal!r}; expected RFC 3339, e.g. {example}", value)
            return lambda found: (at := timestamp_nanos(_text(found))) is not None and compare(at, nanos)
        if op == "=":
            return _equals(literal)
        return _ordered(compare, literal)


# --- matching -----------------------------------------------------------------------------------------


def _in_sample(value: Any, fraction: float) -> bool:
    digest = hashlib.sha256(str(value).encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def _always(entry: Mapping[str, Any]) -> bool:
    return True


def _all(parts: Sequence[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return lambda entry: all(part(entry) for part in parts)


def _any(parts: Sequence[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return lambda entry: any(part(entry) for part in parts)


def _lookup(entry: Mapping[str, Any], path: Sequence[str]) -> list[Any]:
    """The values at a path; a repeated field fans out, so a comparison matches if any element does."""
    found: list[Any] = [entry]
    for key in path:
        found = [node[key] for node in found if isinstance(node, Mapping) and node.get(key) is not None]
        found = [item for value in found for item in (value if isinstance(value, list) else [value])]
    return found


def _log_names(entry: Mapping[str, Any], path: Sequence[str]) -> list[Any]:
    """logName is compared URL-decoded, so `run.googleapis.com/requests` and `...%2Frequests` both match."""
    return [unquote(name) for name in _lookup(entry, path) if isinstance(name, str)]


def _severities(entry: Mapping[str, Any], path: Sequence[str]) -> list[Any]:
    """Logging's JSON omits severity when it is DEFAULT."""
    return _lookup(entry, path) or ["DEFAULT"]


_GETTERS: dict[tuple[str, ...], Callable[[Mapping[str, Any], Sequence[str]], list[Any]]] = {
    ("logName",): _log_names,
    ("severity",): _severities,
}


def _severity_level(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value)
    if _NUMBER.fullmatch(text) and "." not in text:
        return int(text)
    return SEVERITIES.get(text.upper())


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


def _seconds(text: str) -> float | None:
    return float(text[:-1]) if _DURATION.fullmatch(text) else None


def _text(value: str | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _equals(literal: str) -> Callable[[Any], bool]:
    number = _number(literal)

    def test(found: Any) -> bool:
        if isinstance(found, bool):
            return literal.lower() == _text(found)
        if isinstance(found, int | float):
            return number is not None and found == number
        return isinstance(found, str) and found == literal

    return test


def _ordered(compare: Callable[[Any, Any], bool], literal: str) -> Callable[[Any], bool]:
    """Numbers (also int64 fields, which JSON carries as strings) and durations by value, other text
    lexicographically."""
    number, seconds = _number(literal), _seconds(literal)

    def test(found: Any) -> bool:
        if isinstance(found, bool):
            return False
        if isinstance(found, int | float):
            return number is not None and compare(found, number)
        if not isinstance(found, str):
            return False
        if number is not None and (have := _number(found)) is not None:
            return compare(have, number)
        if seconds is not None and (took := _seconds(found)) is not None:
            return compare(took, seconds)
        return compare(found, literal)

    return test


def _has_value(literal: str) -> Callable[[Any], bool]:
    """The has operator: a case-insensitive substring of text, equality for numbers and booleans, and for
    a structure, any value inside it."""
    needle = literal.casefold()
    number = _number(literal)

    def test(found: Any) -> bool:
        if isinstance(found, str):
            return needle in found.casefold()
        if isinstance(found, bool):
            return needle == _text(found)
        if isinstance(found, int | float):
            return number is not None and found == number
        if isinstance(found, Mapping):
            return any(test(value) for value in found.values())
        if isinstance(found, list):
            return any(test(value) for value in found)
        return False

    return test


# --- entry point --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """A compiled filter: call it with a LogEntry. `fields` are the dotted paths it compares, so a caller
    can tell whether it restricts `timestamp`; `earliest` (nanoseconds) is a time no matching entry is
    older than, when the filter says so at its top level, e.g. `severity>=ERROR timestamp>="..."`."""

    predicate: Predicate
    fields: frozenset[str]
    earliest: int | None

    def __call__(self, entry: Mapping[str, Any]) -> bool:
        return self.predicate(entry)


def compile_filter(text: str) -> Filter:
    parser = _Parser(text)
    predicate = parser.query()
    return Filter(predicate, frozenset(parser.fields), parser.earliest)
