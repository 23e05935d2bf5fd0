"""The emulator's file upload flow (sandbox/slack_files.py), as Slack documents it
(https://docs.slack.dev/reference/methods/files.getUploadURLExternal,
https://docs.slack.dev/reference/methods/files.completeUploadExternal), driven by slack_sdk unchanged: its
`files_upload_v2` works against it; bytes of another length than declared are refused; a file that was not completed
is never shared nor served; the bot's gateway finds a file it shared by its marked name."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.adapters.slack import SlackGateway
from sandbox.serving import stop
from tests.contract.slack_stage import DEPLOYS, VIEWER, Slack, api_error, slack_api

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    stage, listener = await slack_api()
    yield stage
    await stop(listener)


async def _served(url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as http:
        return await http.get(url, headers=headers)


async def test_slack_sdks_files_upload_v2_shares_the_file_into_the_thread_and_it_is_served(slack: Slack) -> None:
    client = slack.client()
    parent = await client.chat_postMessage(channel=DEPLOYS, text="rollout #1")
    done = await client.files_upload_v2(channel=DEPLOYS, thread_ts=parent["ts"], filename="stage.png", content=PNG,
                                        title="stage 5%", initial_comment="the evidence")
    assert done["file"] == {"id": done["file"]["id"], "title": "stage 5%"}, "the page's example answer: id, title"
    file = (await client.files_info(file=done["file"]["id"]))["file"]
    assert file["title"] == "stage 5%" and file["name"] == "stage.png" and file["size"] == len(PNG)
    assert file["permalink"].startswith("http://127.0.0.1:") and DEPLOYS in file["channels"]
    thread = await client.conversations_replies(channel=DEPLOYS, ts=parent["ts"])
    reply = thread["messages"][-1]
    assert reply["text"] == "the evidence" and [f["id"] for f in reply["files"]] == [file["id"]]
    seen = [s for s in slack.workspace.seen_by(DEPLOYS, VIEWER) if s.get("files")]
    assert seen[0]["kind"] == "reply" and seen[0]["files"][0]["permalink"] == file["permalink"]
    opened = await _served(file["permalink"])
    assert opened.status_code == 200 and opened.content == PNG and opened.headers["content-type"] == "image/png"
    assert (await _served(file["url_private"])).status_code == 403, "url_private needs the token"
    assert (await _served(file["url_private"], slack.workspace.bot_token)).content == PNG


async def test_bytes_of_another_length_than_declared_are_refused(slack: Slack) -> None:
    issued = await slack.client().files_getUploadURLExternal(filename="stage.png", length=len(PNG) + 1)
    async with httpx.AsyncClient() as http:
        answer = await http.post(issued["upload_url"], content=PNG)
    assert answer.status_code == 400
    body = await api_error(slack.client().files_completeUploadExternal(files=[{"id": issued["file_id"]}],
                                                                       channel_id=DEPLOYS))
    assert body["error"] == "file_not_found"
    assert (await api_error(slack.client().files_getUploadURLExternal(filename="x.png", length=0)))["error"] \
        == "missing_argument"


async def test_a_file_that_was_not_completed_is_neither_shared_nor_served(slack: Slack) -> None:
    client = slack.client()
    issued = await client.files_getUploadURLExternal(filename="draft.md", length=5)
    async with httpx.AsyncClient() as http:
        assert (await http.post(issued["upload_url"], content=b"draft")).text == "OK - 5"
    assert not [s for s in slack.workspace.seen_by(DEPLOYS, VIEWER) if s.get("files")]
    assert (await api_error(client.files_info(file=issued["file_id"])))["error"] == "file_not_found"
    origin = slack.url
    assert (await _served(f"{origin}/files/U07CHATOPS1/{issued['file_id']}/draft.md")).status_code == 404


async def test_uploading_needs_files_write() -> None:
    stage, listener = await slack_api(scopes=("chat:write",))
    try:
        body = await api_error(stage.client().files_getUploadURLExternal(filename="a.png", length=3))
        assert (body["error"], body["needed"]) == ("missing_scope", "files:write")
    finally:
        await stop(listener)


async def test_the_gateway_uploads_once_and_finds_the_file_again_by_its_marked_name(slack: Slack) -> None:
    gateway = SlackGateway(slack.workspace.bot_token, base_url=f"{slack.url}/api/")
    try:
        parent = await gateway.send(DEPLOYS, "rollout #2", marker=1)
        held: list[str] = []

        async def hold() -> None:
            held.append("renewed")

        file_id = await gateway.upload(DEPLOYS, parent.ts, "stage.png", "stage 25%", PNG, marker=7,
                                       before_sharing=hold)
        assert held == ["renewed"]
        assert slack.workspace.files.files[file_id].name == "stage-7.png"
        found = await gateway.find_uploaded(DEPLOYS, "stage.png", 7, thread_ts=parent.ts, oldest=time.time() - 60)
        assert found == file_id
        assert await gateway.find_uploaded(DEPLOYS, "stage.png", 8, thread_ts=parent.ts,
                                           oldest=time.time() - 60) is None
    finally:
        await gateway.aclose()
