"""Charts and timelines in threads: a judged stage shares its evidence as a PNG in the rollout's thread, through
Slack's upload flow, and the file's link opens as that PNG."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from bot.config import Config
from tests.scenario.harness import Scenario, fast, scenario

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(fast(example_config, min_requests=5), tmp_path_factory.mktemp("charts"),
                        requests_per_s=60) as running:
        yield running


async def test_each_judged_stage_shares_its_chart_in_the_rollouts_thread_and_it_opens_as_a_png(
        fleet: Scenario) -> None:
    service = "prediction-coordinator"
    await fleet.command("oncall", f"/deploy {service} tag=v3")
    done = await fleet.rollout_state(service, "promoted", "rolled_back", "paused", timeout=60)
    assert done.rollout.state.value == "promoted", done.rollout.reason
    thread = await fleet.thread(done)
    charts = [f for m in thread for f in m.get("files") or []]
    stages = [r.percent for r in done.rollout.results]
    assert [c["title"] for c in charts] == [f"{service} stage {p}%: the evidence" for p in stages], \
        "one chart per judged stage, in order"
    passed_at = next(i for i, m in enumerate(thread) if f"stage {stages[0]}% passed" in m["text"])
    first_chart = next(i for i, m in enumerate(thread) if m.get("files"))
    assert first_chart == passed_at + 1, "the chart follows the note that judged its stage"
    opened = await fleet.http.get(charts[0]["permalink"])
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/png"
    assert opened.content.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(opened.content))
    image.load()
    assert image.size[0] >= 600 and image.size[1] >= 300
