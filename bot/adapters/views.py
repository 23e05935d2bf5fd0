"""Slack's modal methods, as the modals need them: open one with a trigger, redraw one in place.

`views.open` must be called within the trigger's 3 seconds, once (https://docs.slack.dev/reference/methods/
views.open); `views.update` with the view's `hash` refuses a redraw over a newer one with `hash_conflict`
(https://docs.slack.dev/reference/methods/views.update). Neither is retried: a late trigger stays late, and a
conflicting redraw is someone else's newer view. Each returns Slack's error code, or None when the view is shown.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


class ViewsGateway:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def open(self, trigger_id: str, view: dict[str, Any]) -> str | None:
        try:
            await self._client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("views.open refused: %s", exc.response.get("error"))
            return str(exc.response.get("error"))
        return None

    async def update(self, view_id: str, view_hash: str | None, view: dict[str, Any]) -> str | None:
        try:
            await self._client.views_update(view_id=view_id, hash=view_hash, view=view)
        except SlackApiError as exc:
            log.info("views.update refused: %s", exc.response.get("error"))
            return str(exc.response.get("error"))
        return None
