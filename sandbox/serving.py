"""Run several aiohttp applications on 127.0.0.1 in one event loop, each on its own port."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Listener:
    name: str
    app: web.Application
    port: int = 0
    runner: web.AppRunner | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def start(listener: Listener) -> Listener:
    """Bind first (port 0 picks a free port), then serve, so the URL is known before anyone calls it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", listener.port))
    sock.listen(1024)
    listener.port = sock.getsockname()[1]
    runner = web.AppRunner(listener.app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    listener.runner = runner
    return listener


async def stop(listener: Listener) -> None:
    if listener.runner is not None:
        await listener.runner.cleanup()
        listener.runner = None
