"""The world registers Cloud Logging's and Cloud Monitoring's published figures as limit groups, serves them on
the control API, and a PATCH changes what the running emulators enforce."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from sandbox.world import World
from tests.conftest import google_auth


@pytest.fixture
async def control(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """The control API; the figures a test changes are put back afterwards, as the world is shared."""
    async with httpx.AsyncClient(base_url=world.url("control")) as http:
        before = (await http.get("/limits")).json()
        yield http
        for group in ("logging", "monitoring"):
            await http.patch(f"/limits/{group}", json=before[group])


def test_the_world_starts_with_the_published_figures(world: World) -> None:
    """https://cloud.google.com/logging/quotas#api-limits (60 entries.list a minute); Cloud Run's request metrics,
    https://cloud.google.com/monitoring/api/metrics_gcp ("Sampled every 60 seconds. After sampling, data is not
    visible for up to 180 seconds."); Aggregation.alignment_period ("at least 60 seconds"). The 2 s ingestion
    delay is the sandbox's assumption."""
    figures = world.limits.to_json()
    assert figures["logging"] == {"reads_per_minute": 60, "ingestion_delay_s": 2.0}
    assert figures["monitoring"] == {"min_alignment_period_s": 60.0, "sample_period_s": 60.0,
                                     "visibility_delay_s": 180.0, "min_visibility_delay_s": 0.0, "delay_seed": 0}


async def test_a_patch_changes_what_the_running_emulators_enforce(world: World, control: httpx.AsyncClient) -> None:
    listing: dict[str, Any] = {"resourceNames": [f"projects/{world.config.project}"], "filter": "textPayload:none"}
    series = {"filter": 'metric.type = "run.googleapis.com/request_count"',
              "interval.endTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "aggregation.alignmentPeriod": "60s", "aggregation.perSeriesAligner": "ALIGN_DELTA"}
    assert (await control.patch("/limits/logging", json={"reads_per_minute": 0})).json()["reads_per_minute"] == 0
    assert (await control.patch("/limits/monitoring", json={"min_alignment_period_s": 120})).status_code == 200
    async with httpx.AsyncClient(headers=google_auth(world)) as http:
        logs = await http.post(f"{world.url('logging')}/v2/entries:list", json=listing)
        metrics = await http.get(f"{world.url('monitoring')}/v3/projects/{world.config.project}/timeSeries",
                                 params=series)
    assert (logs.status_code, logs.json()["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert logs.json()["error"]["details"][0]["metadata"]["quota_limit_value"] == "0"
    assert metrics.status_code == 400
    assert metrics.json()["error"]["message"].endswith("The alignment period must be greater than or equal to "
                                                       "2 minutes.")
