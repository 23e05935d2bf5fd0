"""A stage's chart: PNG bytes that decode, each panel with its threshold drawn as a line at the threshold's value,
and a bar per source coloured by whether it met it."""

from __future__ import annotations

import io

from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from bot.render.chart_data import Measured, StageEvidence
from bot.render.charts import stage_chart, stage_figure

EVIDENCE = StageEvidence("prediction-worker", "prediction-worker-00042-new", "prediction-worker-00041-old", 25,
                         "fail", 99.0, 800.0, 20,
                         (Measured("request logs", 400, 12, 420.0), Measured("Cloud Monitoring", 380, 2, 950.0)))


def test_the_chart_is_a_png_that_decodes() -> None:
    png = stage_chart(EVIDENCE)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.size == (800, 360)


def test_each_panel_draws_its_threshold_and_colours_each_source_by_it() -> None:
    rate, p99 = stage_figure(EVIDENCE).axes[:2]
    assert [line.get_ydata()[0] for line in rate.get_lines() if isinstance(line, Line2D)] == [99.0]
    assert [line.get_ydata()[0] for line in p99.get_lines()] == [800.0]
    assert [t.get_text() for t in rate.get_legend().get_texts()] == ["threshold ≥ 99%"]
    assert [t.get_text() for t in p99.get_legend().get_texts()] == ["threshold ≤ 800 ms"]
    rate_bars = [to_hex(p.get_facecolor()) for p in rate.patches if isinstance(p, Rectangle)]
    p99_bars = [to_hex(p.get_facecolor()) for p in p99.patches if isinstance(p, Rectangle)]
    assert rate_bars == ["#e01e5a", "#2eb67d"], "97% of the logs misses 99%; 99.5% of Monitoring meets it"
    assert p99_bars == ["#2eb67d", "#e01e5a"]


def test_evidence_survives_the_outbox_row_it_travels_in() -> None:
    assert StageEvidence.from_json(EVIDENCE.to_json()) == EVIDENCE
    empty = StageEvidence("s", "c", "st", 5, "pass", 99.0, 800.0, 20, (Measured("request logs", 0, 0, None),))
    assert stage_chart(empty).startswith(b"\x89PNG")
