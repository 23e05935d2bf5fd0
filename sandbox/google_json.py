"""Google's JSON, written and read through the API's own protobuf types.

Reading through the proto refuses an unknown or misspelt field as Google's front end does; writing
through it honours `$alt=json;enum-encoding=int`, which the REST client libraries send.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from sandbox.google_errors import GoogleError


def respond(request: web.Request, kind: type[Message], body: dict[str, Any], status: int = 200) -> web.Response:
    if "enum-encoding=int" in request.query.get("$alt", ""):
        message = kind()
        json_format.ParseDict(body, message)
        body = json_format.MessageToDict(message, use_integers_for_enums=True)
    return web.json_response(body, status=status)


async def parse_body(request: web.Request, kind: type[Message]) -> dict[str, Any]:
    message = kind()
    try:
        json_format.Parse(await request.text() or "{}", message)
    except json_format.ParseError as exc:
        raise GoogleError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from None
    parsed: dict[str, Any] = json_format.MessageToDict(message)
    return parsed
