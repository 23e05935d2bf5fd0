"""Bolt's listeners for the modals (commands/modals.py): the service picker's type-ahead, each modal's Submit,
the deploy modal's Preview plan and the rollback modal's service pick. Registered before the catch-all button
listener, since Bolt runs the first listener that matches."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.render.modals import PREVIEW_ACTION, SERVICE_ACTION
from commands.framework import Runtime
from commands.modals import COMMANDS, options, preview, rollback_service_picked, submit


def register_modals(bolt: AsyncApp, runtime: Runtime) -> None:
    async def suggested(ack: AsyncAck, body: dict[str, Any]) -> None:
        await options(body, ack, runtime)

    async def submitted(ack: AsyncAck, body: dict[str, Any]) -> None:
        await submit(body, ack, runtime)

    async def previewed(ack: AsyncAck, body: dict[str, Any]) -> None:
        await preview(body, ack, runtime)

    async def picked(ack: AsyncAck, body: dict[str, Any]) -> None:
        await rollback_service_picked(body, ack, runtime)

    bolt.options(SERVICE_ACTION)(suggested)
    for callback in COMMANDS:
        bolt.view(callback)(submitted)
    bolt.action(PREVIEW_ACTION)(previewed)
    bolt.action(SERVICE_ACTION)(picked)
