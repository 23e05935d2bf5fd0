"""A request's body read up to a cap, and no further: an oversized request is answered 413 without ever being held
whole in memory, and nothing (a signature, a parser) runs over it."""

from __future__ import annotations

from starlette.requests import Request


async def bounded_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it is known to pass `limit` bytes: by its Content-Length before a byte is read, or,
    for a body sent in chunks without one, as soon as the bytes read pass it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)
