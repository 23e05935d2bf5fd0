"""App Home tabs: `views.publish` and what each person's Home tab shows.

views.publish (https://docs.slack.dev/reference/methods/views.publish): "Create or update the view that comprises an
app's Home tab for a specific user", with `user_id` and `view` (a JSON-encoded string in a form) required and `hash`
optional, "A string that represents view state to protect against possible race conditions": a `hash` that is not the
tab's current one is refused `hash_conflict`. An unknown user is `invalid_arguments` with "invalid `user_id`" in
`response_metadata.messages` (the page's error example). Rate limit Tier 4; no scope required (the page's "Required
scopes" is empty and the OpenAPI spec says `none`). The answer is the page's success example: the published view with
its `id`, `hash`, `state`, `app_id`, `bot_id`.

The view is checked as "Home tab views" (https://docs.slack.dev/reference/views/home-tab-views) define it: `type`
`home`, `blocks` required with "Max of 100 blocks", `private_metadata` at most 3,000 characters, `callback_id` at most
255, `external_id` "unique for all views on a per-team basis" (else `duplicate_external_id`). Each block is checked as
messages' blocks are (slack_workspace.py), and each button's `confirm` as the confirmation dialog object defines it
(https://docs.slack.dev/reference/block-kit/composition-objects/confirmation-dialog-object): `title` plain_text at most
100 characters, `text` at most 300, `confirm` and `deny` plain_text at most 30, `style` primary or danger. A view over
250 kB is `view_too_large`: the error is in the page's table; the figure is an assumption taken from views.open's
table, which names it. Problems are answered `invalid_arguments` with one `[ERROR] ... [json-pointer:/view/...]`
message each, the shape Slack gives block errors (assumption: the page documents only the code).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from sandbox.slack_errors import SlackError
from sandbox.slack_workspace import APP_ID, BOT_ID, Workspace, block_problems, text_problems

if TYPE_CHECKING:
    from sandbox.slack_api import Args

Json = dict[str, Any]

MAX_VIEW_BLOCKS = 100
MAX_VIEW_BYTES = 250 * 1024
MAX_PRIVATE_METADATA = 3000
MAX_CALLBACK_ID = 255


def confirm_problems(confirm: object, pointer: str) -> list[str]:
    """A confirmation dialog object's limits."""
    if not isinstance(confirm, dict):
        return [f"must be an object [json-pointer:{pointer}]"]
    problems = text_problems(confirm.get("title"), f"{pointer}/title", 100, plain_only=True)
    problems += text_problems(confirm.get("text"), f"{pointer}/text", 300)
    problems += text_problems(confirm.get("confirm"), f"{pointer}/confirm", 30, plain_only=True)
    problems += text_problems(confirm.get("deny"), f"{pointer}/deny", 30, plain_only=True)
    if confirm.get("style") not in (None, "primary", "danger"):
        problems.append(f"must be one of primary, danger [json-pointer:{pointer}/style]")
    return problems


def buttons(blocks: list[Json]) -> list[tuple[str, Json]]:
    """Every button in the blocks, with the block_id of the block holding it."""
    found = []
    for block in blocks:
        elements = block.get("elements", []) if block.get("type") == "actions" else [block.get("accessory")]
        found += [(str(block.get("block_id", "")), e) for e in elements
                  if isinstance(e, dict) and e.get("type") == "button"]
    return found


def _view_problems(view: Json) -> list[str]:
    problems: list[str] = []
    if view.get("type") != "home":
        problems.append("must be home [json-pointer:/view/type]")
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        return [*problems, "missing required field: blocks [json-pointer:/view/blocks]"]
    if len(blocks) > MAX_VIEW_BLOCKS:
        problems.append(f"must provide an array with no more than {MAX_VIEW_BLOCKS} items [json-pointer:/view/blocks]")
    for name, most in (("private_metadata", MAX_PRIVATE_METADATA), ("callback_id", MAX_CALLBACK_ID)):
        if len(str(view.get(name) or "")) > most:
            problems.append(f"must be less than {most + 1} characters [json-pointer:/view/{name}]")
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        pointer = f"/view/blocks/{index}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            problems.append(f"missing required field: type [json-pointer:{pointer}]")
            continue
        problems += block_problems(block, pointer)
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in block_ids:
                problems.append(f"duplicate block_id [json-pointer:{pointer}/block_id]")
            block_ids.add(block_id)
        elements = block.get("elements", []) if block["type"] == "actions" else [block.get("accessory")]
        for place, element in enumerate(elements if isinstance(elements, list) else []):
            if isinstance(element, dict) and "confirm" in element:
                where = f"{pointer}/elements/{place}" if block["type"] == "actions" else f"{pointer}/accessory"
                problems += confirm_problems(element["confirm"], f"{where}/confirm")
    return problems


def _view_argument(args: Args) -> Json:
    value: object = args.value("view")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SlackError("invalid_arguments", ["invalid `view`"]) from None
    if not isinstance(value, dict):
        raise SlackError("invalid_arguments", ["missing `view`" if value is None else "invalid `view`"])
    return value


def views_publish(workspace: Workspace, args: Args) -> Json:
    user_id = args.text("user_id") or ""
    user = workspace.users.get(user_id)
    if user is None or user.is_bot:
        raise SlackError("invalid_arguments", ["invalid `user_id`"])
    view = _view_argument(args)
    if len(json.dumps(view).encode()) > MAX_VIEW_BYTES:
        raise SlackError("view_too_large")
    problems = _view_problems(view)
    if problems:
        raise SlackError("invalid_arguments", problems)
    homes = workspace.homes
    current = homes.tabs.get(user_id)
    given_hash = args.text("hash")
    if given_hash and (current is None or given_hash != current["hash"]):
        raise SlackError("hash_conflict")
    external_id = str(view.get("external_id") or "")
    if external_id and external_id in homes.external_ids(but=user_id):
        raise SlackError("duplicate_external_id")
    view_id = current["id"] if current else "V" + secrets.token_hex(5).upper()
    published: Json = {
        "id": view_id, "team_id": workspace.team_id, "type": "home", "close": None, "submit": None,
        "blocks": [b if "block_id" in b else {**b, "block_id": secrets.token_urlsafe(3)} for b in view["blocks"]],
        "private_metadata": str(view.get("private_metadata") or ""), "callback_id": str(view.get("callback_id") or ""),
        "state": {"values": {}}, "hash": f"{time.time():.6f}.{secrets.token_hex(4)}", "clear_on_close": False,
        "notify_on_close": False, "root_view_id": view_id, "previous_view_id": None, "app_id": APP_ID,
        "external_id": external_id, "bot_id": BOT_ID,
    }
    homes.publish(user_id, published)
    return {"view": published}
