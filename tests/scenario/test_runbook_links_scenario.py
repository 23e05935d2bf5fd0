"""Runbook links that only Slack's readers can open: a link the bot posted opens its page; the same page without
the link's token, with a changed token, or with another runbook's token gets 403; a link past its 30 days gets a
403 page that says it expired and where a fresh one is; a new version of the key's secret voids every earlier link at
the next start; a bot without its key does not start.

The key lives only in the emulated Secret Manager. Reading `latest` means "the most recently created
SecretVersion" (https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access),
so adding a version is how an operator rotates it."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from google.cloud import secretmanager_v1

from bot.adapters.secrets import SecretsUnavailable, fetch_credentials
from bot.checksum import crc32c
from bot.config import Config, load_config, parse_config
from bot.environment import Environment
from bot.runbook_links import LINK_LIFETIME, LinkKey, expiry, page_path
from sandbox.blockkit_text import text_of
from sandbox.runner import BotProcess, bot_environment, free_port, sandbox_config
from sandbox.world import World, WorldOptions
from tests.conftest import EXAMPLE_CONFIG, also_granted, client_options, google_credentials
from tests.contract.test_serve_startup import config_with, start
from tests.scenario.harness import Scenario, scenario

SERVICE = "prediction-worker"
CHECK = "gcs_model_file"
_RUNBOOK_LINK = re.compile(r"<([^|>]+)\|runbook>")


@pytest.fixture(scope="module")
async def fleet(example_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scenario]:
    async with scenario(example_config, tmp_path_factory.mktemp("runbook-links")) as running:
        yield running


def secret_client(world: World) -> secretmanager_v1.SecretManagerServiceClient:
    return secretmanager_v1.SecretManagerServiceClient(transport="rest", credentials=google_credentials(world),
                                                       client_options=client_options(world.url("secret_manager")))


def link_key(world: World) -> str:
    """Read as an operator with secretAccessor would; the world keeps it nowhere else."""
    name = f"projects/{world.config.project}/secrets/{world.config.secrets.runbook_link_key}/versions/latest"
    return secret_client(world).access_secret_version(name=name).payload.data.decode()


async def health_report_link(http: httpx.AsyncClient, world: World, after: float) -> str:
    """Type `/health prediction-worker` while its model-file check fails; the runbook link in the bot's answer."""
    revision = str(world.run.services[SERVICE].traffic_statuses[0]["revision"])
    control = world.url("control")
    (await http.patch(f"{control}/revisions/{revision}", json={"failing_checks": [CHECK]})).raise_for_status()
    try:
        answer = await http.post(f"{world.url('slack_user')}/commands", json={
            "user": "oncall", "channel": "deploys", "command": "/health", "text": SERVICE})
        assert answer.json()["status"] == 200
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen = (await http.get(f"{world.url('slack_user')}/messages",
                                   params={"channel": "deploys", "user": "oncall"})).json()
            for message in seen:
                if float(message["ts"]) > after and message["kind"] == "message" \
                        and message["text"].startswith(f"{SERVICE} is"):
                    links = _RUNBOOK_LINK.findall(text_of(message))
                    assert links, "the report links the failing check's runbook step"
                    return str(links[0])
            await asyncio.sleep(0.05)
        raise AssertionError("no health report within 15 s")
    finally:
        await http.patch(f"{control}/revisions/{revision}", json={"failing_checks": []})


def is_from_slack_refusal(response: httpx.Response) -> bool:
    return response.status_code == 403 and "Open this runbook from Slack" in response.text


async def test_a_link_from_the_bots_health_report_opens_its_page_at_the_step(fleet: Scenario) -> None:
    link = await health_report_link(fleet.http, fleet.world, float(await fleet.latest_ts()))
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{fleet.bot_url}/runbooks/{SERVICE}"
    assert parts.query.startswith("sig=") and parts.fragment == "gcs-model-file"
    page = await fleet.http.get(link)
    assert page.status_code == 200 and 'id="gcs-model-file"' in page.text
    assert page.headers["referrer-policy"] == "no-referrer", \
        "the token stays out of the Referer of links followed out of the page " \
        "(https://developer.mozilla.org/Web/HTTP/Headers/Referrer-Policy)"


async def test_the_page_without_its_token_with_a_changed_one_or_another_runbooks_gets_403(fleet: Scenario) -> None:
    link = await health_report_link(fleet.http, fleet.world, float(await fleet.latest_ts()))
    parts = urlsplit(link)
    page = f"{parts.scheme}://{parts.netloc}{parts.path}"
    token = parts.query.removeprefix("sig=")
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    attempts = {
        "no token": page,
        "empty token": f"{page}?sig=",
        "changed token": f"{page}?sig={changed}",
        "token in another parameter": f"{page}?token={token}",
        "another runbook with this token": f"{fleet.bot_url}/runbooks/nba-grading-service?sig={token}",
        "the index with this token": f"{fleet.bot_url}/runbooks?sig={token}",
        "a runbook that does not exist": f"{fleet.bot_url}/runbooks/no-such-service?sig={token}",
    }
    answers = {what: await fleet.http.get(url) for what, url in attempts.items()}
    for what, answer in answers.items():
        assert is_from_slack_refusal(answer), what
    assert len({answer.text for answer in answers.values()}) == 1, "one answer for all: no detail leaks"
    refused = answers["no token"].text
    assert "gcs-model-file" not in refused and SERVICE not in refused and "nba-grading-service" not in refused
    assert (await fleet.http.get(link)).status_code == 200, "the link itself still opens"


async def test_a_link_past_its_time_says_it_expired_and_where_a_fresh_one_is(fleet: Scenario) -> None:
    """A link the bot's key signed, whose time (30 days from the day it was written) has passed: 403 with a page that
    says so and how to get a fresh link (the latest alert, or `/health <service>`, whose report links the runbook).
    The expiry is signed: moved later by hand, the link is just refused. Signed here with the key from Secret
    Manager and an expiry already past, which is what the bot's own link reads like 30 days on."""
    link = await health_report_link(fleet.http, fleet.world, float(await fleet.latest_ts()))
    assert (await fleet.http.get(link)).status_code == 200, "a link the bot emits today opens"
    path = page_path(SERVICE)
    key = LinkKey((await asyncio.to_thread(link_key, fleet.world)).encode())
    written_long_ago = time.time() - LINK_LIFETIME.total_seconds() - 2 * 86_400
    old = key.token(path, expiry(written_long_ago))
    expired = await fleet.http.get(f"{fleet.bot_url}{path}?sig={old}#gcs-model-file")
    assert expired.status_code == 403 and "This link has expired" in expired.text
    assert "opens for 30 days" in expired.text and "/health &lt;service&gt;" in expired.text
    assert "gcs-model-file" not in expired.text and expired.headers["referrer-policy"] == "no-referrer"
    stretched = old.replace(old.partition("_")[0], str(int(time.time()) + 86_400), 1)
    assert is_from_slack_refusal(await fleet.http.get(f"{fleet.bot_url}{path}?sig={stretched}")), \
        "an expiry moved later is a tampered link"
    fresh = await health_report_link(fleet.http, fleet.world, float(await fleet.latest_ts()))
    assert (await fleet.http.get(fresh)).status_code == 200, "the fresh link the page points to opens"


async def test_the_link_key_never_reaches_slack(fleet: Scenario) -> None:
    await health_report_link(fleet.http, fleet.world, float(await fleet.latest_ts()))
    key = await asyncio.to_thread(link_key, fleet.world)
    for channel in fleet.world.config.slack.channels:
        assert key not in json.dumps(await fleet.messages("oncall", channel))
    assert key not in json.dumps(fleet.world.endpoints())


async def test_links_outlive_restarts_until_the_key_gets_a_new_version(tmp_path: Path) -> None:
    """A link in an old message keeps opening across restarts; after a new version of the key's secret and a
    restart it gets 403, and the bot's new links open. The real `chatops serve`, so its log is checked too."""
    config_path = sandbox_config(EXAMPLE_CONFIG, tmp_path, window_s=0)
    port = free_port()
    world = World(load_config(config_path), WorldOptions(bot_urls=[f"http://127.0.0.1:{port}"], start_ms=60,
                                                         route_ms=20, slack_rate_per_s=50, slack_burst=50))
    await world.start()
    env = bot_environment(world, f"sqlite:///{tmp_path / 'chatops.db'}")
    log = tmp_path / "bot.log"
    bot = BotProcess(config_path, port, env, log)
    keys = [await asyncio.to_thread(link_key, world)]
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await bot.ready()
            old = await health_report_link(http, world, 0)
            assert (await http.get(old)).status_code == 200

            bot.stop()
            bot = BotProcess(config_path, port, env, log)
            await bot.ready()
            assert (await http.get(old)).status_code == 200, "a restart with the same key keeps old links working"

            secret = f"projects/{world.config.project}/secrets/{world.config.secrets.runbook_link_key}"
            rotated = "rotated-" + keys[0]
            with also_granted(world, "roles/secretmanager.secretVersionAdder"):  # the operator rotating it
                await asyncio.to_thread(secret_client(world).add_secret_version, parent=secret, payload={
                    "data": rotated.encode(), "data_crc32c": crc32c(rotated.encode())})
            keys.append(await asyncio.to_thread(link_key, world))
            assert keys[1] == rotated
            assert (await http.get(old)).status_code == 200, "the running bot verifies with the key it read at start"

            bot.stop()
            bot = BotProcess(config_path, port, env, log)
            await bot.ready()
            assert is_from_slack_refusal(await http.get(old)), "the new key voids the old links"
            new = await health_report_link(http, world, time.time() - 1)
            assert new != old and (await http.get(new)).status_code == 200
    finally:
        bot.stop()
        await world.stop()
    written = log.read_text(errors="replace")
    assert all(key not in written for key in keys)


async def test_a_missing_link_key_stops_start_up_with_one_line_naming_it(world: World, tmp_path: Path) -> None:
    config = config_with(tmp_path, EXAMPLE_CONFIG.read_text().replace(
        "runbook_link_key: chatops-runbook-link-key", "runbook_link_key: chatops-links-key"))
    env = bot_environment(world, f"sqlite:///{tmp_path / 'db.sqlite'}")
    result = await asyncio.to_thread(start, config, env, tmp_path)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["severity"] for line in lines] == ["CRITICAL"]
    message = lines[0]["message"]
    assert "secret 'chatops-links-key'" in message and "roles/secretmanager.secretAccessor" in message
    assert "gcloud secrets create chatops-links-key" in message


async def test_a_link_key_shorter_than_the_hash_is_refused_at_start(world: World, example_config: Config) -> None:
    """RFC 2104 section 2: "the minimal recommended length for K is L bytes" (32 for SHA-256,
    https://www.ietf.org/rfc/rfc2104)."""
    world.secret_manager.put("short-link-key", b"x" * 31)
    config = example_config.model_copy(update={"secrets": example_config.secrets.model_copy(
        update={"runbook_link_key": "short-link-key"})})
    env = Environment.from_env(bot_environment(world, "sqlite://"))
    with pytest.raises(SecretsUnavailable, match="secret 'short-link-key' is too short to sign runbook links"):
        await asyncio.to_thread(fetch_credentials, config, env)


async def test_with_runbook_base_url_links_go_there_and_the_bots_pages_open_to_no_one(tmp_path: Path) -> None:
    base = "https://github.com/acme/chatops/blob/main/runbooks"
    config = parse_config(EXAMPLE_CONFIG.read_text() + f"runbook_base_url: {base}\n")
    async with scenario(config, tmp_path) as running:
        key_name = config.secrets.runbook_link_key
        assert key_name not in [name for _, name in running.world.secret_manager.accesses], \
            "the bot starts without reading the link key"
        link = await health_report_link(running.http, running.world, float(await running.latest_ts()))
        assert link == f"{base}/{SERVICE}.md#gcs-model-file"
        path = page_path(SERVICE)
        signed = LinkKey((await asyncio.to_thread(link_key, running.world)).encode()).token(path, expiry(time.time()))
        for url in (f"{running.bot_url}{path}", f"{running.bot_url}{path}?sig={signed}"):
            assert is_from_slack_refusal(await running.http.get(url)), url
