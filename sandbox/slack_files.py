"""Slack's file upload flow, as https://docs.slack.dev/reference/methods/files.getUploadURLExternal describes it:
1. `files.getUploadURLExternal` (`filename`, `length`, both required) answers an `upload_url` and a `file_id`;
2. the file's bytes are POSTed to that URL, "as raw bytes or ... multipart form encoded"; "Slack will return HTTP 200
   if the upload is successful" (slack_sdk reads the answer as text/plain: `OK - <length>`);
3. `files.completeUploadExternal` (https://docs.slack.dev/reference/methods/files.completeUploadExternal) takes
   `files` ("Array of file ids and their corresponding (optional) titles"), `channel_id` ("If not specified the file
   will be private"), `thread_ts` ("Never use a reply's ts value; use its parent instead") and `initial_comment`
   ("The message text introducing the file"), and shares the files as one message carrying them in `files`; it
   answers `files` with each id and title, as the page's example does.
Both methods need `files:write` and are Tier 4 (their pages' "Rate limits" fact). `files.info`
(https://docs.slack.dev/reference/methods/files.info, `files:read`, Tier 4) describes a file.

Files are kept in memory and served on the sandbox's own 127.0.0.1 address: `url_private` needs the bot token as a
bearer, as Slack's does ("url_private ... requires authentication", https://docs.slack.dev/messaging/working-with-
files); `permalink` is what a person opens, served without a token (assumption: Slack shows it to a signed-in
member; the sandbox's person is whoever can reach 127.0.0.1).

Assumptions, where the pages are silent: bytes whose count differs from the declared `length` are refused with HTTP
400 and the file stays unuploaded; completing a file whose bytes never arrived, or one already completed, is
`file_not_found`; `filename` longer than 255 characters is `invalid_arguments`.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from sandbox.slack_errors import SlackError

if TYPE_CHECKING:
    from sandbox.slack_api import Args
    from sandbox.slack_workspace import Workspace

Json = dict[str, Any]
UPLOAD_PATH = "/upload/v1/{token}"
PRIVATE_PATH = "/files-pri/{team}-{file_id}/{name}"
PERMALINK_PATH = "/files/{user}/{file_id}/{name}"
_MAX_NAME = 255


@dataclass
class StoredFile:
    id: str
    name: str
    length: int
    user: str
    created: int
    origin: str
    alt_txt: str = ""
    title: str = ""
    content: bytes | None = None  # None until the bytes arrive
    shares: list[tuple[str, str, str | None]] = field(default_factory=list)  # (channel, ts, thread_ts)

    @property
    def completed(self) -> bool:
        return bool(self.title) or bool(self.shares)


class FileStore:
    """Every file of the workspace, by id and by upload token."""

    def __init__(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self._uploads: dict[str, str] = {}  # upload token -> file id
        self._completed: set[str] = set()

    def start(self, name: str, length: int, user: str, origin: str, alt_txt: str) -> tuple[StoredFile, str]:
        stored = StoredFile("F" + secrets.token_hex(5).upper(), name, length, user, int(time.time()), origin, alt_txt)
        token = secrets.token_urlsafe(24)
        self.files[stored.id] = stored
        self._uploads[token] = stored.id
        return stored, token

    def receive(self, token: str, content: bytes) -> StoredFile:
        """KeyError for an unknown or spent URL; ValueError when the bytes are not the declared length."""
        stored = self.files[self._uploads[token]]
        if len(content) != stored.length:
            raise ValueError(f"expected {stored.length} bytes, received {len(content)}")
        stored.content = content
        del self._uploads[token]
        return stored

    def complete(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None or stored.content is None or file_id in self._completed:
            raise SlackError("file_not_found")
        self._completed.add(file_id)
        return stored

    def shared(self) -> list[StoredFile]:
        """Completed files, oldest first: what the console lists."""
        return [self.files[i] for i in self._completed]


def private_url(stored: StoredFile, team: str) -> str:
    return stored.origin + PRIVATE_PATH.format(team=team, file_id=stored.id, name=stored.name)


def permalink(stored: StoredFile) -> str:
    return stored.origin + PERMALINK_PATH.format(user=stored.user, file_id=stored.id, name=stored.name)


def file_json(stored: StoredFile, team: str, channel_names: dict[str, str]) -> Json:
    """Slack's file object (https://docs.slack.dev/reference/objects/file-object), the fields a hosted file has."""
    mimetype = mimetypes.guess_type(stored.name)[0] or "application/octet-stream"
    extension = stored.name.rsplit(".", 1)[-1].lower() if "." in stored.name else "binary"
    public: dict[str, list[Json]] = {}
    for channel, ts, thread_ts in stored.shares:
        share: Json = {"ts": ts, "channel_name": channel_names.get(channel, channel), "team_id": team,
                       "share_user_id": stored.user, "reply_count": 0, "reply_users": [], "reply_users_count": 0}
        if thread_ts:
            share["thread_ts"] = thread_ts
        public.setdefault(channel, []).append(share)
    url = private_url(stored, team)
    return {
        "id": stored.id, "created": stored.created, "timestamp": stored.created, "name": stored.name,
        "title": stored.title or stored.name, "mimetype": mimetype, "filetype": extension,
        "pretty_type": extension.upper(), "user": stored.user, "user_team": team, "editable": False,
        "size": stored.length, "mode": "hosted", "is_external": False, "external_type": "", "is_public": True,
        "public_url_shared": False, "display_as_bot": False, "username": "", "url_private": url,
        "url_private_download": url + "?download=1", "permalink": permalink(stored),
        "permalink_public": f"{stored.origin}/{team}-{stored.id}", "alt_txt": stored.alt_txt,
        "comments_count": 0, "is_starred": False, "has_rich_preview": False, "file_access": "visible",
        "channels": list(public), "groups": [], "ims": [], "shares": {"public": public} if public else {},
    }


def _bot(workspace: Workspace) -> str:
    return workspace.user_named("chatops").id


def _channel_names(workspace: Workspace) -> dict[str, str]:
    return {c.id: c.name for c in workspace.channels.values()}


def get_upload_url(workspace: Workspace, args: Args) -> Json:
    name, length = args.text("filename") or "", args.text("length") or ""
    if not name or not length:
        raise SlackError("invalid_arguments")
    try:
        size = int(length)
    except ValueError:
        raise SlackError("invalid_arguments") from None
    if size <= 0:
        raise SlackError("missing_argument")  # "Typically only occurs when the `length` provided is 0"
    if len(name) > _MAX_NAME:
        raise SlackError("invalid_arguments")
    stored, token = workspace.files.start(name, size, _bot(workspace), args.origin, args.text("alt_txt") or "")
    return {"upload_url": args.origin + UPLOAD_PATH.format(token=token), "file_id": stored.id}


def _file_list(args: Args) -> list[Json]:
    value = json_list(args.value("files"))
    if not isinstance(value, list) or not value:
        raise SlackError("invalid_arguments")
    if not all(isinstance(item, dict) and isinstance(item.get("id"), str) for item in value):
        raise SlackError("invalid_arguments")
    return value


def complete_upload(workspace: Workspace, args: Args) -> Json:
    wanted = _file_list(args)
    channel = args.text("channel_id") or ""
    if channel and channel not in workspace.channels:
        raise SlackError("channel_not_found")
    for item in wanted:  # every id checked before any is completed: a bad list changes nothing
        stored = workspace.files.files.get(item["id"])
        if stored is None or stored.content is None:
            raise SlackError("file_not_found")
    files = [workspace.files.complete(item["id"]) for item in wanted]
    for stored, item in zip(files, wanted, strict=True):
        stored.title = str(item.get("title") or stored.name)
    team, names = workspace.team_id, _channel_names(workspace)
    if channel:
        thread_ts = args.text("thread_ts") or None
        placeholder = [{"id": f.id} for f in files]
        message = workspace.post(channel, _bot(workspace), args.text("initial_comment") or "", thread_ts=thread_ts,
                                 files=placeholder)
        for stored in files:
            stored.shares.append((channel, message.ts, message.thread_ts if message.is_reply else None))
        message.files = [file_json(f, team, names) for f in files]
    return {"files": [{"id": f.id, "title": f.title} for f in files]}


def files_info(workspace: Workspace, args: Args) -> Json:
    stored = workspace.files.files.get(args.text("file") or "")
    if stored is None or stored.id not in {f.id for f in workspace.files.shared()}:
        raise SlackError("file_not_found")
    return {"file": file_json(stored, workspace.team_id, _channel_names(workspace)), "comments": [],
            "response_metadata": {"next_cursor": ""}}


def add_file_routes(app: web.Application, workspace: Workspace) -> None:
    """The upload URL and the two URLs a shared file is read from."""

    async def upload(request: web.Request) -> web.Response:
        if request.content_type == "multipart/form-data":
            content = b""
            async for part in (await request.multipart()):
                if isinstance(part, BodyPartReader) and part.filename is not None:
                    content = bytes(await part.read())
        else:
            content = await request.read()
        try:
            workspace.files.receive(request.match_info["token"], content)
        except KeyError:
            return web.Response(status=404, text="upload URL not found", content_type="text/plain")
        except ValueError as exc:
            return web.Response(status=400, text=str(exc), content_type="text/plain")
        return web.Response(text=f"OK - {len(content)}", content_type="text/plain")

    def shared(file_id: str, name: str) -> StoredFile:
        stored = workspace.files.files.get(file_id)
        if stored is None or stored.name != name or stored.id not in {f.id for f in workspace.files.shared()}:
            raise web.HTTPNotFound()
        return stored

    def serve(stored: StoredFile) -> web.Response:
        assert stored.content is not None
        mimetype = mimetypes.guess_type(stored.name)[0] or "application/octet-stream"
        return web.Response(body=stored.content, content_type=mimetype)

    async def private(request: web.Request) -> web.Response:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(bearer, workspace.bot_token):
            raise web.HTTPForbidden()
        return serve(shared(request.match_info["file_id"], request.match_info["name"]))

    async def link(request: web.Request) -> web.Response:
        return serve(shared(request.match_info["file_id"], request.match_info["name"]))

    async def archived(request: web.Request) -> web.Response:
        """What chat.getPermalink's link opens: the message, as conversations.history would show it."""
        digits = request.match_info["digits"]
        ts = f"{digits[:-6]}.{digits[-6:]}"
        try:
            message = workspace.message(request.match_info["channel"], ts)
        except SlackError:
            raise web.HTTPNotFound() from None
        return web.json_response({"channel": message.channel, "ts": message.ts, "user": message.user,
                                  "text": message.text, "thread_ts": message.thread_ts, "files": message.files})

    app.router.add_post(UPLOAD_PATH, upload)
    app.router.add_get("/archives/{channel}/p{digits:[0-9]{7,}}", archived)
    app.router.add_get(PRIVATE_PATH, private)
    app.router.add_get(PERMALINK_PATH, link)


def json_list(value: object) -> object:
    """`files` arrives as a JSON string in forms and query strings, as an array in JSON bodies."""
    if not isinstance(value, str):
        return value
    try:
        parsed: object = json.loads(value)
    except json.JSONDecodeError:
        raise SlackError("invalid_arguments") from None
    return parsed
