"""Slack's user side of modals: a person reads the modal on their screen, fills it in field by field, types into an
`external_select` (Slack asks the app's options load URL), presses a button in it, submits it or closes it; Slack
delivers each of these to the bot as its documented interaction payload, signed like any other
(sandbox/slack_user.py's delivery), and shows the bot's answer.

    GET  /views?user=               the person's open views, root first (the last is on screen), with their state
                                    and the errors shown on fields
    POST /views/fill     {"user", "block_id", "action_id", "value"}   type into a text input, or pick an option
                                    (by value) in a static_select, or in an external_select among the options Slack
                                    last showed for it
    POST /views/suggest  {"user", "block_id", "action_id", "value"}   type-ahead in an external_select
    POST /views/press    {"user", "action_id", "block_id"?, "value"?} press a button in the modal
    POST /views/submit   {"user"}
    POST /views/close    {"user"}

Payloads and answers, from Slack's documentation:
- `block_actions` from a modal carries `container: {"type": "view", "view_id"}`, the `view` with its `state`, and
  a `trigger_id` (https://docs.slack.dev/reference/interaction-payloads/block_actions-payload). A select in an
  `input` block sends nothing until submit unless the block has `dispatch_action: true`
  (https://docs.slack.dev/reference/block-kit/blocks/input-block).
- `block_suggestion` goes to the options load URL "each time a select menu of this type is opened or the user
  starts typing", once at least `min_query_length` characters are typed ("defaults to 3"); the app answers
  `{"options": [...]}` or `{"option_groups": [...]}`, at most 100 options, an option's text at most 75 characters
  and its value at most 150 (https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element
  #external_select, https://docs.slack.dev/reference/block-kit/composition-objects/option-object). An answer past
  those is shown as no options and reported `invalid_options` (assumption: Slack documents no error for it).
- `view_submission` (https://docs.slack.dev/reference/interaction-payloads/view-interactions-payload) must be
  answered within 3 s; an empty answer closes the view, `response_action` `errors` (an object of block_id to
  message) shows each message on its field and keeps the view open, `update` replaces it, `push` pushes one,
  `clear` closes them all (https://docs.slack.dev/surfaces/modals#updating_response, #displaying_errors,
  #close_all_views). A required input left empty is refused by Slack's client before anything is sent
  (assumption, the client's own check: nothing reaches the app).
- `view_closed` is sent only with `notify_on_close`; `clear_on_close` closes the whole stack.

Each answer: `{"status", "ack_ms", "body", "error", "views": [...]}` (`status` 0 when nothing was delivered).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, Protocol
from urllib.parse import urlencode

from aiohttp import web

from sandbox.slack_errors import SlackError
from sandbox.slack_views import OpenView, Views, fields, views_of
from sandbox.slack_workspace import APP_ID, Json, User, Workspace

MAX_OPTIONS = 100
DEFAULT_MIN_QUERY = 3


class Delivered(Protocol):
    status: int
    ack_ms: float
    body: str
    error: str | None


Deliver = Callable[[str, Mapping[str, Any]], Awaitable[Delivered]]
"""Sign and post a form body to the bot, as sandbox/slack_user.py does for every interaction."""


class _Refused(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _refusing(handler: Handler) -> Handler:
    @wraps(handler)
    async def answered(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except _Refused as refused:
            return web.json_response({"ok": False, "error": refused.error}, status=refused.status)

    return answered


def modal_routes(workspace: Workspace, deliver: Deliver, token: str) -> list[web.RouteDef]:
    """The routes above, delivering with `deliver`; `token` is the verification token Slack still sends."""
    modals = _Modals(workspace, views_of(workspace), deliver, token)
    return [web.get("/views", _refusing(modals.read)), web.post("/views/fill", _refusing(modals.fill)),
            web.post("/views/suggest", _refusing(modals.suggest)), web.post("/views/press", _refusing(modals.press)),
            web.post("/views/submit", _refusing(modals.submit)), web.post("/views/close", _refusing(modals.close))]


class _Modals:
    def __init__(self, workspace: Workspace, views: Views, deliver: Deliver, token: str) -> None:
        self.workspace, self.views, self.deliver, self.token = workspace, views, deliver, token

    # --- what the person sees ---------------------------------------------------------------------------

    def shown(self, user: User) -> list[Json]:
        return [self.views.json(v) | {"errors": dict(v.errors)} for v in self.views.stack(user.id)]

    async def read(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "views": self.shown(self._user(dict(request.query)))})

    # --- what the person does ---------------------------------------------------------------------------

    async def fill(self, request: web.Request) -> web.Response:
        spec = await _spec(request)
        user = self._user(spec)
        top = self._top(user)
        block, element = self._field(top, spec)
        kind = str(element.get("type"))
        value = str(spec.get("value", ""))
        if kind in ("plain_text_input", "number_input", "email_text_input", "url_text_input"):
            entered: Json = {"type": kind, "value": value}
        elif kind in ("static_select", "external_select"):
            offered = (_options(element) if kind == "static_select"
                       else top.suggestions.get((str(block.get("block_id")), str(element.get("action_id"))), []))
            option = next((o for o in offered if o.get("value") == value), None)
            if option is None:
                raise _Refused(404, f"no option {value!r} in that menu")
            entered = {"type": kind, "selected_option": option}
        else:
            raise _Refused(400, f"filling in a {kind} is not modelled")
        top.values.setdefault(str(block.get("block_id")), {})[str(element.get("action_id"))] = entered
        top.errors.pop(str(block.get("block_id")), None)
        if block.get("type") == "input" and block.get("dispatch_action") is not True:
            return self._answer(user, None)
        action = {"type": kind, "action_id": element.get("action_id"), "block_id": block.get("block_id"),
                  "action_ts": f"{time.time():.6f}", **{k: v for k, v in entered.items() if k != "type"}}
        return self._answer(user, await self._block_actions(user, top, action))

    async def suggest(self, request: web.Request) -> web.Response:
        spec = await _spec(request)
        user = self._user(spec)
        top = self._top(user)
        block, element = self._field(top, spec)
        if element.get("type") != "external_select":
            raise _Refused(400, "only an external_select asks the app for options")
        typed = str(spec.get("value", ""))
        key = (str(block.get("block_id")), str(element.get("action_id")))
        if len(typed) < int(element.get("min_query_length", DEFAULT_MIN_QUERY)):
            return web.json_response({"status": 0, "ack_ms": 0.0, "body": "", "error": None, "options": []})
        payload = self._base("block_suggestion", user) | {
            "container": {"type": "view", "view_id": top.id}, "action_id": key[1], "block_id": key[0],
            "value": typed, "view": self.views.json(top)}
        delivery = await self.deliver(_form(payload), spec)
        options, error = _read_options(delivery)
        top.suggestions[key] = options
        return web.json_response({"status": delivery.status, "ack_ms": round(delivery.ack_ms, 3),
                                  "body": delivery.body, "error": error, "options": options})

    async def press(self, request: web.Request) -> web.Response:
        spec = await _spec(request)
        user = self._user(spec)
        top = self._top(user)
        for block, element in fields(top.view):
            if (element.get("type") == "button" and element.get("action_id") == spec.get("action_id")
                    and spec.get("value") in (None, element.get("value"))
                    and spec.get("block_id") in (None, block.get("block_id"))):
                action = {"type": "button", "action_id": element["action_id"], "block_id": block.get("block_id"),
                          "text": element.get("text"), "value": element.get("value"),
                          "action_ts": f"{time.time():.6f}"}
                return self._answer(user, await self._block_actions(
                    user, top, {k: v for k, v in action.items() if v is not None}))
        raise _Refused(404, f"no button {spec.get('action_id')!r} in the modal")

    async def submit(self, request: web.Request) -> web.Response:
        spec = await _spec(request)
        user = self._user(spec)
        top = self._top(user)
        if "submit" not in top.view:
            raise _Refused(400, "this view has no Submit button")
        missing = {str(b.get("block_id")): "Please complete this required field."
                   for b, e in fields(top.view) if b.get("type") == "input" and not b.get("optional")
                   and not _filled(top.values.get(str(b.get("block_id")), {}).get(str(e.get("action_id"))))}
        if missing:
            top.errors = missing
            return self._answer(user, None)
        payload = self._base("view_submission", user) | {
            "trigger_id": self.views.trigger(user.id, top.id), "view": self.views.json(top), "response_urls": []}
        delivery = await self.deliver(_form(payload), spec)
        error = delivery.error or self._apply(user, top, delivery.body)
        return self._answer(user, delivery, error)

    async def close(self, request: web.Request) -> web.Response:
        spec = await _spec(request)
        user = self._user(spec)
        top = self._top(user)
        everything = bool(top.view.get("clear_on_close"))
        delivery = None
        if top.view.get("notify_on_close"):
            payload = self._base("view_closed", user) | {"view": self.views.json(top), "is_cleared": everything}
            delivery = await self.deliver(_form(payload), spec)
        self.views.close(user.id, everything=everything)
        return self._answer(user, delivery)

    # --- the bot's answers ------------------------------------------------------------------------------

    def _apply(self, user: User, top: OpenView, body: str) -> str | None:
        """A view_submission's answer, as Slack acts on it; the error the person would see, if any."""
        if not body.strip():
            self.views.close(user.id, everything=False)
            return None
        try:
            answer = json.loads(body)
        except json.JSONDecodeError:
            return "invalid_response"
        action = answer.get("response_action") if isinstance(answer, dict) else None
        try:
            if action == "errors":
                errors = answer.get("errors")
                if not isinstance(errors, dict) or not all(isinstance(v, str) for v in errors.values()):
                    return "invalid_response"
                top.errors = {str(k): v for k, v in errors.items()}
            elif action == "update":
                self.views.replace_top(user.id, answer.get("view"))
            elif action == "push":
                self.views.push_from_submission(user.id, answer.get("view"))
            elif action == "clear":
                self.views.close(user.id, everything=True)
            else:
                return "invalid_response"
        except SlackError as refused:
            return refused.error
        return None

    async def _block_actions(self, user: User, top: OpenView, action: Json) -> Delivered:
        payload = self._base("block_actions", user) | {
            "container": {"type": "view", "view_id": top.id}, "trigger_id": self.views.trigger(user.id, top.id),
            "view": self.views.json(top), "actions": [action], "state": {"values": top.values}}
        return await self.deliver(_form(payload), {})

    def _base(self, kind: str, user: User) -> Json:
        return {"type": kind, "team": {"id": self.workspace.team_id, "domain": self.workspace.team_domain},
                "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": self.workspace.team_id},
                "api_app_id": APP_ID, "token": self.token, "enterprise": None, "is_enterprise_install": False}

    def _answer(self, user: User, delivery: Delivered | None, error: str | None = None) -> web.Response:
        return web.json_response({
            "status": delivery.status if delivery else 0, "ack_ms": round(delivery.ack_ms, 3) if delivery else 0.0,
            "body": delivery.body if delivery else "", "error": error or (delivery.error if delivery else None),
            "views": self.shown(user)})

    # --- reading requests -------------------------------------------------------------------------------

    def _user(self, spec: Mapping[str, Any]) -> User:
        try:
            return self.workspace.lookup_user(str(spec.get("user", "")))
        except KeyError:
            raise _Refused(404, f"no user {spec.get('user')!r}") from None

    def _top(self, user: User) -> OpenView:
        stack = self.views.stack(user.id)
        if not stack:
            raise _Refused(404, "no modal open")
        return stack[-1]

    def _field(self, top: OpenView, spec: Mapping[str, Any]) -> tuple[Json, Json]:
        for block, element in fields(top.view):
            if block.get("block_id") == spec.get("block_id") and element.get("action_id") == spec.get("action_id"):
                return block, element
        raise _Refused(404, f"no field {spec.get('block_id')!r}/{spec.get('action_id')!r} in the modal")


def _filled(entered: Json | None) -> bool:
    return entered is not None and bool(entered.get("value") or entered.get("selected_option"))


def _options(element: Json) -> list[Json]:
    groups = element.get("option_groups") or []
    return [*(element.get("options") or []), *(o for g in groups for o in g.get("options", []))]


def _read_options(delivery: Delivered) -> tuple[list[Json], str | None]:
    if delivery.error:
        return [], delivery.error
    try:
        answer = json.loads(delivery.body or "{}")
    except json.JSONDecodeError:
        return [], "invalid_options"
    options = _options(answer) if isinstance(answer, dict) else []
    valid = all(isinstance(o, dict) and isinstance(o.get("text"), dict) and len(str(o["text"].get("text"))) <= 75
                and isinstance(o.get("value"), str) and len(o["value"]) <= 150 for o in options)
    if not valid or len(options) > MAX_OPTIONS:
        return [], "invalid_options"
    return options, None


def _form(payload: Json) -> str:
    return urlencode({"payload": json.dumps(payload)})


async def _spec(request: web.Request) -> Json:
    try:
        spec = json.loads(await request.text())
    except json.JSONDecodeError:
        spec = None
    if not isinstance(spec, dict):
        raise _Refused(400, "expected a JSON object")
    return spec
