"""Outside text made safe for Slack's mrkdwn (bot/render/mrkdwn.py): Slack's three control characters escaped, and
only those (https://api.slack.com/reference/surfaces/formatting#escaping), however often a text is escaped."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.render.mrkdwn import echoed, escape, printable

_ENTITY = re.compile(r"<[^<>]*>")
"""What Slack reads as a link, a mention or a broadcast."""


def test_the_three_control_characters_are_escaped_as_slack_documents() -> None:
    """Slack's own example: "A user types: Hello & <world>" is sent as "Hello &amp; &lt;world&gt;"
    (https://api.slack.com/docs/message-formatting)."""
    assert escape("Hello & <world> 🌊") == "Hello &amp; &lt;world&gt; 🌊"
    assert escape("payment failed <!channel>") == "payment failed &lt;!channel&gt;"
    assert escape("*bold* _it_ `code` ~x~ \"q\" 'a'") == "*bold* _it_ `code` ~x~ \"q\" 'a'", "nothing else is touched"


def test_escaping_twice_reads_as_once() -> None:
    """Adapters escape outside text where it enters, and renderers escape fields that hold nothing else."""
    for text in ("a <b> & c", "&lt;!here&gt;", "&amp;lt;", "AT&T", "&", "&gt", "&lt;&gt;&amp;"):
        assert escape(escape(text)) == escape(text), text
    assert escape("AT&T &amp; friends") == "AT&amp;T &amp; friends"


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.text(alphabet=st.sampled_from(list("<>&!@#|;ltgamp ^hrecn")), max_size=40))
def test_no_escaped_text_holds_a_control_sequence(text: str) -> None:
    once = escape(text)
    assert "<" not in once and ">" not in once and _ENTITY.search(once) is None
    assert re.search(r"&(?!(?:amp|lt|gt);)", once) is None, "every & starts one of the three entities"
    assert escape(once) == once


def test_what_someone_typed_comes_back_printable() -> None:
    assert printable("line\none\ttab\r\nend") == "line one tab end"
    assert printable("bell\x07 esc\x1b[2J del\x7f c1\x85") == "bell esc[2J del c1"
    assert printable("\u202eevil\u2066x\u2069") == "evilx", "directional overrides and isolates"
    assert printable("prediction-worker 🚀 naïve") == "prediction-worker 🚀 naïve"


def test_an_echo_cannot_leave_its_code_span_or_ping() -> None:
    assert echoed("<!channel>`\x07 x") == "&lt;!channel&gt;' x"
