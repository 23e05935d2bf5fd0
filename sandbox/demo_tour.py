"""What every demo tour acts and checks with: a person's commands and what they see, and steps that say what they
proved or why they failed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from sandbox.blockkit_text import render_message


class StepFailed(Exception):
    pass


@dataclass
class Tour:
    endpoints: dict[str, Any]
    http: httpx.AsyncClient
    out: TextIO
    users: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    async def command(self, user: str, text: str, channel: str = "deploys", **extra: Any) -> dict[str, Any]:
        command, _, rest = text.partition(" ")
        response = await self.http.post(f"{self.endpoints['slack_user_url']}/commands",
                                        json={"user": user, "channel": channel, "command": command, "text": rest,
                                              **extra})
        answer: dict[str, Any] = response.json()
        return answer

    async def messages(self, user: str, channel: str = "deploys") -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.endpoints['slack_user_url']}/messages",
                                       params={"channel": channel, "user": user})
        seen: list[dict[str, Any]] = response.json()
        return seen

    async def latest(self, user: str, channel: str = "deploys") -> float:
        seen = await self.messages(user, channel)
        return float(seen[-1]["ts"]) if seen else 0.0

    async def next_message(self, user: str, after: float, found: Callable[[dict[str, Any]], bool],
                           channel: str = "deploys", timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in await self.messages(user, channel):
                if float(message["ts"]) > after and found(message):
                    self.show(message)
                    return message
            await asyncio.sleep(0.1)
        raise StepFailed(f"no matching message in #{channel} within {timeout:g} s")

    async def serving(self, service: str) -> str:
        state = (await self.http.get(f"{self.endpoints['control_url']}/state")).json()
        return str(state["services"][service]["traffic_statuses"][0]["revision"])

    async def behave(self, revision: str, **behaviour: Any) -> None:
        response = await self.http.patch(f"{self.endpoints['control_url']}/revisions/{revision}", json=behaviour)
        if response.status_code != 200:
            raise StepFailed(f"the control API refused: {response.text}")

    def show(self, message: dict[str, Any]) -> None:
        for line in render_message(message, users=self.users, width=100).splitlines():
            self.out.write(f"    {line}\n")

    async def step(self, title: str, body: Callable[[], Awaitable[str]]) -> None:
        self.out.write(f"\n▶ {title}\n")
        self.out.flush()
        try:
            detail = await body()
        except (StepFailed, httpx.HTTPError, KeyError, ValueError) as exc:
            self.failures.append(title)
            self.out.write(f"  ✗ {exc}\n")
        else:
            self.out.write(f"  ✓ {detail}\n")
        self.out.flush()


def expect(condition: bool, problem: str) -> None:
    if not condition:
        raise StepFailed(problem)
