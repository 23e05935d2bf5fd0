"""Slack's Web API for the methods chatops calls, at `POST|GET /api/<method>`, so that an unmodified
`WebClient(base_url=f"{url}/api/")` or `AsyncWebClient` works against it.

Arguments are read as Slack reads them: query string, form body (url-encoded or multipart, where `blocks`
and `attachments` are JSON strings) and, with a bearer token only, a JSON body. A token in the query string
is refused `invalid_auth`, as Slack refuses it for apps created after 24 Feb 2021 (the changelog,
https://api.slack.com/changelog/2020-11-no-more-tokens-in-querystrings-for-newly-created-apps, names no
error; apps that kept sending one report `invalid_auth`: https://github.com/HubSpot/slack-client/issues/215,
https://github.com/palanik/slack-php/issues/9). Errors are HTTP 200 with `{"ok": false, "error": ...}`,
except a rate-limited call (429 with Retry-After, per method per workspace per app: slack_limits.py) and an
unknown method (404). A call without its scope is `missing_scope` (slack_scopes.py).

Responses follow Slack's OpenAPI spec (tests/contract/specs) where it is stricter than today's Slack:
no `edited` or `app_id` on messages, no `blocks` echoed by chat.update, and conversations.replies gives the
thread fields the spec lists (text, not blocks). Where the spec would forbid what slack_sdk relies on
(`response_metadata.next_cursor` for paging history, `ratelimited`, `invalid_blocks`), Slack's wire wins.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from sandbox.faults import Faults
from sandbox.slack_errors import MissingScope, RateLimited, SlackError
from sandbox.slack_files import add_file_routes, complete_upload, files_info, get_upload_url
from sandbox.slack_home import views_publish
from sandbox.slack_scopes import ACCEPTED, needed_scope
from sandbox.slack_socket import OPEN_METHOD, SocketMode, register
from sandbox.slack_views import METHODS as VIEW_METHODS
from sandbox.slack_workspace import APP_ID, BOT, BOT_ID, Json, Message, User, Workspace

WORKSPACE = web.AppKey("workspace", Workspace)
FAULTS = web.AppKey("faults", Faults)
SOCKET_MODE = web.AppKey("socket_mode", SocketMode)
_JSON_TYPES = ("application/json",)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_ICON = "https://a.slack-edge.com/80588/img/plugins/app/bot_{}.png"


class Args:
    """A method's arguments, whichever way they came, with Slack's leniency about types."""

    def __init__(self, values: Mapping[str, Any], origin: str = "") -> None:
        self._values = values
        self.origin = origin  # scheme://host:port the call came to, for the URLs a method answers

    def value(self, name: str) -> Any:
        """The argument as it came: a string from a form, any JSON value from a JSON body."""
        return self._values.get(name)

    def text(self, name: str) -> str | None:
        value = self._values.get(name)
        return None if value is None else str(value)

    def raw(self, name: str) -> object:
        """The value as it came: a JSON string in a form, anything in a JSON body (views.* take `view` either way)."""
        return self._values.get(name)

    def flag(self, name: str) -> bool:
        return self._values.get(name) in (True, 1, "1", "true")

    def number(self, name: str, default: int, most: int) -> int:
        value = self._values.get(name)
        try:
            number = int(value) if value not in (None, "") else default
        except (TypeError, ValueError):
            raise SlackError("invalid_limit") from None
        return max(1, min(number, most)) if number else default

    def structure(self, name: str, malformed: str) -> object:
        """`blocks` and `attachments` arrive as JSON strings in forms and as arrays in JSON bodies."""
        value = self._values.get(name)
        if not isinstance(value, str):
            return value
        try:
            parsed: object = json.loads(value)
        except json.JSONDecodeError:
            raise SlackError(malformed) from None
        if not isinstance(parsed, list):
            raise SlackError(malformed)
        return parsed

    def metadata(self) -> Json | None:
        """Message metadata: an object with a string `event_type` and an object `event_payload`
        (https://docs.slack.dev/messaging/message-metadata); a JSON string in forms."""
        value = self._values.get("metadata")
        if value in (None, ""):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise SlackError("invalid_metadata_format") from None
        if not (isinstance(value, dict) and isinstance(value.get("event_type"), str) and value["event_type"]
                and isinstance(value.get("event_payload"), dict)):
            raise SlackError("invalid_metadata_format")
        return {"event_type": value["event_type"], "event_payload": value["event_payload"]}

    def ts(self, name: str, error: str) -> Decimal | None:
        value = self.text(name)
        if value in (None, ""):
            return None
        try:
            return Decimal(value)
        except InvalidOperation:
            raise SlackError(error) from None


Method = Callable[[Workspace, Args], Json]


def slack_api_app(workspace: Workspace, faults: Faults | None = None,
                  socket_mode: SocketMode | None = None) -> web.Application:
    app = web.Application()
    app[WORKSPACE] = workspace
    app[FAULTS] = faults or Faults()
    if socket_mode is not None:  # apps.connections.open and its WebSocket (slack_socket.py)
        app[SOCKET_MODE] = socket_mode
        register(app, socket_mode)
    app.router.add_route("GET", "/api/{method}", _call)
    app.router.add_route("POST", "/api/{method}", _call)
    add_file_routes(app, workspace)
    return app


async def _call(request: web.Request) -> web.Response:
    workspace = request.app[WORKSPACE]
    name = request.match_info["method"]
    faults = request.app[FAULTS]
    if (faulted := await faults.slack(name, request)) is not None:
        return faulted
    answer = await _serve(request, workspace, name)
    lost = await faults.slack(name, request, landed=True)
    return answer if lost is None else lost


async def _serve(request: web.Request, workspace: Workspace, name: str) -> web.Response:
    workspace.calls[name] += 1
    if name == OPEN_METHOD and SOCKET_MODE in request.app:
        return await _app_level(request, workspace, request.app[SOCKET_MODE])
    method = _METHODS.get(name)
    if method is None:
        return _reply({"ok": False, "error": "unknown_method"}, status=404)
    scopes: dict[str, str] = {}
    try:
        values, token = await _arguments(request, query_token_refused=workspace.limits.token_in_query_refused)
        warnings = _charset_warnings(request)
        if token is None:
            raise SlackError("not_authed")
        if not secrets.compare_digest(token, workspace.bot_token):
            raise SlackError("invalid_auth")
        scopes = _scope_headers(workspace, name)
        workspace.check_rate(name)
        needed = needed_scope(name)
        if needed is not None and needed not in workspace.scopes:
            raise MissingScope(needed, workspace.scopes)
        args = Args(values, str(request.url.origin()))
        return _reply(_warned({"ok": True, **method(workspace, args)}, warnings), headers=scopes)
    except RateLimited as limited:
        return _reply({"ok": False, "error": limited.error}, status=429,
                      headers={**scopes, "Retry-After": str(limited.retry_after)})
    except SlackError as error:
        return _reply(_error_body(error), headers=scopes)


async def _app_level(request: web.Request, workspace: Workspace, socket_mode: SocketMode) -> web.Response:
    """A method called with the app-level token, which only the Authorization header may carry."""
    try:
        socket_mode.authenticate(request)
        workspace.check_rate(OPEN_METHOD)
        return _reply({"ok": True, **socket_mode.open(request)})
    except RateLimited as limited:
        return _reply({"ok": False, "error": limited.error}, status=429,
                      headers={"Retry-After": str(limited.retry_after)})
    except SlackError as error:
        return _reply(_error_body(error))


_WARNINGS = {
    "missing_charset": "[WARN] A Content-Type HTTP header was presented but did not declare a charset, such as a "
                       "'utf-8'",
    "superfluous_charset": "[WARN] A charset was declared for a Content-Type that takes none",
}


def _charset_warnings(request: web.Request) -> list[str]:
    """JSON is to be posted as `Content-type: application/json; charset=utf-8`
    (https://api.slack.com/web#posting_json); a JSON body without a charset is served but warned `missing_charset`,
    and a charset on a URL-encoded body `superfluous_charset` ("Well wishes and warnings in the Web API",
    https://medium.com/slack-developer-blog/well-wishes-and-warnings-in-the-web-api-489456837220)."""
    if request.method != "POST":
        return []
    if request.content_type in _JSON_TYPES and request.charset is None:
        return ["missing_charset"]
    if request.content_type in _FORM_TYPES and request.charset is not None:
        return ["superfluous_charset"]
    return []


def _warned(body: Json, warnings: list[str]) -> Json:
    """Warnings as Slack reports them: a comma-separated `warning` and, since 2016, `response_metadata.warnings`
    with a `[WARN]` message each (https://api.slack.com/changelog/2016-09-28-response-metadata-is-on-the-way)."""
    if not warnings:
        return body
    metadata = dict(body.get("response_metadata") or {})
    metadata["warnings"] = warnings
    metadata["messages"] = [*metadata.get("messages", []), *(_WARNINGS[w] for w in warnings)]
    return {**body, "warning": ",".join(warnings), "response_metadata": metadata}


def _scope_headers(workspace: Workspace, method: str) -> dict[str, str]:
    """What the token holds and what the method accepts, on every answer to a valid token (slack_scopes.py)."""
    return {"X-OAuth-Scopes": ", ".join(workspace.scopes), "X-Accepted-OAuth-Scopes": ", ".join(ACCEPTED[method])}


def _error_body(error: SlackError) -> Json:
    body: Json = {"ok": False, "error": error.error}
    if isinstance(error, MissingScope):
        body |= {"needed": error.needed, "provided": ",".join(error.provided)}
    if error.details:
        body |= {"errors": error.details,
                 "response_metadata": {"messages": [f"[ERROR] {d}" for d in error.details]}}
    return body


async def _arguments(request: web.Request, *, query_token_refused: bool) -> tuple[dict[str, Any], str | None]:
    """Query string, then the body; the token from `Authorization: Bearer` or a `token` form field."""
    if query_token_refused and "token" in request.query:
        raise SlackError("invalid_auth")
    values: dict[str, Any] = dict(request.query)
    header = request.headers.get("Authorization", "")
    bearer = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
    if request.method == "POST" and request.content_type in _JSON_TYPES:
        if bearer is None:
            raise SlackError("not_authed")
        try:
            body = json.loads(await request.text())
        except json.JSONDecodeError:
            raise SlackError("invalid_json") from None
        if not isinstance(body, dict):
            raise SlackError("json_not_object")
        values |= body
        values.pop("token", None)
    elif request.method == "POST" and request.content_type in _FORM_TYPES:
        values |= {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    token = values.pop("token", None)
    return values, bearer or (str(token) if token else None)


def _reply(body: Json, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status,
                             headers={"X-Slack-Req-Id": secrets.token_hex(16), **(headers or {})})


# --- JSON shapes ----------------------------------------------------------------------------------------


def bot_profile(workspace: Workspace) -> Json:
    return {"id": BOT_ID, "app_id": APP_ID, "name": BOT.name, "deleted": False, "updated": workspace.created,
            "team_id": workspace.team_id, "icons": {f"image_{s}": _ICON.format(s) for s in (36, 48, 72)}}


def message_json(workspace: Workspace, message: Message, *, blocks: bool = True, metadata: bool = False) -> Json:
    """A message as conversations.history, chat.postMessage and block_actions payloads carry it. Its metadata only
    when asked for: conversations.history's `include_all_metadata` "Return all metadata associated with this
    message" (https://api.slack.com/methods/conversations.history#arg_include_all_metadata)."""
    body: Json = {"type": "message", "text": message.text, "user": message.user, "ts": message.ts,
                  "team": workspace.team_id}
    if message.subtype:
        body["subtype"] = message.subtype
    if message.bot_id:
        body |= {"bot_id": message.bot_id, "bot_profile": bot_profile(workspace)}
    if blocks and message.blocks:
        body["blocks"] = message.blocks
    if message.attachments:
        body["attachments"] = [{"id": i, **a} for i, a in enumerate(message.attachments, 1)]
    if message.files:
        body |= {"files": message.files, "upload": False, "display_as_bot": False}
    if message.thread_ts:
        body["thread_ts"] = message.thread_ts
    if message.parent_user:
        body["parent_user_id"] = message.parent_user
    if message.replies:
        body |= _thread_summary(message)
    if message.reactions:
        body["reactions"] = [{"name": n, "users": u, "count": len(u)} for n, u in message.reactions.items()]
    if metadata and message.metadata:
        body["metadata"] = message.metadata
    return body


def _thread_summary(parent: Message) -> Json:
    users = list(dict.fromkeys(r.user for r in parent.replies))
    return {"reply_count": len(parent.replies), "reply_users": users, "reply_users_count": len(users),
            "latest_reply": parent.replies[-1].ts}


def _thread_json(workspace: Workspace, message: Message, *, metadata: bool = False) -> Json:
    """conversations.replies' own, narrower message shape (with `include_all_metadata`, the metadata too). A message
    nobody has replied to comes back as it is: "If there are no replies then just the single message referenced by
    ts will return - it is just an ordinary, unthreaded message" (https://docs.slack.dev/reference/methods/
    conversations.replies, and the spec's `ts` argument), with no thread fields."""
    body: Json = {"type": "message", "text": message.text, "user": message.user, "ts": message.ts,
                  "team": workspace.team_id}
    if metadata and message.metadata:
        body["metadata"] = message.metadata
    if message.files:
        body["files"] = message.files
    if message.is_reply:
        return body | {"thread_ts": message.thread_ts, "parent_user_id": message.parent_user}
    if not message.replies:
        return body
    return body | {"thread_ts": message.ts} | _thread_summary(message) | {"subscribed": False}


def _conversation_json(workspace: Workspace, channel_id: str) -> Json:
    channel = workspace.channels[channel_id]
    blank = {"value": "", "creator": "", "last_set": 0}
    return {
        "id": channel.id, "name": channel.name, "name_normalized": channel.name,
        "created": workspace.created, "creator": workspace.user_named("lead").id,
        "is_channel": True, "is_group": False, "is_im": False, "is_mpim": False, "is_private": False,
        "is_archived": False, "is_general": False, "is_shared": False, "is_org_shared": False,
        "is_ext_shared": False, "is_pending_ext_shared": False, "is_member": True, "unlinked": 0,
        "shared_team_ids": [workspace.team_id], "pending_shared": [], "previous_names": [],
        "topic": blank, "purpose": blank, "num_members": len(workspace.users),
    }


def _user_json(workspace: Workspace, user: User) -> Json:
    first, _, last = user.real_name.partition(" ")
    profile: Json = {
        "real_name": user.real_name, "real_name_normalized": user.real_name,
        "display_name": user.name, "display_name_normalized": user.name,
        "first_name": first, "last_name": last,
        "title": "", "phone": "", "skype": "", "fields": None, "status_text": "", "status_emoji": "",
        "status_expiration": 0, "avatar_hash": "g0000000000a", "team": workspace.team_id,
        **{f"image_{s}": f"https://secure.gravatar.com/avatar/{user.id}.jpg?s={s}" for s in (24, 32, 48, 72)},
    }
    if user.id == BOT.id:
        profile |= {"bot_id": BOT_ID, "api_app_id": APP_ID, "always_active": True}
    return {
        "id": user.id, "team_id": workspace.team_id, "name": user.name, "real_name": user.real_name,
        "deleted": False, "color": "9f69e7", "tz": "America/Los_Angeles", "tz_label": "Pacific Standard Time",
        "tz_offset": -28800, "profile": profile, "is_admin": False, "is_owner": False,
        "is_primary_owner": False, "is_restricted": False, "is_ultra_restricted": False,
        "is_bot": user.is_bot, "is_app_user": False, "updated": workspace.created,
    }


def _page(items: Sequence[Message], args: Args, *, default: int,
          newest_first: bool) -> tuple[list[Message], str]:
    """Cursor paging by ts, so messages posted between pages neither repeat nor go missing."""
    cursor = args.text("cursor")
    if cursor:
        try:
            kind, _, after = base64.b64decode(cursor, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise SlackError("invalid_cursor") from None
        if kind != "next_ts":
            raise SlackError("invalid_cursor")
        items = [m for m in items if (m.ts <= after if newest_first else m.ts >= after)]
    limit = args.number("limit", default, 999)
    rest = items[limit:]
    return list(items[:limit]), base64.b64encode(f"next_ts:{rest[0].ts}".encode()).decode() if rest else ""


def _window(messages: Sequence[Message], args: Args) -> list[Message]:
    oldest = args.ts("oldest", "invalid_ts_oldest")
    latest = args.ts("latest", "invalid_ts_latest")
    inclusive = args.flag("inclusive")

    def inside(message: Message) -> bool:
        ts = Decimal(message.ts)
        after = oldest is None or ts > oldest or (inclusive and ts == oldest)
        before = latest is None or ts < latest or (inclusive and ts == latest)
        return after and before

    return [m for m in messages if inside(m)]


def _channel(workspace: Workspace, args: Args) -> str:
    channel = args.text("channel") or ""
    if channel not in workspace.channels:
        raise SlackError("channel_not_found")
    return channel


# --- methods --------------------------------------------------------------------------------------------


def _auth_test(workspace: Workspace, args: Args) -> Json:
    return {"url": f"https://{workspace.team_domain}.slack.com/", "team": workspace.team_domain,
            "user": BOT.name, "team_id": workspace.team_id, "user_id": BOT.id, "bot_id": BOT_ID,
            "is_enterprise_install": False}


def _content_args(args: Args) -> tuple[str, object, object]:
    return (args.text("text") or "", args.structure("blocks", "invalid_blocks_format"),
            args.structure("attachments", "invalid_attachments"))


def _post_message(workspace: Workspace, args: Args) -> Json:
    """Channel names are accepted here, as Slack does for chat.postMessage."""
    try:
        channel = workspace.lookup_channel(args.text("channel") or "").id
    except KeyError:
        raise SlackError("channel_not_found") from None
    workspace.check_post_rate(channel)
    message = workspace.post(channel, BOT.id, *_content_args(args), thread_ts=args.text("thread_ts"),
                             metadata=args.metadata())
    return {"channel": channel, "ts": message.ts, "message": message_json(workspace, message)}


def _update(workspace: Workspace, args: Args) -> Json:
    channel = _channel(workspace, args)
    message = workspace.update(channel, args.text("ts") or "", BOT.id, *_content_args(args))
    return {"channel": channel, "ts": message.ts, "text": message.text,
            "message": message_json(workspace, message, blocks=False)}


def _post_ephemeral(workspace: Workspace, args: Args) -> Json:
    channel = _channel(workspace, args)
    message = workspace.post_ephemeral(channel, args.text("user") or "", *_content_args(args),
                                       thread_ts=args.text("thread_ts"))
    return {"message_ts": message.ts}


def _delete(workspace: Workspace, args: Args) -> Json:
    channel, ts = _channel(workspace, args), args.text("ts") or ""
    workspace.delete(channel, ts, BOT.id)
    return {"channel": channel, "ts": ts}


def _history(workspace: Workspace, args: Args) -> Json:
    newest_first = list(reversed(_window(workspace.parents(_channel(workspace, args)), args)))
    page, cursor = _page(newest_first, args, default=100, newest_first=True)
    with_metadata = args.flag("include_all_metadata")
    body: Json = {"messages": [message_json(workspace, m, metadata=with_metadata) for m in page],
                  "has_more": bool(cursor),
                  "pin_count": 0, "channel_actions_ts": None, "channel_actions_count": 0}
    return body | ({"response_metadata": {"next_cursor": cursor}} if cursor else {})


def _replies(workspace: Workspace, args: Args) -> Json:
    parent, *replies = workspace.thread(_channel(workspace, args), args.text("ts") or "")
    page, cursor = _page([parent, *_window(replies, args)], args, default=1000, newest_first=False)
    with_metadata = args.flag("include_all_metadata")
    body: Json = {"messages": [_thread_json(workspace, m, metadata=with_metadata) for m in page],
                  "has_more": bool(cursor)}
    return body | ({"response_metadata": {"next_cursor": cursor}} if cursor else {})


def _info(workspace: Workspace, args: Args) -> Json:
    return {"channel": _conversation_json(workspace, _channel(workspace, args))}


def _list(workspace: Workspace, args: Args) -> Json:
    """Every channel in one page: a workspace has a handful, and `next_cursor` is always ""."""
    return {"channels": [_conversation_json(workspace, c) for c in workspace.channels],
            "response_metadata": {"next_cursor": ""}}


def _users_info(workspace: Workspace, args: Args) -> Json:
    user = workspace.users.get(args.text("user") or "")
    if user is None:
        raise SlackError("user_not_found")
    return {"user": _user_json(workspace, user)}


def _usergroup_users(workspace: Workspace, args: Args) -> Json:
    """usergroups.users.list (https://docs.slack.dev/reference/methods/usergroups.users.list): "List all users in a
    User Group"; an unknown id is `no_such_subteam` ("No usergroup found with the given Id"). `include_disabled`
    "Allow results that involve disabled User Groups": the page says no more, so without it a disabled group is
    answered with no users (an assumption: its members are kept, but nothing it stands for should reach them)."""
    group = workspace.usergroups.get(args.text("usergroup") or "")
    if group is None:
        raise SlackError("no_such_subteam")
    if group.disabled and not args.flag("include_disabled"):
        return {"users": []}
    return {"users": list(group.users)}


def _usergroups(workspace: Workspace, args: Args) -> Json:
    """usergroups.list (https://docs.slack.dev/reference/methods/usergroups.list): "a list of all User Groups in the
    team", "in no particular order" (here: newest id first), disabled ones only with `include_disabled`, each with
    its `users` only with `include_users` and its `user_count` only with `include_count`. The object is the spec's
    `objs_subteam` (a count is an integer there, a string in the page's example: the spec wins)."""
    body = []
    for group in sorted(workspace.usergroups.values(), key=lambda g: g.id, reverse=True):
        if group.disabled and not args.flag("include_disabled"):
            continue
        item: Json = {
            "id": group.id, "team_id": workspace.team_id, "is_usergroup": True, "is_subteam": True,
            "name": group.name, "description": "", "handle": group.handle, "is_external": False,
            "date_create": workspace.created, "date_update": workspace.created,
            "date_delete": workspace.created if group.disabled else 0, "auto_type": None, "auto_provision": False,
            "enterprise_subteam_id": "", "created_by": workspace.user_named("lead").id,
            "updated_by": workspace.user_named("lead").id,
            "deleted_by": workspace.user_named("lead").id if group.disabled else None,
            "prefs": {"channels": [], "groups": []},
        }
        if args.flag("include_users"):
            item["users"] = list(group.users)
        if args.flag("include_count"):
            item["user_count"] = len(group.users)
        body.append(item)
    return {"usergroups": body}


def _permalink(workspace: Workspace, args: Args) -> Json:
    """chat.getPermalink (https://docs.slack.dev/reference/methods/chat.getPermalink): "Retrieve a permalink URL for
    a specific extant message", in Slack's form `/archives/<channel>/p<ts without its dot>`, with `thread_ts` and
    `cid` for a reply; here on the sandbox's own address, where GET shows the message (slack_files.py)."""
    channel = _channel(workspace, args)
    message = workspace.message(channel, args.text("message_ts") or "")
    url = f"{args.origin}/archives/{channel}/p{message.ts.replace('.', '')}"
    if message.is_reply:
        url += f"?thread_ts={message.thread_ts}&cid={channel}"
    return {"channel": channel, "permalink": url}


def _react(workspace: Workspace, args: Args) -> Json:
    channel, ts = _channel(workspace, args), args.text("timestamp")
    if not ts:
        raise SlackError("no_item_specified")
    workspace.react(channel, ts, BOT.id, args.text("name") or "")
    return {}


_METHODS: dict[str, Method] = {
    "auth.test": _auth_test,
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _post_ephemeral,
    "chat.delete": _delete,
    "conversations.history": _history,
    "conversations.replies": _replies,
    "conversations.info": _info,
    "conversations.list": _list,
    "users.info": _users_info,
    "usergroups.list": _usergroups,
    "usergroups.users.list": _usergroup_users,
    "reactions.add": _react,
    "views.publish": views_publish,
    "chat.getPermalink": _permalink,
    "files.getUploadURLExternal": get_upload_url,
    "files.completeUploadExternal": complete_upload,
    "files.info": files_info,
    **VIEW_METHODS,
}

METHODS = (*_METHODS, OPEN_METHOD)
"""Slack's method names, as `POST /faults` takes them."""
