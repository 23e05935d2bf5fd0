"""The console's modal words: see the modal on screen and fill it in field by field, through Slack's user side
(sandbox/slack_modals.py), as a person would in the Slack client."""

from __future__ import annotations

from typing import Any

import httpx

HELP = """\
:modal                 show the modal on screen: its fields (BLOCK ACTION), their values and errors
:type BLOCK ACTION TEXT  type-ahead in a menu of options the bot serves; shows what it offers
:fill BLOCK ACTION VALUE type into a field, or pick an option (by value) in a menu
:press ACTION          press a button in the modal
:submit / :close       submit or close the modal
:confirm ACTION [VALUE]  click a button that asks first, and confirm its dialog"""

WORDS = (":modal", ":type", ":fill", ":press", ":submit", ":close")


async def modal_line(http: httpx.AsyncClient, user: str, word: str, rest: str) -> str:
    """Do what one modal word asks; returns what to show."""
    parts = rest.split(" ", 2)
    if word == ":modal":
        answer: dict[str, Any] = (await http.get("/views", params={"user": user})).json()
    elif word in (":type", ":fill") and len(parts) == 3:
        path = "suggest" if word == ":type" else "fill"
        answer = (await http.post(f"/views/{path}", json={"user": user, "block_id": parts[0],
                                                          "action_id": parts[1], "value": parts[2]})).json()
        if word == ":type" and "options" in answer:
            return "offered: " + (", ".join(o["value"] for o in answer["options"]) or "nothing")
    elif word == ":press" and rest:
        answer = (await http.post("/views/press", json={"user": user, "action_id": rest})).json()
    elif word in (":submit", ":close"):
        answer = (await http.post(f"/views/{word[1:]}", json={"user": user})).json()
    else:
        return f"{word} needs more: :help"
    if answer.get("error"):
        return f"{word}: {answer['error']}"
    views = answer.get("views") or []
    return describe(views[-1]) if views else "(no modal open)"


def describe(view: dict[str, Any]) -> str:
    """The modal as text: its title, each field with its ids, value and error, and its other lines."""
    values = view.get("state", {}).get("values", {})
    errors = view.get("errors", {})
    lines = [f"[{view['title']['text']}]"]
    for block in view.get("blocks", []):
        element = block.get("element") or block.get("accessory")
        label = (block.get("label") or {}).get("text") or (block.get("text") or {}).get("text", "")
        if element is None:
            lines.append(f"  {label}".rstrip())
            continue
        if element.get("type") == "button":
            lines.append(f"  {label}  [{element['text']['text']}] (:press {element.get('action_id')})")
            continue
        ids = f"{block.get('block_id')} {element.get('action_id')}"
        entered = values.get(block.get("block_id"), {}).get(element.get("action_id"), {})
        shown = entered.get("value") or (entered.get("selected_option") or {}).get("value") or ""
        choices = [o["value"] for o in element.get("options", [])]
        lines.append(f"  {label}: {shown or '—'}  ({element['type']} · {ids})"
                     + (f" one of {', '.join(choices)}" if choices else ""))
        if block.get("block_id") in errors:
            lines.append(f"    ! {errors[block['block_id']]}")
    return "\n".join(lines)
