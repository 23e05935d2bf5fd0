"""Runbooks: every link the bot can put in an alert lands on a section that exists, on a page that is safe."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

from bot.adapters.secrets import Credentials
from bot.config import Config, ConfigError, load_config, parse_config, summary
from bot.log import REDACTED, Redactor
from bot.runbook_links import LINK_LIFETIME, TOKEN, ExternalPages, LinkKey, SignedPages, expiry, page_path
from bot.runbooks import Runbook, RunbookLinker, Runbooks, check_runbooks, slugify

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "chatops.example.yaml").read_text()
RUNBOOKS = Runbooks.load(ROOT / "runbooks")
BASE = "https://chatops.example.com"
KEY = LinkKey(secrets.token_bytes(32))
PAGES = SignedPages(BASE, KEY)


class _Ids(HTMLParser):
    """The ids and link targets of a page, read the way a browser would."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.tags: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if found.get("id") is not None:
            self.ids.append(str(found["id"]))
        if tag == "a" and found.get("href") is not None:
            self.hrefs.append(str(found["href"]))
        if found.get("src") is not None:
            self.srcs.append(str(found["src"]))


def linked_sections(config: Config) -> list[tuple[str, str, str]]:
    """(service, runbook, anchor) for every check and canary step the config links to."""
    found = []
    for name, service in config.services.items():
        assert service.runbook is not None
        found += [(name, service.runbook, anchor) for anchor in service.checks.values()]
        policy = config.canary_for(name)
        steps = [c.runbook_step for c in policy.log_checks] + [c.runbook_step for c in policy.http_checks]
        found += [(name, service.runbook, step) for step in steps if step]
    return found


def problems(config_text: str, runbooks: Runbooks = RUNBOOKS) -> dict[str, str]:
    return {p.path: p.message for p in check_runbooks(parse_config(config_text), runbooks)}


def test_the_example_fleet_runbooks_check_clean() -> None:
    assert check_runbooks(load_config(ROOT / "chatops.example.yaml"), RUNBOOKS) == []
    assert set(RUNBOOKS.services()) == set(load_config(ROOT / "chatops.example.yaml").services)


@pytest.mark.parametrize("link", linked_sections(load_config(ROOT / "chatops.example.yaml")), ids=str)
def test_every_link_the_bot_can_emit_resolves(link: tuple[str, str, str]) -> None:
    """Resolves means: the bot admits the link's token for the path it is sent to, and the page has the section."""
    _, runbook, anchor = link
    url = RUNBOOKS.link(PAGES, runbook, anchor)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE and unquote(parts.path) == page_path(runbook)
    assert KEY.check(unquote(parts.path), parse_qs(parts.query)[TOKEN][0], time.time()) == "open"
    book = RUNBOOKS.get(runbook)
    assert book is not None
    assert parts.fragment == anchor and anchor in _Ids(book.html()).ids


@pytest.mark.parametrize("name", sorted(load_config(ROOT / "chatops.example.yaml").services))
def test_every_runbook_has_rollback_and_canary_sections_and_its_links_resolve(name: str) -> None:
    book = RUNBOOKS.get(name)
    assert book is not None
    assert book.title == name
    assert {"rolling-back", "canary-failed", "deploy-refused"} <= set(book.anchors), "the steps rollouts link to"
    assert len(book.anchors) == len(set(book.anchors))
    assert "/rollback " + name in book.markdown
    assert "--project=nba-props-platform" in book.markdown or "P=nba-props-platform" in book.markdown
    page = _Ids(book.html())
    assert page.ids == list(book.anchors)
    assert {href[1:] for href in page.hrefs if href.startswith("#")} <= set(page.ids)  # "see X" links too


def test_a_missing_anchor_is_reported_with_its_path_and_the_closest_section() -> None:
    found = problems(EXAMPLE.replace("gcs_model_file: gcs-model-file", "gcs_model_file: gcs-model"))
    message = found["services.prediction-worker.checks.gcs_model_file"]
    assert "runbook 'prediction-worker' has no section 'gcs-model'; did you mean 'gcs-model-file'?" in message
    assert "model-config" in message  # what exists is listed


def test_a_canary_step_is_reported_where_it_is_written() -> None:
    found = problems(EXAMPLE.replace("runbook_step: heartbeat", "runbook_step: heartbeats"))
    path = "services.nba-phase3-analytics-processors.canary.log_checks.0.runbook_step"
    assert "did you mean 'heartbeat'?" in found[path]
    inherited = EXAMPLE.replace("    progress_deadline: 10m", "    progress_deadline: 10m\n    http_checks:\n"
                                "      - {name: ready, path: /ready, runbook_step: readiness}")
    found = problems(inherited)
    message = found["defaults.canary.http_checks.0.runbook_step"]
    assert "has no section 'readiness'" in message and "used by" in message
    assert "add a heading such as '## Readiness'" in message
    assert "services.prediction-worker.canary.http_checks.0.runbook_step" not in found  # its own checks replace them


def test_a_missing_runbook_is_reported_with_a_suggestion() -> None:
    found = problems(EXAMPLE.replace("runbook: nba-grading-service", "runbook: nba-grading-servce"))
    message = found["services.nba-grading-service.runbook"]
    assert "no runbook 'nba-grading-servce'" in message and "nba-grading-servce.md does not exist" in message
    assert "did you mean 'nba-grading-service'?" in message
    assert len(found) == 1  # its anchors are not reported against a runbook that is not there


def test_anchors_without_a_runbook_are_reported(tmp_path: Path) -> None:
    (tmp_path / "mlb-prediction-worker.md").write_text("# MLB\n\n## Environment\n")
    found = problems(EXAMPLE.replace("    runbook: mlb-prediction-worker\n", ""), Runbooks.load(tmp_path))
    assert "write runbook: mlb-prediction-worker" in found["services.mlb-prediction-worker.runbook"]
    assert "no runbook 'prediction-worker'" in found["services.prediction-worker.runbook"]


@pytest.mark.parametrize(("heading", "anchor"), [
    ("BigQuery", "bigquery"),
    ("GCS model file", "gcs-model-file"),
    ("Vegas line coverage", "vegas-line-coverage"),
    ("Pub/Sub", "pubsub"),
    ("  Canary failed  ", "canary-failed"),
    ("What `K_REVISION` says", "what-k_revision-says"),
    ("Step 2: re-run (maybe)!", "step-2-re-run-maybe"),
    ("a  b", "a--b"),
    ("Überprüfung", "überprüfung"),
    ("😄 emoji", "-emoji"),
    ("a\tb", "ab"),
    ("Version 1.2 \u2013 rollout", "version-12--rollout"),  # an en dash is punctuation
])
def test_slugify_matches_github(heading: str, anchor: str) -> None:
    """GitHub's rules (https://docs.github.com/en/get-started/writing-on-github/getting-started-with-writing-and-formatting-on-github/basic-writing-and-formatting-syntax#section-links):
    "Letters are converted to lower-case. Spaces are replaced by hyphens (-). Any other whitespace or punctuation
    characters are removed." The emoji case is github-slugger's README example (https://github.com/Flet/github-slugger)."""
    assert slugify(heading) == anchor


def test_html_gives_every_heading_its_anchor_and_escapes_everything_else() -> None:
    book = Runbook.parse("demo", "\n".join([
        "# Demo <b>runbook</b>",
        "",
        "Text with <script>alert(1)</script> & **bold `code <i>`** and [docs](https://example.com/a?b=1&c=2).",
        "Same paragraph, [bad](javascript:alert) link.",
        "",
        "## Setup",
        "## Setup",
        "## [Linked](https://example.com) heading",
        "",
        "```bash",
        "# not a heading",
        'echo "<script>"',
        "```",
        "",
        "1. first",
        "   continued",
        "2. second",
        "",
        "- a",
        "- b",
    ]))
    assert book.title == "Demo <b>runbook</b>"
    assert book.anchors == ("demo-brunbookb", "setup", "setup-1", "linked-heading")
    page = book.html()
    parsed = _Ids(page)
    assert parsed.ids == list(book.anchors)
    assert "script" not in parsed.tags and "b" not in parsed.tags and "i" not in parsed.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in page
    assert "<title>Demo &lt;b&gt;runbook&lt;/b&gt; · runbook</title>" in page
    assert "<strong>bold <code>code &lt;i&gt;</code></strong>" in page
    assert "https://example.com/a?b=1&c=2" in parsed.hrefs
    assert not any(href.startswith("javascript") for href in parsed.hrefs)
    assert '<pre><code class="language-bash"># not a heading\necho &quot;&lt;script&gt;&quot;\n</code></pre>' in page
    assert "<ol>\n<li>first\ncontinued</li>\n<li>second</li>\n</ol>" in page
    assert "<ul>\n<li>a</li>\n<li>b</li>\n</ul>" in page
    assert page.startswith("<!doctype html>") and "http" not in page.partition("<body>")[0].replace(
        "http-equiv", "")  # nothing fetched from elsewhere


def test_a_numbered_list_interrupted_by_code_continues_its_numbering() -> None:
    """An ordered list's start number is its first item's (https://spec.commonmark.org/0.30/#list-items)."""
    page = Runbook.parse("demo", "1. look\n\n```\ncmd\n```\n\n2. fix\n").html()
    assert '<ol>\n<li>look</li>\n</ol>\n<pre><code>cmd\n</code></pre>\n<ol start="2">\n<li>fix</li>\n</ol>' in page


def test_raw_html_in_a_runbook_comes_out_as_text() -> None:
    """Raw HTML is off: "Disable HTML ... This removes the need for further sanitizing"
    (https://markdown-it-py.readthedocs.io/en/latest/security.html). Inline tags, HTML blocks and comments are
    all shown as the text they are."""
    page = Runbook.parse("demo", "\n".join([
        "# Demo",
        "",
        'Run <script>fetch("/steal")</script> then <img src=x onerror="alert(1)"> and <!-- hidden -->.',
        "",
        '<div onclick="alert(2)">',
        "<iframe src=https://example.com></iframe>",
        "</div>",
    ])).html()
    parsed = _Ids(page.partition("<body>")[2])
    assert not {"script", "img", "div", "iframe"} & set(parsed.tags)
    assert parsed.srcs == []
    assert "Run &lt;script&gt;fetch(&quot;/steal&quot;)&lt;/script&gt; then &lt;img src=x" in page
    assert "&lt;!-- hidden --&gt;" in page
    assert "&lt;div onclick=&quot;alert(2)&quot;&gt;" in page


@pytest.mark.parametrize("written", [
    "[run this](javascript:alert(1))",
    "[run this](JaVaScRiPt:alert(1))",
    "[run this](vbscript:msgbox(1))",
    "[run this](file:///etc/passwd)",
    "[run this](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[run this](ms-settings:privacy)",
    "<javascript:alert(1)>",
    "[run this][ref]\n\n[ref]: javascript:alert(1)",
    "![run this](data:image/png;base64,iVBORw0KGgo=)",
])
def test_a_link_that_is_not_to_the_web_stays_text(written: str) -> None:
    """markdown-it refuses `javascript:`, `vbscript:`, `file:` and `data:` but a few images
    (https://markdown-it-py.readthedocs.io/en/latest/security.html); the runbook pages also refuse every other
    scheme but http(s) and mailto. A refused link is not a link at all: its text stays, nothing points anywhere."""
    page = Runbook.parse("demo", f"# Demo\n\n{written}\n").html()
    parsed = _Ids(page.partition("<body>")[2])
    assert [href for href in parsed.hrefs if not href.startswith("#")] == [] and parsed.srcs == []
    assert "run this" in page or "javascript:alert(1)" in page


def test_markdown_its_own_link_check_refuses_script_schemes() -> None:
    """The library check the pages build on, as its security page lists it
    (https://markdown-it-py.readthedocs.io/en/latest/security.html)."""
    stock = MarkdownIt("commonmark")
    for url in ("javascript:alert(1)", "JAVASCRIPT:alert(1)", "vbscript:x", "file:///etc/passwd", "data:text/html,x"):
        assert not stock.validateLink(url), url
    assert stock.validateLink("data:image/png;base64,AAAA"), "images are the documented exception"


def test_web_mail_and_relative_links_are_links() -> None:
    page = Runbook.parse("demo", "\n".join([
        "# Demo",
        "",
        "[console](https://console.cloud.google.com/run?project=p&x=1) [plain](http://example.com)",
        "<https://example.com/auto> <oncall@example.com> [sibling](prediction-worker#bigquery) [up](#demo)",
    ])).html()
    assert _Ids(page).hrefs == ["#demo", "https://console.cloud.google.com/run?project=p&x=1", "http://example.com",
                                "https://example.com/auto", "mailto:oncall@example.com", "prediction-worker#bigquery",
                                "#demo"]


def test_tables_and_code_fences_render() -> None:
    """GitHub's pipe tables ("GFM enables the `table` extension",
    https://hackage.haskell.org/package/commonmark-extensions-0.2.3/src/test/pipe_tables.md) and CommonMark's
    fenced code blocks (https://spec.commonmark.org/0.30/#fenced-code-blocks): the code is shown as written,
    escaped, with its language as a class."""
    page = Runbook.parse("demo", "\n".join([
        "# Demo",
        "",
        "| Check | Fix |",
        "| :--- | ---: |",
        "| `gcs_model_file` | re-upload **the model** |",
        "| a \\| b | ~~old~~ |",
        "",
        "~~~bash",
        "gcloud run services describe \"$S\" <<EOF | jq '.status'",
        "```",
        "~~~",
        "",
        "    indented <code>",
    ])).html()
    assert "\n".join([
        "<table>", "<thead>", "<tr>", '<th style="text-align:left">Check</th>', '<th style="text-align:right">Fix</th>',
        "</tr>", "</thead>", "<tbody>", "<tr>", '<td style="text-align:left"><code>gcs_model_file</code></td>',
        '<td style="text-align:right">re-upload <strong>the model</strong></td>', "</tr>", "<tr>",
        '<td style="text-align:left">a | b</td>', '<td style="text-align:right"><s>old</s></td>', "</tr>",
        "</tbody>", "</table>",
    ]) in page
    assert ('<pre><code class="language-bash">gcloud run services describe &quot;$S&quot; &lt;&lt;EOF | '
            "jq '.status'\n```\n</code></pre>") in page
    assert "<pre><code>indented &lt;code&gt;\n</code></pre>" in page


def test_headings_get_githubs_anchors_from_their_text_without_markup() -> None:
    """https://docs.github.com/en/get-started/writing-on-github/getting-started-with-writing-and-formatting-on-github/basic-writing-and-formatting-syntax#section-links:
    "Markup formatting is removed, leaving only the contents (for example, _italics_ becomes italics)", and a
    repeated anchor gets "a hyphen and an auto-incrementing integer"; an id already taken is skipped, as
    github-slugger does (https://github.com/Flet/github-slugger). Setext headings and closing #s count too."""
    book = Runbook.parse("demo", "\n".join([
        "# The _italics_ **bold** `K_SERVICE` [link](https://example.com) heading ##",
        "## Setup",
        "## Setup",
        "## Setup-1",
        "## Setup",
        "Rolled back",
        "-----------",
        "## !!!",
        "## &amp; Entities &copy;",
    ]))
    assert book.anchors == ("the-italics-bold-k_service-link-heading", "setup", "setup-1", "setup-1-1", "setup-2",
                            "rolled-back", "-entities-")
    assert book.title == "The italics bold K_SERVICE link heading"
    page = _Ids(book.html())
    assert page.ids == list(book.anchors), "a heading with nothing left for an id gets none"
    assert [href for href in page.hrefs if href.startswith("#")] == [f"#{anchor}" for anchor in book.anchors]
    assert "<h2>!!!</h2>" in book.html()


def test_a_link_goes_to_the_page_top_when_the_section_is_gone() -> None:
    page = PAGES.url("prediction-worker")
    expires = expiry(time.time())
    assert page == f"{BASE}/runbooks/prediction-worker?{TOKEN}={KEY.token('/runbooks/prediction-worker', expires)}"
    assert SignedPages(BASE + "/", KEY).url("prediction-worker") == page
    assert RUNBOOKS.link(PAGES, "prediction-worker", "no-such-step") == page
    assert RUNBOOKS.link(PAGES, "prediction-worker", "bigquery") == f"{page}#bigquery"


def test_a_token_opens_only_its_own_path() -> None:
    now = time.time()
    token = KEY.token("/runbooks/prediction-worker", expiry(now))
    assert KEY.check("/runbooks/prediction-worker", token, now) == "open"
    refused = {
        "a token for another runbook": ("/runbooks/nba-grading-service", token),
        "nor the index": ("/runbooks", token),
        "no token": ("/runbooks/prediction-worker", None),
        "a changed signature": ("/runbooks/prediction-worker", token[:-1] + ("A" if token[-1] != "A" else "B")),
        "a longer one": ("/runbooks/prediction-worker", token + "x"),
        "not ASCII: refused, not an error": ("/runbooks/prediction-worker", "é" * 43),
        "a token without its expiry (the links written before they expired)":
            ("/runbooks/prediction-worker", token.partition("_")[2]),
        "non-ASCII digits": ("/runbooks/prediction-worker", "١٢٣_" + token.partition("_")[2]),
    }
    for what, (path, offered) in refused.items():
        assert KEY.check(path, offered, now) == "refused", what
    rotated = LinkKey(secrets.token_bytes(32))
    assert rotated.check("/runbooks/prediction-worker", token, now) == "refused", "a new key voids every earlier link"


def test_a_link_opens_for_its_lifetime_then_says_it_expired() -> None:
    """A link is good for LINK_LIFETIME (30 days) from the day the bot wrote it, to that UTC day's end, so the links
    one message renders are the same all day; the day after, the key's own signature reads as expired."""
    written = datetime(2026, 3, 1, 15, 30, tzinfo=UTC).timestamp()
    pages = SignedPages(BASE, KEY, clock=lambda: written)
    token = parse_qs(urlsplit(pages.url("prediction-worker")).query)[TOKEN][0]
    assert token == parse_qs(urlsplit(SignedPages(BASE, KEY, clock=lambda: written + 8 * 3600)
                                      .url("prediction-worker")).query)[TOKEN][0], "the same link all that day"
    ends = datetime(2026, 3, 2, tzinfo=UTC) + LINK_LIFETIME
    assert KEY.check("/runbooks/prediction-worker", token, written) == "open"
    assert KEY.check("/runbooks/prediction-worker", token, ends.timestamp() - 1) == "open"
    assert KEY.check("/runbooks/prediction-worker", token, ends.timestamp()) == "expired"
    later = token.replace(token.partition("_")[0], str(int(ends.timestamp()) + 86_400), 1)
    assert KEY.check("/runbooks/prediction-worker", later, ends.timestamp()) == "refused", \
        "an expiry moved later breaks the signature"


def test_a_link_key_shorter_than_the_hash_is_refused() -> None:
    """RFC 2104 section 2: "the minimal recommended length for K is L bytes" (32 for SHA-256,
    https://www.ietf.org/rfc/rfc2104)."""
    with pytest.raises(ValueError, match="at least 32 bytes"):
        LinkKey(secrets.token_bytes(31))


def test_the_link_key_is_redacted_from_logs_and_never_shown() -> None:
    key = secrets.token_urlsafe(32)
    credentials = Credentials(bot_token="xoxb-" + secrets.token_hex(8), signing_secret=secrets.token_hex(16),
                              runbook_link_key=key)
    redact = Redactor()
    redact.add(credentials.values())
    assert redact(f"something printed {key} by accident") == f"something printed {REDACTED} by accident"
    assert key not in repr(credentials) and key not in repr(LinkKey(key.encode()))


def test_with_runbook_base_url_links_go_to_the_web_view_unsigned() -> None:
    base = "https://github.com/acme/chatops/blob/main/runbooks"
    config = parse_config(EXAMPLE + f"runbook_base_url: {base}\n")
    linker = RunbookLinker(config, RUNBOOKS, ExternalPages(base))
    assert linker("prediction-worker", "gcs_model_file") == f"{base}/prediction-worker.md#gcs-model-file"
    assert TOKEN not in str(linker("prediction-worker", None))
    assert "chatops-runbook-link-key" not in summary(config) and f"links to {base}" in summary(config)


def test_the_example_config_names_the_link_key_and_check_config_lists_it() -> None:
    config = load_config(ROOT / "chatops.example.yaml")
    assert config.secrets.runbook_link_key == "chatops-runbook-link-key"
    assert "chatops-runbook-link-key" in summary(config) and "signed links" in summary(config)


def test_a_runbook_base_url_that_is_not_a_web_address_is_a_config_problem() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(EXAMPLE + "runbook_base_url: github.com/acme/chatops/blob/main/runbooks\n")
    (problem,) = raised.value.problems
    assert problem.path == "runbook_base_url" and "https://github.com/OWNER/REPO/blob/main/runbooks" in problem.message
