"""The bytes of a file the outbox uploads, from what its row holds (bot/adapters/outbox.py `Message.file`)."""

from __future__ import annotations

from typing import Any

from bot.render.chart_data import IncidentHistory, StageEvidence, Week
from bot.render.charts import incident_chart, stage_chart, week_chart

CHARTS = {"stage": lambda data: stage_chart(StageEvidence.from_json(data)),
          "incident": lambda data: incident_chart(IncidentHistory.from_json(data)),
          "week": lambda data: week_chart(Week.from_json(data))}


def file_content(file: dict[str, Any]) -> bytes:
    """Markdown as UTF-8, or a chart drawn now (CPU-bound: call it in a thread). KeyError for an unknown chart."""
    if "markdown" in file:
        return str(file["markdown"]).encode()
    return CHARTS[str(file["chart"])](file["data"])
