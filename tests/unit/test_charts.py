"""A stage's chart: PNG bytes that decode, each panel with its threshold drawn as a line at the threshold's value,
and a bar per source coloured by whether it met it."""

from __future__ import annotations

import io
from dataclasses import replace

from matplotlib.colors import to_hex
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from bot.domain.analysis import Requests, Verdict
from bot.domain.rollout import Note, StageResult
from bot.engine.reporter import stage_evidence
from bot.render.chart_data import IncidentHistory, Measured, StageEvidence, Week, WeekDay
from bot.render.charts import incident_chart, incident_figure, stage_chart, stage_figure, week_chart, week_figure
from tests.unit.test_rollout import rollout

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


def test_the_stable_revision_is_drawn_beside_the_candidate_in_grey_whatever_its_figures() -> None:
    """The stable revision is shown for comparison, never judged: its bar is grey even where it misses a threshold
    (here its p99 does), and the title says which revision it is."""
    beside = replace(EVIDENCE, baseline=Measured("stable, Cloud Monitoring", 7600, 8, 900.0))
    figure = stage_figure(beside)
    rate, p99 = figure.axes[:2]
    assert [to_hex(p.get_facecolor()) for p in rate.patches] == ["#e01e5a", "#2eb67d", "#9e9ea6"]
    assert [to_hex(p.get_facecolor()) for p in p99.patches] == ["#2eb67d", "#e01e5a", "#9e9ea6"]
    assert [p.get_height() for p in p99.patches] == [420.0, 950.0, 900.0]
    assert rate.patches[2].get_height() == 100.0 * 7592 / 7600
    assert [t.get_text() for t in rate.get_xticklabels()][2] == "stable\nCloud Monitoring\n7600 req, 8 5xx"
    assert "(stable prediction-worker-00041-old, in grey)" in figure.get_suptitle()
    assert "in grey" not in stage_figure(EVIDENCE).get_suptitle(), "no grey bar, no mention of one"


def test_evidence_survives_the_outbox_row_it_travels_in() -> None:
    assert StageEvidence.from_json(EVIDENCE.to_json()) == EVIDENCE
    beside = replace(EVIDENCE, baseline=Measured("stable, Cloud Monitoring", 7600, 8, None))
    assert StageEvidence.from_json(beside.to_json()) == beside
    queued_before = {k: v for k, v in EVIDENCE.to_json().items() if k != "baseline"}
    assert StageEvidence.from_json(queued_before) == EVIDENCE, "a row queued by the previous version still draws"
    empty = StageEvidence("s", "c", "st", 5, "pass", 99.0, 800.0, 20, (Measured("request logs", 0, 0, None),))
    assert stage_chart(empty).startswith(b"\x89PNG")


def test_the_incident_chart_has_a_row_per_check_and_a_line_per_moment() -> None:
    history = IncidentHistory("prediction-worker", 7,
                              (("gcs_model_file", "2026-12-06T03:00:00+00:00", "2026-12-06T03:10:00+00:00"),
                               ("monitoring: 5xx", "2026-12-06T03:03:00+00:00", "2026-12-06T03:08:00+00:00")),
                              (("acknowledged", "2026-12-06T03:04:00+00:00"),
                               ("resolved", "2026-12-06T03:12:00+00:00")))
    axes = incident_figure(history).axes[0]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["gcs_model_file", "monitoring: 5xx"]
    assert [(p.get_x(), p.get_width()) for p in axes.patches] == [(0.0, 10.0), (3.0, 5.0)], "minutes from the start"
    assert [line.get_xdata()[0] for line in axes.get_lines()] == [4.0, 12.0]
    assert incident_chart(history).startswith(b"\x89PNG")


def test_the_week_chart_stacks_failures_on_deploys_and_draws_the_recovery_goal() -> None:
    week = Week(tuple(WeekDay(f"2026-12-0{d}", d % 3, 1 if d == 2 else 0, (30.0, 90.0) if d == 4 else ())
                      for d in range(1, 8)), 60.0)
    deploys, recovery = week_figure(week).axes[:2]
    heights = [p.get_height() for p in deploys.patches]
    assert heights[:7] == [1, 1, 0, 1, 2, 0, 1] and heights[7:] == [0, 1, 0, 0, 0, 0, 0]
    assert [line.get_ydata()[0] for line in recovery.get_lines()] == [60.0]
    assert sorted(recovery.collections[0].get_offsets()[:, 1].tolist()) == [30.0, 90.0]
    assert Week.from_json(week.to_json()) == week and week_chart(week).startswith(b"\x89PNG")


def test_a_judged_stages_note_brings_the_stable_revisions_figures_to_its_chart() -> None:
    candidate, stable = Requests(400, 12, 420.0), Requests(7600, 8, 300.0, "stable, Cloud Monitoring")
    verdict = Verdict("fail", (), measured=(candidate,), baseline=stable)
    judged = replace(rollout(), results=(StageResult(5, "fail", "success rate"),))
    evidence = stage_evidence(judged, Note("rolled_back", "rolled back", verdict))
    assert evidence is not None and evidence.measured == (Measured("request logs", 400, 12, 420.0),)
    assert evidence.baseline == Measured("stable, Cloud Monitoring", 7600, 8, 300.0)
    unmeasured = stage_evidence(judged, Note("rolled_back", "rolled back", replace(verdict, baseline=None)))
    assert unmeasured is not None and unmeasured.baseline is None
