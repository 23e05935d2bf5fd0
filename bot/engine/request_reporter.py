"""What a deploy request tells Slack: its message in the deploy channel, posted once and redrawn as it changes, and
replies in its thread only where someone must hear of it (a denial, an expiry): the deploy channel takes about a
post a second, and a rollout's own thread needs it. Nothing is sent from here: these become outbox rows written with
the request's transition."""

from __future__ import annotations

from bot.adapters.deploy_store import request_thread
from bot.adapters.outbox import Message
from bot.domain.deploy_queue import QueuedDeploy
from bot.render.deploy_request import request_message


def told(request: QueuedDeploy, *notes: str, post: bool = False) -> list[Message]:
    """A request's message (posted, or redrawn as it now stands) and replies in its thread. A request that needs no
    approval has no message of its own (its requester was answered, and its rollout will have one): a note for it
    is a post of its own, which mentions whom it concerns."""
    key = request_thread(request.id)
    if not request.needed:
        return [Message(key, "post", request.channel, note) for note in notes]
    drawn = request_message(request)
    messages = [Message(key, "post" if post else "update", request.channel, drawn.text, drawn.blocks)]
    messages += [Message(key, "reply", request.channel, note) for note in notes]
    return messages
