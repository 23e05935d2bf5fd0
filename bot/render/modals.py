"""The modals `/deploy`, `/silence` and `/rollback` open when typed with no arguments: pure view builders.

Limits from Slack's modal view reference (https://docs.slack.dev/reference/views/modal-views): a title, submit and
close of at most 24 characters, at most 100 blocks, `private_metadata` at most 3,000 characters. An update keeps
what a person entered only where the input block's `block_id` and `action_id` stay the same, so every builder
draws its inputs with the same ids whatever else changes. An `external_select` gets its options from the bot's
options listener (`block_suggestion`): at most 100 options ("Select menu of external data source",
https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element#external_select), each text at most
75 characters and value at most 150 (https://docs.slack.dev/reference/block-kit/composition-objects/option-object).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from bot.render.blocks import Block, clip, context, section

MAX_OPTIONS = 100

SERVICE_BLOCK, SERVICE_ACTION = "service", "modal_service"
STRATEGY_BLOCK, STRATEGY_ACTION = "strategy", "modal_strategy"
IMAGE_BLOCK, IMAGE_ACTION = "image", "modal_image"
PLAN_BLOCK, PREVIEW_ACTION = "plan", "deploy_preview"
DURATION_BLOCK, DURATION_ACTION = "duration", "modal_duration"
REASON_BLOCK, REASON_ACTION = "reason", "modal_reason"
REVISION_BLOCK, REVISION_ACTION = "revision", "modal_revision"
OVERRIDE_BLOCK, OVERRIDE_ACTION = "override", "modal_override"

DEPLOY_CALLBACK, SILENCE_CALLBACK, ROLLBACK_CALLBACK = "deploy_modal", "silence_modal", "rollback_modal"
DURATIONS = ("30m", "1h", "2h", "4h", "1d")


@dataclass(frozen=True)
class Origin:
    """Where the modal was opened from: its answers go to that command's channel and response_url."""

    channel: str
    response_url: str

    def metadata(self) -> str:
        return json.dumps({"channel": self.channel, "response_url": self.response_url})

    @classmethod
    def read(cls, metadata: object) -> Origin:
        try:
            known = json.loads(metadata) if isinstance(metadata, str) else {}
        except json.JSONDecodeError:
            known = {}
        known = known if isinstance(known, dict) else {}
        return cls(str(known.get("channel", "")), str(known.get("response_url", "")))


def plain(text: str, limit: int = 75) -> Block:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def option(text: str, value: str) -> Block:
    return {"text": plain(text), "value": value[:150]}


def service_options(services: Sequence[str], typed: str) -> list[Block]:
    """The services whose name holds what was typed, any case, those starting with it first; at most 100."""
    wanted = typed.strip().lower()
    found = [s for s in services if wanted in s.lower()]
    found.sort(key=lambda s: (not s.lower().startswith(wanted), s))
    return [option(s, s) for s in found[:MAX_OPTIONS]]


def _modal(callback: str, title: str, submit: str, origin: Origin, blocks: list[Block]) -> Block:
    return {"type": "modal", "callback_id": callback, "title": plain(title, 24), "submit": plain(submit, 24),
            "close": plain("Cancel", 24), "private_metadata": origin.metadata(), "blocks": blocks}


def _service_input(hint: str, *, dispatch: bool = False) -> Block:
    element: Block = {"type": "external_select", "action_id": SERVICE_ACTION, "min_query_length": 1,
                      "placeholder": plain("Type part of a service's name")}
    block: Block = {"type": "input", "block_id": SERVICE_BLOCK, "label": plain("Service"), "element": element,
                    "hint": plain(hint, 2000)}
    return block | ({"dispatch_action": True} if dispatch else {})


def _select(block_id: str, action_id: str, label: str, choices: Sequence[tuple[str, str]], *,
            initial: str | None = None, optional: bool = False) -> Block:
    options = [option(text, value) for text, value in choices][:MAX_OPTIONS]
    element: Block = {"type": "static_select", "action_id": action_id, "options": options,
                      "placeholder": plain(f"Choose a {label.lower()}")}
    chosen = next((o for o in options if o["value"] == initial), None)
    if chosen is not None:
        element["initial_option"] = chosen
    return {"type": "input", "block_id": block_id, "label": plain(label), "element": element, "optional": optional}


def _text(block_id: str, action_id: str, label: str, placeholder: str, *, optional: bool = False) -> Block:
    return {"type": "input", "block_id": block_id, "label": plain(label), "optional": optional,
            "element": {"type": "plain_text_input", "action_id": action_id, "placeholder": plain(placeholder)}}


def deploy_modal(origin: Origin, strategies: Sequence[str], default_strategy: str,
                 plan: Sequence[str] = ()) -> Block:
    """Service, strategy, image or tag, and the dry-run plan once Preview was pressed (`plan`: its lines)."""
    shown = "\n".join(plan) if plan else "Press *Preview plan* to see what this deploy would do; nothing changes."
    return _modal(DEPLOY_CALLBACK, "Deploy", "Deploy", origin, [
        _service_input("Only the services in chatops' config."),
        _select(STRATEGY_BLOCK, STRATEGY_ACTION, "Strategy", [(s, s) for s in strategies], initial=default_strategy),
        _text(IMAGE_BLOCK, IMAGE_ACTION, "Image tag or full image reference", "v42, or …/repo/image:v42"),
        _text(OVERRIDE_BLOCK, OVERRIDE_ACTION, "Past a lock or freeze window? Say why (override)",
              "odds feed fix before tip-off", optional=True),
        {"type": "section", "block_id": PLAN_BLOCK, "text": {"type": "mrkdwn", "text": clip(shown, 3000)},
         "accessory": {"type": "button", "action_id": PREVIEW_ACTION, "value": "preview",
                       "text": plain("Preview plan")}},
        context("Submitting runs `/deploy` with these values: same permissions, locks, freezes and approvals."),
    ])


def silence_modal(origin: Origin) -> Block:
    return _modal(SILENCE_CALLBACK, "Silence alerts", "Silence", origin, [
        _service_input("Its alerts are held; incidents still count."),
        _select(DURATION_BLOCK, DURATION_ACTION, "For", [(d, d) for d in DURATIONS], initial="2h"),
        _text(REASON_BLOCK, REASON_ACTION, "Why", "BigQuery maintenance window", optional=True),
    ])


@dataclass(frozen=True)
class RevisionChoice:
    name: str
    served: str
    """When it last served, as a person reads it ("serving now", "until 2026-12-01 14:02 UTC", "never seen")."""


def rollback_modal(origin: Origin, service: str | None = None,
                   revisions: Sequence[RevisionChoice] = ()) -> Block:
    """The service first; once picked, its Ready revisions with when each last served (optional: without one,
    chatops chooses, as `/rollback <service>` does)."""
    blocks: list[Block] = [_service_input("Picking one lists its revisions.", dispatch=True)]
    if service is not None:
        choices = [(clip(f"{r.name} · {r.served}", 75), r.name) for r in revisions]
        if choices:
            blocks.append(_select(REVISION_BLOCK, REVISION_ACTION, "Revision", choices, optional=True))
        else:
            blocks.append(section(f"{service} has no other Ready revision to roll back to."))
        blocks.append(context("Leave the revision empty to let chatops choose, as `/rollback "
                              f"{service}` does; the answer says which and why."))
    return _modal(ROLLBACK_CALLBACK, "Roll back", "Roll back", origin, blocks)
