"""Slack's modals as the Web API keeps them: `views.open`, `views.update` and `views.push`, the triggers they are
opened with, and each person's stack of open views.

From Slack's documentation:
- A `trigger_id` comes with a slash command, a click or a submission; it "expires in three seconds" and can be
  exchanged once (https://docs.slack.dev/interactivity/handling-user-interaction#modal_responses). Errors, from the
  method pages (https://docs.slack.dev/reference/methods/views.open, .../views.push): `invalid_trigger_id`,
  `expired_trigger_id`, `exchanged_trigger_id`.
- The modal view object (https://docs.slack.dev/reference/views/modal-views): `title` a plain_text of at most 24
  characters; `submit` and `close` likewise, `submit` "required when an input block is within the blocks array";
  at most 100 blocks; `private_metadata` at most 3,000 characters; `callback_id` and `external_id` at most 255,
  `external_id` "unique for all views on a team" (else `duplicate_external_id`). A view of more than 250 kB is
  `view_too_large`.
- views.update (https://docs.slack.dev/reference/methods/views.update): `view_id` or `external_id`; an unknown one
  is `not_found`; a `hash` that is not the view's current one is `hash_conflict`. Input a person entered survives an
  update that keeps the input block's `block_id` and `action_id` (the "Preserving input entry" note of the view
  reference); each update gives the view a new `hash`.
- views.push: "After a modal is opened, the app is limited to pushing 2 additional views", `push_limit_reached`
  past that ("Currently the limit is 3"); the trigger must come from an interaction within the modal.
- An invalid view is `invalid_arguments` with `response_metadata.messages`, each `[ERROR] <what> [json-pointer:...]`
  (the shape chat.postMessage's `invalid_blocks` uses; assumption: the method pages list the error, not its text).
"""

from __future__ import annotations

import json
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.slack_errors import SlackError
from sandbox.slack_workspace import APP_ID, BOT_ID, Json, Workspace

if TYPE_CHECKING:
    from sandbox.slack_api import Args

TRIGGER_LIFETIME_S = 3.0
MAX_BLOCKS = 100
MAX_BUTTON_TEXT = 24
MAX_METADATA = 3000
MAX_ID = 255
MAX_STACK = 3
MAX_VIEW_BYTES = 250_000
INPUT_ELEMENTS = {"plain_text_input", "static_select", "external_select", "number_input", "datepicker",
                  "timepicker", "checkboxes", "radio_buttons", "users_select", "conversations_select",
                  "channels_select", "multi_static_select", "multi_external_select", "email_text_input",
                  "url_text_input"}
_BLOCK_TYPES = {"section", "header", "context", "actions", "divider", "image", "input", "rich_text", "markdown"}


@dataclass
class Trigger:
    user: str
    issued: float
    view_id: str | None
    """The open view the interaction came from: a trigger from inside a modal may push onto it."""
    used: bool = False


@dataclass
class OpenView:
    id: str
    user: str
    root_id: str
    previous_id: str | None
    view: Json
    hash: str
    values: dict[str, dict[str, Json]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    suggestions: dict[tuple[str, str], list[Json]] = field(default_factory=dict)


class Views:
    """The triggers handed out and the views open in one workspace, per person a stack (root first)."""

    def __init__(self, team_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.team_id = team_id
        self._clock = clock
        self._triggers: dict[str, Trigger] = {}
        self._views: dict[str, OpenView] = {}
        self._stacks: dict[str, list[str]] = {}

    def trigger(self, user: str, view_id: str | None = None) -> str:
        """A fresh trigger_id for an interaction by `user` (inside the view `view_id`, if any)."""
        trigger_id = f"{secrets.randbelow(10**13)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self._triggers[trigger_id] = Trigger(user, self._clock(), view_id)
        return trigger_id

    def stack(self, user: str) -> list[OpenView]:
        return [self._views[i] for i in self._stacks.get(user, [])]

    def get(self, view_id: str) -> OpenView:
        found = self._views.get(view_id)
        if found is None:
            raise SlackError("not_found")
        return found

    def _exchange(self, trigger_id: str | None) -> Trigger:
        trigger = self._triggers.get(trigger_id or "")
        if trigger is None:
            raise SlackError("invalid_trigger_id")
        if trigger.used:
            raise SlackError("exchanged_trigger_id")
        if self._clock() - trigger.issued > TRIGGER_LIFETIME_S:
            raise SlackError("expired_trigger_id")
        trigger.used = True
        return trigger

    def open(self, trigger_id: str | None, view: object) -> OpenView:
        checked = self._checked(view)
        trigger = self._exchange(trigger_id)
        for old in self.stack(trigger.user):  # a new modal replaces whatever the person had open
            self._views.pop(old.id, None)
        opened = self._new(trigger.user, checked, root=None, previous=None)
        self._stacks[trigger.user] = [opened.id]
        return opened

    def push(self, trigger_id: str | None, view: object) -> OpenView:
        checked = self._checked(view)
        trigger = self._exchange(trigger_id)
        stack = self._stacks.get(trigger.user, [])
        if trigger.view_id is None or trigger.view_id not in stack:
            raise SlackError("not_found")
        if len(stack) >= MAX_STACK:
            raise SlackError("push_limit_reached")
        pushed = self._new(trigger.user, checked, root=stack[0], previous=stack[-1])
        stack.append(pushed.id)
        return pushed

    def update(self, view_id: str | None, external_id: str | None, view: object, hash_: str | None) -> OpenView:
        if not view_id and not external_id:
            raise SlackError("invalid_arguments", ["view_id or external_id is required"])
        target = self._views.get(view_id or "") if view_id else next(
            (v for v in self._views.values() if v.view.get("external_id") == external_id), None)
        if target is None:
            raise SlackError("not_found")
        if hash_ and hash_ != target.hash:
            raise SlackError("hash_conflict")
        target.view = self._checked(view, keeping=target.id)
        target.hash = _hash()
        kept = _inputs(target.view)
        values = initial_values(target.view)
        for block_id, actions in target.values.items():
            for action_id, entered in actions.items():
                if (block_id, action_id) in kept:
                    values.setdefault(block_id, {})[action_id] = entered
        target.values = values
        target.errors = {}
        return target

    def replace_top(self, user: str, view: object) -> OpenView:
        """`response_action: update` of a submission: the submitted view, redrawn."""
        return self.update(self._stacks[user][-1], None, view, None)

    def push_from_submission(self, user: str, view: object) -> OpenView:
        """`response_action: push`: no trigger, the submission itself is the interaction."""
        stack = self._stacks[user]
        if len(stack) >= MAX_STACK:
            raise SlackError("push_limit_reached")
        pushed = self._new(user, self._checked(view), root=stack[0], previous=stack[-1])
        stack.append(pushed.id)
        return pushed

    def close(self, user: str, *, everything: bool) -> None:
        stack = self._stacks.get(user, [])
        closing = list(stack) if everything else stack[-1:]
        for view_id in closing:
            stack.remove(view_id)
            self._views.pop(view_id, None)

    def _new(self, user: str, view: Json, *, root: str | None, previous: str | None) -> OpenView:
        view_id = "V" + secrets.token_hex(5).upper()
        opened = OpenView(view_id, user, root or view_id, previous, view, _hash(), initial_values(view))
        self._views[view_id] = opened
        return opened

    def _checked(self, view: object, keeping: str | None = None) -> Json:
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except json.JSONDecodeError:
                raise SlackError("invalid_arguments", ["view is not JSON [json-pointer:/view]"]) from None
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments", ["view must be an object [json-pointer:/view]"])
        if len(json.dumps(view).encode()) > MAX_VIEW_BYTES:
            raise SlackError("view_too_large")
        problems = view_problems(view)
        if problems:
            raise SlackError("invalid_arguments", problems)
        external_id = view.get("external_id")
        if external_id and any(v.view.get("external_id") == external_id and v.id != keeping
                               for v in self._views.values()):
            raise SlackError("duplicate_external_id")
        return view

    def json(self, opened: OpenView) -> Json:
        """The view as the methods return it and payloads carry it."""
        view = opened.view
        return {
            "id": opened.id, "team_id": self.team_id, "type": "modal", "title": view["title"],
            "submit": view.get("submit"), "close": view.get("close"), "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""), "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""), "state": {"values": opened.values}, "hash": opened.hash,
            "clear_on_close": bool(view.get("clear_on_close")), "notify_on_close": bool(view.get("notify_on_close")),
            "root_view_id": opened.root_id, "previous_view_id": opened.previous_id, "app_id": APP_ID,
            "app_installed_team_id": self.team_id, "bot_id": BOT_ID,
        }


def _hash() -> str:
    return f"{int(time.time())}.{secrets.token_hex(4)}"


def _inputs(view: Json) -> set[tuple[str, str]]:
    return {(str(b.get("block_id")), str(e.get("action_id"))) for b, e in fields(view)}


def initial_values(view: Json) -> dict[str, dict[str, Json]]:
    """The state a view starts with: what its elements' `initial_value` and `initial_option` fill in, as a
    submission carries them (assumption: the element reference says they are pre-filled, not how they appear)."""
    values: dict[str, dict[str, Json]] = {}
    for block, element in fields(view):
        if "initial_value" in element:
            entered: Json = {"type": element["type"], "value": element["initial_value"]}
        elif "initial_option" in element:
            entered = {"type": element["type"], "selected_option": element["initial_option"]}
        else:
            continue
        values.setdefault(str(block.get("block_id")), {})[str(element.get("action_id"))] = entered
    return values


def fields(view: Json) -> list[tuple[Json, Json]]:
    """Every (block, element) a person can fill or pick in: input blocks' elements, selects in sections and actions."""
    found: list[tuple[Json, Json]] = []
    for block in view.get("blocks", []):
        if block.get("type") == "input":
            found.append((block, block["element"]))
        elif block.get("type") == "section" and isinstance(block.get("accessory"), dict):
            found.append((block, block["accessory"]))
        elif block.get("type") == "actions":
            found += [(block, e) for e in block.get("elements", [])]
    return found


def _plain(text: Any, pointer: str, most: int) -> list[str]:
    if not (isinstance(text, dict) and text.get("type") == "plain_text" and isinstance(text.get("text"), str)):
        return [f"must be a plain_text object [json-pointer:{pointer}]"]
    if len(text["text"]) > most:
        return [f"must be less than {most + 1} characters [json-pointer:{pointer}/text]"]
    return []


def view_problems(view: Json) -> list[str]:
    """What Slack refuses in a modal view (module docstring)."""
    problems: list[str] = []
    if view.get("type") != "modal":
        problems.append("must be modal [json-pointer:/view/type]")
    problems += _plain(view.get("title"), "/view/title", MAX_BUTTON_TEXT)
    for name in ("submit", "close"):
        if name in view:
            problems += _plain(view[name], f"/view/{name}", MAX_BUTTON_TEXT)
    for name, most in (("private_metadata", MAX_METADATA), ("callback_id", MAX_ID), ("external_id", MAX_ID)):
        if len(str(view.get(name, ""))) > most:
            problems.append(f"must be less than {most + 1} characters [json-pointer:/view/{name}]")
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        return [*problems, "missing required field: blocks [json-pointer:/view/blocks]"]
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"must provide an array with no more than {MAX_BLOCKS} items [json-pointer:/view/blocks]")
    seen: set[str] = set()
    for index, block in enumerate(blocks):
        pointer = f"/view/blocks/{index}"
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            problems.append(f"unsupported block type [json-pointer:{pointer}/type]")
            continue
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in seen:
                problems.append(f"duplicate block_id [json-pointer:{pointer}/block_id]")
            seen.add(block_id)
        if block["type"] == "input":
            problems += _plain(block.get("label"), f"{pointer}/label", 2000)
            element = block.get("element")
            if not isinstance(element, dict) or element.get("type") not in INPUT_ELEMENTS:
                problems.append(f"must provide an input element [json-pointer:{pointer}/element]")
            if "submit" not in view:
                problems.append("submit is required when an input block is present [json-pointer:/view/submit]")
    return problems


_STORES: weakref.WeakKeyDictionary[Workspace, Views] = weakref.WeakKeyDictionary()


def views_of(workspace: Workspace) -> Views:
    """The workspace's views, kept beside it (the Web API and the user side both reach them through it)."""
    views = _STORES.get(workspace)
    if views is None:
        views = _STORES[workspace] = Views(workspace.team_id)
    return views


def _view_arg(args: Args) -> object:
    view = args.raw("view")
    if view in (None, ""):
        raise SlackError("invalid_arguments", ["missing required field: view [json-pointer:/view]"])
    return view


def views_open(workspace: Workspace, args: Args) -> Json:
    views = views_of(workspace)
    return {"view": views.json(views.open(args.text("trigger_id"), _view_arg(args)))}


def views_push(workspace: Workspace, args: Args) -> Json:
    views = views_of(workspace)
    return {"view": views.json(views.push(args.text("trigger_id"), _view_arg(args)))}


def views_update(workspace: Workspace, args: Args) -> Json:
    views = views_of(workspace)
    updated = views.update(args.text("view_id"), args.text("external_id"), _view_arg(args),
                           args.text("hash"))
    return {"view": views.json(updated)}


METHODS = {"views.open": views_open, "views.update": views_update, "views.push": views_push}
