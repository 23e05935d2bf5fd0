"""Runbooks: one Markdown file per service, served as small HTML pages that alerts link into (to Slack's
readers only: bot/runbook_links.py decides where links point and signs them).

A link in a 3 a.m. alert is only useful if it lands on the right section, so the config's anchors are
checked against the runbooks' headings when the bot starts, and each page gives every heading exactly
the id that GitHub would. The converter knows only what runbooks need and escapes everything else:
a runbook is text, never markup that runs.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from bot.config import Config, ConfigProblem, HttpCheck, LogCheck
from bot.runbook_links import RunbookPages

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)")
_BULLET = re.compile(r"^ {0,3}[-*+][ \t]+(.*)$")
_NUMBERED = re.compile(r"^ {0,3}(\d{1,9})[.)][ \t]+(.*)$")
_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^()\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^()\s]+\)")
_NOT_IN_SLUG = re.compile(r"[^\w\- ]")


def slugify(heading: str) -> str:
    """GitHub's anchor for a heading, so a runbook's links work on GitHub and on the bot's pages alike."""
    return _NOT_IN_SLUG.sub("", heading.strip().lower()).replace(" ", "-")


class _Document(NamedTuple):
    body: str
    anchors: tuple[str, ...]
    title: str | None


def _safe_url(url: str) -> bool:
    """Web and relative links only: a `javascript:` link in a runbook must not become one on the page."""
    try:
        return urlsplit(url).scheme in ("", "http", "https")
    except ValueError:
        return False


def _inline(text: str) -> str:
    """Escape everything except code spans, bold and links with a safe URL."""
    parts: list[str] = []
    position = 0
    for match in _INLINE.finditer(text):
        parts.append(html.escape(text[position:match.start()]))
        code, bold, label, url = match.groups()
        if code is not None:
            parts.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            parts.append(f"<strong>{_inline(bold)}</strong>")
        elif _safe_url(url):
            parts.append(f'<a href="{html.escape(url)}">{_inline(label)}</a>')
        else:
            parts.append(_inline(label))
        position = match.end()
    parts.append(html.escape(text[position:]))
    return "".join(parts)


def _starts_block(line: str) -> bool:
    return any(pattern.match(line) for pattern in (_HEADING, _FENCE, _BULLET, _NUMBERED))


def _render(markdown: str) -> _Document:
    """One pass over the blocks, so the anchors listed and the ids rendered cannot disagree."""
    lines = markdown.splitlines()
    out: list[str] = []
    anchors: list[str] = []
    title: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif fence := _FENCE.match(line):
            marker, info = fence.groups()
            closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            code: list[str] = []
            i += 1
            while i < len(lines) and not closing.match(lines[i]):
                code.append(lines[i])
                i += 1
            i += 1
            language = f' class="language-{html.escape(info)}"' if info else ""
            out.append(f"<pre><code{language}>{html.escape(chr(10).join(code))}</code></pre>")
        elif heading := _HEADING.match(line):
            level, text = len(heading.group(1)), heading.group(2)
            plain = _LINK.sub(r"\1", text)
            anchor = slugify(plain)
            if anchor in anchors:  # GitHub numbers repeated headings: setup, setup-1, setup-2
                anchor = next(f"{anchor}-{n}" for n in range(1, len(anchors) + 2) if f"{anchor}-{n}" not in anchors)
            anchors.append(anchor)
            if title is None and level == 1:
                title = plain.replace("`", "").replace("**", "")
            out.append(f'<h{level} id="{html.escape(anchor)}">{_inline(text)} '
                       f'<a class="anchor" href="#{html.escape(anchor)}" aria-label="link to this section">#</a>'
                       f"</h{level}>")
            i += 1
        elif item := (_BULLET.match(line) or _NUMBERED.match(line)):
            pattern = _BULLET if item.re is _BULLET else _NUMBERED
            items: list[list[str]] = []
            while i < len(lines):
                if found := pattern.match(lines[i]):
                    items.append([found.groups()[-1]])
                elif lines[i].strip() and not _starts_block(lines[i]):
                    items[-1].append(lines[i].strip())
                elif not lines[i].strip():
                    following = next((j for j in range(i, len(lines)) if lines[j].strip()), len(lines))
                    if following == len(lines) or not pattern.match(lines[following]):
                        break
                    i = following
                    continue
                else:
                    break
                i += 1
            body = "".join(f"<li>{_inline(' '.join(parts))}</li>" for parts in items)
            if pattern is _BULLET:
                out.append(f"<ul>{body}</ul>")
            else:
                start = int(item.group(1))
                out.append(f'<ol start="{start}">{body}</ol>' if start != 1 else f"<ol>{body}</ol>")
        else:
            paragraph: list[str] = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines[i]):
                paragraph.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
    return _Document("\n".join(out), tuple(anchors), title)


_CSS = """
body { font: 16px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 50rem; margin: 2rem auto;
       padding: 0 1rem; color: #1f2328; background: #fff; }
h1, h2, h3, h4 { line-height: 1.25; }
h2 { margin-top: 2.2rem; padding-bottom: .3rem; border-bottom: 1px solid #d0d7de; }
:target { background: #fff8c5; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f6f8fa;
       padding: .1em .3em; border-radius: 4px; }
pre { background: #f6f8fa; padding: .8rem 1rem; overflow-x: auto; border-radius: 6px; }
pre code { padding: 0; background: none; }
a { color: #0969da; }
a.anchor { color: #8c959f; text-decoration: none; font-weight: normal; visibility: hidden; }
:hover > a.anchor, :target > a.anchor { visibility: visible; }
@media (prefers-color-scheme: dark) {
  body { color: #e6edf3; background: #0d1117; }
  code, pre { background: #161b22; }
  h2 { border-color: #30363d; }
  :target { background: #3b2f00; }
  a { color: #4493f8; }
}
"""


@dataclass(frozen=True)
class Runbook:
    """One runbook; `anchors` are the ids its page gives its headings, in document order."""

    service: str
    title: str
    markdown: str
    anchors: tuple[str, ...]

    @classmethod
    def parse(cls, service: str, markdown: str) -> Runbook:
        document = _render(markdown)
        return cls(service, document.title or service, markdown, document.anchors)

    def html(self) -> str:
        """A whole page with nothing to fetch: it must render from a phone on a flaky connection."""
        title = html.escape(self.title)
        return (
            "<!doctype html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
            f"<title>{title} · runbook</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n{_render(self.markdown).body}\n</body>\n</html>\n"
        )


class Runbooks:
    """The runbook directory as read at start; an edited runbook is served after a restart."""

    def __init__(self, directory: Path, books: dict[str, Runbook]) -> None:
        self.directory = directory
        self._books = books

    @classmethod
    def load(cls, directory: Path) -> Runbooks:
        books = {path.stem: Runbook.parse(path.stem, path.read_text(encoding="utf-8"))
                 for path in sorted(directory.glob("*.md"))}
        return cls(directory, books)

    def services(self) -> tuple[str, ...]:
        """The services with a runbook, sorted: the index page and did-you-mean suggestions list them."""
        return tuple(sorted(self._books))

    def get(self, service: str) -> Runbook | None:
        return self._books.get(service)

    def link(self, pages: RunbookPages, service: str, anchor: str | None = None) -> str:
        """The page, at the section when it exists: a stale anchor still lands on the right runbook
        (check_runbooks reports it), instead of a fragment the browser silently ignores."""
        url = pages.url(service)
        book = self.get(service)
        if anchor and book is not None and anchor in book.anchors:
            url += f"#{quote(anchor)}"
        return url


class RunbookLinker:
    """The link for a failing check: its mapped step, a section named like the check, or the runbook's top."""

    def __init__(self, config: Config, runbooks: Runbooks, pages: RunbookPages) -> None:
        self.config = config
        self.runbooks = runbooks
        self.pages = pages

    def __call__(self, service: str, check: str | None = None) -> str | None:
        settings = self.config.services.get(service)
        if settings is None or settings.runbook is None or self.runbooks.get(settings.runbook) is None:
            return None
        anchor = settings.checks.get(check) if check else None
        if anchor is None and check:
            canary = self.config.canary_for(service)
            own: tuple[LogCheck | HttpCheck, ...] = (*canary.log_checks, *canary.http_checks)
            anchor = next((c.runbook_step for c in own if c.name == check and c.runbook_step), check)
        return self.runbooks.link(self.pages, settings.runbook, anchor)


def _steps(path: str, checks: Sequence[LogCheck | HttpCheck]) -> Iterator[tuple[str, str]]:
    for index, check in enumerate(checks):
        if check.runbook_step is not None:
            yield f"{path}.{index}.runbook_step", check.runbook_step


def _sections_linked(config: Config, name: str) -> Iterator[tuple[str, str]]:
    """(field path, anchor) of every section the bot may link to for a service.

    Canary checks inherited from the defaults are reported at the defaults' path: that is where the fix goes.
    """
    service = config.services[name]
    for check, anchor in service.checks.items():
        yield f"services.{name}.checks.{check}", anchor
    policy = config.canary_for(name)
    own = f"services.{name}.canary"
    yield from _steps(f"{own if service.canary.log_checks is not None else 'defaults.canary'}.log_checks",
                      policy.log_checks)
    yield from _steps(f"{own if service.canary.http_checks is not None else 'defaults.canary'}.http_checks",
                      policy.http_checks)


def _missing_section(book: Runbook, anchor: str, service: str, path: str) -> str:
    close = difflib.get_close_matches(slugify(anchor), book.anchors, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {close[0]!r}?"
    else:
        hint = f"add a heading such as '## {anchor.replace('-', ' ').capitalize()}'"
    inherited = "" if path.startswith(f"services.{service}.") else f" (used by {service})"
    sections = ", ".join(book.anchors) or "none"
    return f"runbook {book.service!r} has no section {anchor!r}{inherited}; {hint} (its sections: {sections})"


def check_runbooks(config: Config, runbooks: Runbooks) -> list[ConfigProblem]:
    """Every runbook and section the bot can link to must exist; found at start, not from a dead link in an alert."""
    problems: list[ConfigProblem] = []
    known = ", ".join(runbooks.services()) or "none"
    for name, service in config.services.items():
        linked = list(_sections_linked(config, name))
        path = f"services.{name}.runbook"
        if service.runbook is None:
            if linked:
                suggestion = f"runbook: {name}" if runbooks.get(name) else f"runbook: <one of: {known}>"
                problems.append(ConfigProblem(
                    path, f"not set, but {linked[0][0]} names the section {linked[0][1]!r}; write {suggestion}"))
            continue
        book = runbooks.get(service.runbook)
        if book is None:
            close = difflib.get_close_matches(service.runbook, runbooks.services(), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(ConfigProblem(
                path, f"no runbook {service.runbook!r}: {runbooks.directory / service.runbook}.md does not exist"
                      f"{hint} (runbooks: {known})"))
            continue
        problems += [ConfigProblem(where, _missing_section(book, anchor, name, where))
                     for where, anchor in linked if anchor not in book.anchors]
    return problems


def runbooks_beside(config_path: Path) -> Runbooks:
    """Runbooks live beside the config file, in runbooks/, as they do in this repository and the image."""
    return Runbooks.load(config_path.resolve().parent / "runbooks")
