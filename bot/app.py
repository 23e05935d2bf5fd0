"""Composition root: config + adapters + Bolt app + reconciler + web app, and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from starlette.applications import Starlette

from bot.adapters.artifacts import Artifacts
from bot.adapters.budget_store import BudgetStore
from bot.adapters.cloudrun import CloudRunGateway
from bot.adapters.event_store import SeenEvents
from bot.adapters.idtokens import IdTokens
from bot.adapters.incident_store import IncidentStore
from bot.adapters.lock_store import LockStore
from bot.adapters.logs import LogsGateway
from bot.adapters.metrics import MetricsGateway
from bot.adapters.outbox import Outbox
from bot.adapters.prober import Prober
from bot.adapters.secrets import Credentials
from bot.adapters.slack import SlackGateway
from bot.adapters.store import Store, StoreUnavailable
from bot.adapters.usergroups import UserGroups
from bot.config import Config
from bot.domain.monitoring_alert import OnAlert
from bot.engine.budget import ReadBudget
from bot.engine.digests import Digests
from bot.engine.dispatcher import Dispatcher
from bot.engine.home import HomeTabs, from_home
from bot.engine.incidents import IncidentEngine
from bot.engine.outbox_sender import OutboxSender
from bot.engine.reconciler import Reconciler
from bot.engine.reporter import RolloutReporter
from bot.engine.scheduler import Job, Scheduler, every
from bot.engine.signals import SignalCollector
from bot.engine.stats import Stats
from bot.engine.sweeper import Sweeper
from bot.engine.watch import JOB as WATCH_JOB
from bot.engine.watch import PostDeployWatch
from bot.environment import Environment
from bot.event_dedup import once_per_event
from bot.modal_listeners import register_modals
from bot.render.mrkdwn import echoed
from bot.runbook_links import ExternalPages, LinkKey, RunbookPages, SignedPages
from bot.runbooks import RunbookLinker, Runbooks
from bot.slack_route import SlackEvents
from bot.socket_mode import SocketModeRequests
from bot.web import web_app
from commands.buttons import handle_button, routable
from commands.framework import Command, Runtime, handle
from commands.modals import open_modal
from commands.registry import all_commands

log = logging.getLogger(__name__)

SHUTDOWN_S = 6.0
"""How long the shutdown after the web server stopped may take: Cloud Run sends SIGKILL 10 s after SIGTERM
(https://cloud.google.com/run/docs/container-contract#lifecycle), and uvicorn first waits up to 3 s for requests in
flight (serve.py)."""


@dataclass
class Bot:
    runtime: Runtime
    bolt: AsyncApp
    web: Starlette
    reconciler: Reconciler
    sweeper: Sweeper
    outbox: OutboxSender
    scheduler: Scheduler

    async def aclose(self) -> None:
        await self.runtime.prober.aclose()
        await self.runtime.slack.aclose()
        self.runtime.store.close()


async def _bare_ack(**_: Any) -> None:
    """The ack of a click answered before Bolt sees it: the route answers 200 itself."""


def _listener(command: Command[Any], runtime: Runtime) -> Any:
    async def listener(ack: AsyncAck, body: dict[str, Any]) -> None:
        if not await open_modal(command, body, ack, runtime):
            await handle(command, body, ack, runtime)

    return listener


def _runbook_pages(config: Config, credentials: Credentials, public_url: str) -> tuple[RunbookPages, LinkKey | None]:
    """Links to the config's web view of the runbooks, or signed links to the bot's own pages."""
    if config.runbook_base_url is not None:
        return ExternalPages(config.runbook_base_url), None
    if credentials.runbook_link_key is None:
        raise ValueError("runbook links point at the bot, but no link key was read")
    key = LinkKey(credentials.runbook_link_key.encode("utf-8"))
    return SignedPages(public_url, key), key


def build(config: Config, env: Environment, credentials: Credentials, store: Store, runbooks: Runbooks,
          *, public_url: str, owner: str, on_alert: OnAlert | None = None, socket_url: str | None = None) -> Bot:
    """`on_alert` replaces what Cloud Monitoring's notifications do (the incident engine) for tests that only
    look at what arrived. `socket_url` (with `credentials.app_token`): Slack's requests come over Socket Mode,
    starting at that URL, and the web app serves no Slack route."""
    slack = SlackGateway(credentials.bot_token, base_url=env.slack_api_url)
    prober = Prober(concurrency=config.defaults.probe_concurrency, tokens=IdTokens(env.metadata_host))
    engine = config.engine
    cloudrun = CloudRunGateway(config.project, config.region, env, call_timeout=engine.google_timeout)
    pages, link_key = _runbook_pages(config, credentials, public_url)
    linker = RunbookLinker(config, runbooks, pages)
    logs = LogsGateway(config.project, config.region, env, timeout=engine.google_timeout)
    budget = ReadBudget(engine.logging_reads_per_minute, buckets=BudgetStore(store))
    collector = SignalCollector(prober, logs, MetricsGateway(config.project, env, timeout=engine.google_timeout),
                                {name: config.health_for(name) for name in config.services},
                                budget=budget, log_lag_s=engine.log_lag,
                                metrics_delay_s=engine.metrics_delay,
                                error_filters={name: config.canary_for(name).error_filter for name in config.services})
    outbox = Outbox(store)
    sender = OutboxSender(outbox, slack, owner)
    # Woken whenever a rollout is saved or a request changes; otherwise it looks once a second (expiries, locks).
    dispatcher = Dispatcher(config=config, store=store, cloudrun=cloudrun, interval_s=max(config.engine.interval, 1.0),
                            sent=sender.wake, started=lambda: reconciler.wake())

    def said_and_maybe_ended() -> None:
        """A rollout's save was committed: send what it said; it may have ended, so the queue looks too."""
        sender.wake()
        dispatcher.wake()
        home.changed()

    def incident_said() -> None:
        sender.wake()
        home.changed()

    reconciler = Reconciler(store=store, cloudrun=cloudrun, collector=collector,
                            reporter=RolloutReporter(linker, sent=said_and_maybe_ended), owner=owner,
                            interval_s=config.engine.interval, lease_s=config.engine.lease,
                            freezes=config.freeze_windows(), locks=LockStore(store))
    incident_store = IncidentStore(store)
    incidents = IncidentEngine(config, incident_store, linker, sent=incident_said)
    sweeper = Sweeper(config, cloudrun, prober, incident_store, incidents, owner)
    alerts = config.defaults.alerts
    stats = Stats(store, incident_store, Artifacts(env, store, timeout=engine.google_timeout))
    digests = Digests(config, store, incident_store, sweeper, linker, owner, sent=sender.wake, stats=stats)
    watch = PostDeployWatch(config, store, incident_store, logs, budget, cloudrun, prober, owner,
                            log_lag_s=engine.log_lag, sent=sender.wake)
    shortest_watch = min((config.canary_for(name).watch for name in config.services), default=0.0) or 300.0
    scheduler = Scheduler([Job("sweep", every(alerts.interval), sweeper.run),
                           Job("incident-tick", every(min(30.0, max(1.0, alerts.escalate_after / 4))),
                               lambda fire, late: incidents.tick()),
                           Job(WATCH_JOB, every(max(1.0, min(30.0, shortest_watch / 10))), watch.run),
                           *digests.jobs()])
    def wake() -> None:
        reconciler.wake()
        dispatcher.wake()

    runtime = Runtime(config=config, slack=slack, prober=prober, cloudrun=cloudrun, store=store,
                      runbook_link=linker, wake=wake, logs=logs, log_budget=budget, incidents=incidents,
                      digests=digests, usergroups=UserGroups(config.usergroup_ids(), slack.usergroup_members),
                      stats=stats)
    home = HomeTabs(config, store, incident_store, sweeper, linker, slack, lambda: runtime.grants, runtime.groups_of)
    bolt = AsyncApp(signing_secret=credentials.signing_secret, client=slack.client, process_before_response=False)
    bolt.use(once_per_event(SeenEvents(store)))

    async def home_opened(event: dict[str, Any]) -> None:
        if event.get("tab") == "home" and isinstance(event.get("user"), str):
            await home.opened(event["user"])

    bolt.event("app_home_opened")(home_opened)
    for command in all_commands():
        bolt.command(command.slash)(_listener(command, runtime))

    async def unknown(ack: AsyncAck, command: dict[str, Any]) -> None:
        named = echoed(str(command.get("command", "")))
        await ack(text=f":grey_question: I don't know `{named}`. `/help` lists what I can do.")

    bolt.command(re.compile(r"^/.+"))(unknown)

    async def button(ack: AsyncAck, body: dict[str, Any]) -> None:
        await handle_button(body, ack, runtime)
        clicker = from_home(body)
        if clicker is not None:
            await home.clicked(clicker)

    register_modals(bolt, runtime)
    bolt.action(re.compile(".*"))(button)  # every button: one the bot does not know is answered, not left a 404

    async def _hand_over(reconciling: asyncio.Task[None], loops: list[asyncio.Task[None]]) -> None:
        """Shutting down (Cloud Run's SIGTERM, 10 s before its SIGKILL): claim no more rollouts, let the tick in
        progress persist what it did, give the leases up so another instance carries on at once (except those of a
        write still in flight), and post what is due for Slack, all within SHUTDOWN_S; what is left in the outbox
        is sent by the next instance."""
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_S
        reconciler.stop()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(reconciling, timeout=SHUTDOWN_S / 2)  # cancelled past it: the write stays pending
        for loop in loops:
            loop.cancel()
        for loop in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        in_flight = set(reconciler.writing)  # a write that runs on in its thread keeps its lease till it runs out
        try:
            released = await asyncio.to_thread(store.release_rollouts, owner, in_flight)
        except StoreUnavailable as exc:
            log.error("could not give up the rollout leases (they run out by themselves): %s", exc)
        else:
            log.info("shutting down: gave up %d rollout lease(s); %d kept with a write in flight", released,
                     len(in_flight))
        await sender.hand_over(deadline - asyncio.get_running_loop().time())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        reconciling = asyncio.create_task(reconciler.run(), name="reconciler")
        loops = [asyncio.create_task(sender.run(), name="outbox"),
                 asyncio.create_task(scheduler.run(), name="scheduler"),
                 asyncio.create_task(runtime.usergroups.run(), name="usergroups"),
                 asyncio.create_task(dispatcher.run(), name="dispatcher"),
                 asyncio.create_task(home.run(), name="home")]
        try:
            if socket is not None:
                await socket.open()
            yield
        finally:
            if socket is not None:  # first, so that no request starts work during the hand-over
                await socket.aclose()
            await _hand_over(reconciling, loops)
            await bot.aclose()

    async def unroutable_click(payload: Mapping[str, Any]) -> None:
        await handle_button(payload, _bare_ack, runtime)

    socket: SocketModeRequests | None = None
    slack_events: SlackEvents | None = None
    if socket_url is not None:
        if credentials.app_token is None:
            raise ValueError("Socket Mode needs the app-level token, but none was read")
        socket = SocketModeRequests(bolt, credentials.app_token, socket_url, routable=routable,
                                    unroutable=unroutable_click)
    else:
        slack_events = SlackEvents(bolt, credentials.signing_secret, routable=routable, unroutable=unroutable_click)
    web = web_app(slack_events, runbooks, config.project, lifespan, link_key=link_key,
                  monitoring_token=credentials.monitoring_webhook_token, on_alert=on_alert or incidents.from_monitoring)
    bot = Bot(runtime, bolt, web, reconciler, sweeper, sender, scheduler)
    return bot
