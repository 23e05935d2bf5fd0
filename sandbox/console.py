"""The console of `chatops sandbox`: type slash commands as a person of the emulated workspace and watch the
channel as that person sees it, so the bot can be tried by hand without a real Slack.

Everything goes through Slack's user side over HTTP, as a person's Slack client would: commands and clicks
are signed and delivered to the bot by the emulator, and what is shown is exactly what that person sees.
The channel is polled in the background, so a slow reply or a rollout message updated minutes later shows
up on its own while the prompt waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

import httpx

from sandbox.blockkit_text import DIM, RED, RESET, YELLOW, buttons, render_message
from sandbox.console_modals import HELP as MODAL_HELP
from sandbox.console_modals import WORDS as MODAL_WORDS
from sandbox.console_modals import modal_line

Json = dict[str, Any]

POLL_S = 0.3
SETTLE_S = 0.3  # after a command, so a quick reply is printed before the next prompt
RECENT = 10  # messages shown when a channel is opened; :history shows them all

HELP = """\
/command text          run a slash command, e.g. /health all
anything else          post it in the channel as yourself
:click ACTION [VALUE]  click the button shown with ":click ACTION" on the latest message that has it
:home [ACTION [VALUE]]  open your Home tab and show it; with ACTION, click that button in it (confirming)
:as USER               be someone else (:users lists them)
:in CHANNEL            look at another channel (:channels lists them)
:history               show the whole channel again
:help                  this
:quit                  leave (so does Ctrl-D)
""" + MODAL_HELP


async def run_console(endpoints: dict[str, Any], *, user: str = "oncall", channel: str = "deploys",
                      stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, color: bool | None = None) -> int:
    """Read lines until `:quit` or end of input; 2 if `user` or `channel` is unknown, else 0."""
    tty = stdout.isatty()
    width = shutil.get_terminal_size((100, 24)).columns if tty else 100
    async with httpx.AsyncClient(base_url=endpoints["slack_user_url"], timeout=10.0) as http:
        console = _Console(http, endpoints, stdout, color=tty if color is None else color, width=width)
        if not await console.open(user, channel):
            return 2
        console.show(console.paint("type /commands as in Slack; :help lists the rest", DIM))
        keyboard = _Keyboard(stdin)
        follower = asyncio.create_task(console.follow(), name="console-follow")
        try:
            while True:
                console.prompt()
                line = await keyboard.line()
                console.at_prompt = False
                if line is None:
                    console.write("\n")
                    return 0
                if not stdin.isatty():  # a piped transcript reads like a typed one
                    console.write(f"{line}\n")
                if not await console.handle(line.strip()):
                    return 0
        finally:
            keyboard.close()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


class _Keyboard:
    """Lines of stdin, each read when asked for by a daemon thread: waiting for a line never stalls polling,
    nothing is read past `:quit`, and a console stopped while someone is mid-line does not keep the process
    alive."""

    def __init__(self, stdin: TextIO) -> None:
        self._stdin = stdin
        self._loop = asyncio.get_running_loop()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._wanted = threading.Semaphore(0)
        self._closed = False
        threading.Thread(target=self._read, name="console-stdin", daemon=True).start()

    async def line(self) -> str | None:
        """The next line without its newline; None at end of input."""
        self._wanted.release()
        return await self._lines.get()

    def close(self) -> None:
        self._closed = True
        self._wanted.release()

    def _read(self) -> None:
        while self._wanted.acquire() and not self._closed:
            line = self._stdin.readline()
            try:
                self._loop.call_soon_threadsafe(self._lines.put_nowait, line.rstrip("\r\n") if line else None)
            except RuntimeError:  # the loop is closed: nobody is reading any more
                return
            if not line:
                return


class _Console:
    def __init__(self, http: httpx.AsyncClient, endpoints: Mapping[str, Any], out: TextIO, *, color: bool,
                 width: int) -> None:
        self.http = http
        self.out = out
        self.color = color
        self.width = width
        self.people: dict[str, str] = dict(endpoints["users"])  # name -> id
        self.rooms: dict[str, str] = dict(endpoints["channels"])
        self.names = {user_id: name for name, user_id in self.people.items()}
        self.user = self.channel = ""
        self.seen: dict[str, str] = {}  # ts -> what it showed, to notice edits
        self.on_screen: list[Json] = []
        self.lock = asyncio.Lock()  # one fetch-and-print at a time, so nothing is printed twice
        self.at_prompt = False
        self.failing = False
        self.elsewhere: dict[str, set[str]] = {}  # channel -> ts of its top-level messages already announced

    # --- output -----------------------------------------------------------------------------------------

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def prompt(self) -> None:
        self.write(f"{self.user}@#{self.channel}> ")
        self.at_prompt = True

    def show(self, text: str) -> None:
        """Print above the prompt: a message arriving while someone types must not end up after `> `."""
        interrupted = self.at_prompt
        if interrupted:
            self.write("\r\x1b[2K" if self.color else "\n")
            self.at_prompt = False
        self.write(f"{text}\n")
        if interrupted:
            self.prompt()

    def paint(self, text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def error(self, text: str) -> None:
        self.show(self.paint(f"✗ {text}", RED))

    def render(self, message: Json, *, updated: bool = False) -> str:
        rendered = render_message(message, users=self.names, width=self.width, color=self.color)
        if updated:
            heading, _, body = rendered.partition("\n")
            rendered = f"{heading}  {self.paint('(updated)', YELLOW)}\n{body}"
        for file in message.get("files") or []:  # an upload: where to open it on this machine
            rendered += f"\n  📎 {file['title']} ({file['name']}): {file['permalink']}"
        return f"{rendered}\n"

    # --- the channel ------------------------------------------------------------------------------------

    async def fetch(self) -> list[Json] | None:
        try:
            response = await self.http.get("/messages", params={"channel": self.channel, "user": self.user})
            response.raise_for_status()
        except httpx.HTTPError as error:
            if not self.failing:
                self.error(f"cannot read #{self.channel}: {error!r}")
            self.failing = True
            return None
        self.failing = False
        messages: list[Json] = response.json()
        self.on_screen = messages
        return messages

    async def poll(self) -> None:
        """Print what is new, and again what changed since it was printed."""
        async with self.lock:
            messages = await self.fetch()
            fresh: list[str] = []
            for message in messages or []:
                before, now = self.seen.get(message["ts"]), _fingerprint(message)
                if before != now:
                    fresh.append(self.render(message, updated=before is not None))
                    self.seen[message["ts"]] = now
            if fresh:
                self.show("\n".join(fresh))

    async def replay(self, last: int | None) -> None:
        """Show the channel from the start (or its `last` messages) and count all of it as seen."""
        async with self.lock:
            messages = await self.fetch()
            if messages is None:
                return
            self.seen = {message["ts"]: _fingerprint(message) for message in messages}
            shown = messages if last is None else messages[-last:]
            heading = f"— #{self.channel} as {self.user}"
            if len(shown) < len(messages):
                heading += f": {len(messages) - len(shown)} earlier messages (:history shows them)"
            self.show("\n".join([self.paint(heading, DIM), *(self.render(m) for m in shown)]))

    async def follow(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(POLL_S)
            await self.poll()
            rounds += 1
            if rounds % 5 == 0:
                await self.glance()

    async def glance(self) -> None:
        """One line for each new top-level message in the other channels (an incident opening, a digest), so the
        console hears of them without leaving the channel it shows; `:in CHANNEL` shows them whole."""
        for name in self.rooms:
            if name == self.channel:
                continue
            try:
                response = await self.http.get("/messages", params={"channel": name, "user": self.user})
                response.raise_for_status()
            except httpx.HTTPError:
                return
            tops = [m for m in response.json()
                    if m.get("kind") == "message" and m.get("thread_ts") in (None, "", m.get("ts"))]
            known = self.elsewhere.get(name)
            self.elsewhere[name] = {str(m["ts"]) for m in tops}
            if known is None:
                continue  # the first look only learns what was there
            for message in tops:
                if str(message["ts"]) not in known:
                    first = str(message.get("text", "")).splitlines()[0][:100] if message.get("text") else "…"
                    self.show(self.paint(f"— new in #{name}: {first}  (:in {name} shows it)", YELLOW))

    async def open(self, user: str, channel: str) -> bool:
        """Become `user` looking at `channel`, both given by name or id."""
        who, where = _name_of(user, self.people), _name_of(channel, self.rooms)
        if who is None:
            self.error(f"no user {user!r}; :users lists them")
        elif where is None:
            self.error(f"no channel {channel!r}; :channels lists them")
        else:
            async with self.lock:
                self.user, self.channel = who, where
            await self.replay(RECENT)
            return True
        return False

    # --- commands ---------------------------------------------------------------------------------------

    async def handle(self, line: str) -> bool:
        """Do what one line asks; False to quit."""
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if not line:
            return True
        if line.startswith("/"):
            await self.act("/commands", {"command": word, "text": rest}, word)
        elif line == ":quit":
            return False
        elif word == ":click":
            if rest:
                await self.click(*rest.split(" ", 1))
            else:
                self.error("which button? :click ACTION [VALUE]")
        elif word == ":home":
            await self.home(*rest.split(" ", 1)) if rest else await self.home()
        elif word == ":confirm" and rest:
            await self.click(*rest.split(" ", 1), confirmed=True)
        elif word in MODAL_WORDS:
            self.show(await modal_line(self.http, self.user, word, rest))
            await self.poll()
        elif word == ":as":
            await self.open(rest, self.channel)
        elif word == ":in":
            await self.open(self.user, rest)
        elif line == ":history":
            await self.replay(None)
        elif line == ":users":
            await self.listing("/users", ("name", "id", "real_name"))
        elif line == ":channels":
            await self.listing("/channels", ("name", "id"))
        elif line == ":help":
            self.show(HELP)
        elif line.startswith(":"):
            self.error(f"unknown {word}; :help lists what you can type")
        else:
            await self.request("/messages", {"user": self.user, "channel": self.channel, "text": line})
            await self.poll()
        return True

    async def click(self, action_id: str, value: str | None = None, *, confirmed: bool = False) -> None:
        """The newest message on screen with this button, as a person clicks what they just saw."""
        for message in reversed(self.on_screen):
            if any(button.get("action_id") == action_id and value in (None, button.get("value"))
                   for button in buttons(message)):
                spec: Json = {"message_ts": message["ts"], "action_id": action_id, "confirmed": confirmed}
                await self.act("/actions", spec if value is None else {**spec, "value": value}, action_id)
                return
        self.error(f"no button {action_id!r}{f' with value {value!r}' if value else ''} in #{self.channel}")

    async def home(self, action_id: str | None = None, value: str | None = None) -> None:
        """Open the Home tab as Slack does (app_home_opened) and print what the app published; or click a button
        in it, saying the confirmation dialog it passed through."""
        if action_id is not None:
            spec = {"view": "home", "action_id": action_id, "confirmed": True}
            await self.act("/actions", spec if value is None else {**spec, "value": value}, action_id)
            await asyncio.sleep(SETTLE_S)
        opened = await self.request("/home", {"user": self.user})
        view = (opened or {}).get("view")
        if not isinstance(view, dict):
            self.error("the Home tab is empty: the app published nothing for you")
            return
        message = {"ts": view["hash"].split(".")[0], "user": self.people.get("chatops", "chatops"),
                   "blocks": view["blocks"]}
        self.show(self.paint("── your Home tab ──", DIM) + "\n" + self.render(message))

    async def act(self, path: str, spec: Json, what: str) -> None:
        """A command or click delivered to the bot, then its answer and the bot's first replies."""
        answer = await self.request(path, {"user": self.user, "channel": self.channel, **spec})
        if answer is not None and (answer.get("status") != 200 or answer.get("error")):
            status = answer.get("status")
            why = ("the bot is down or took more than 3 s" if status == 0
                   else f"the bot answered HTTP {status}" if status != 200 else "Slack refused the bot's answer")
            self.error(f"{what}: {answer.get('error')} ({why})")
        await self.poll()
        await asyncio.sleep(SETTLE_S)
        await self.poll()

    async def request(self, path: str, body: Json) -> Json | None:
        try:
            response = await self.http.post(path, json=body)
            answer: Json = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as error:
            self.error(f"{path}: {error!r}")
            return None
        if response.status_code != 200:
            dialog = answer.get("confirm") or {}
            asks = f": {dialog['text']['text']} (:confirm to go ahead)" if dialog else ""
            self.error(str(answer.get("error", response.status_code)) + asks)
            return None
        return answer

    async def listing(self, path: str, columns: tuple[str, ...]) -> None:
        try:
            rows: list[Json] = (await self.http.get(path)).raise_for_status().json()
        except httpx.HTTPError as error:
            self.error(f"{path}: {error!r}")
            return
        widths = [max(len(str(row.get(c, ""))) for row in rows) for c in columns]
        self.show("\n".join("  ".join(f"{row.get(c, '')!s:<{w}}" for c, w in zip(columns, widths, strict=True))
                            .rstrip() for row in rows))


def _name_of(ref: str, table: Mapping[str, str]) -> str | None:
    """The name for a name or id as people type them (`@oncall`, `#deploys`, `C07DEPLOYS1`)."""
    ref = ref.strip().lstrip("@#")
    if ref in table:
        return ref
    return next((name for name, ident in table.items() if ident == ref), None)


def _fingerprint(message: Json) -> str:
    """What a person would notice changing; not reply_count, so a thread's parent is not shown per reply."""
    return json.dumps([message.get(key) for key in ("text", "blocks", "attachments", "reactions")])
