"""`chatops serve`: read the secrets, migrate the store, and serve Slack on PORT (or, with `--socket-mode`, take
Slack's requests over a WebSocket the bot opens, serving only health and runbook pages on PORT).

Every way start-up can fail ends in one line that says what is missing and how to fix it, because the
person reading it is looking at Cloud Run's log viewer, not at a traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import secrets
import socket
import sys
from pathlib import Path

import uvicorn

from bot.adapters.secrets import SecretsUnavailable, fetch_credentials
from bot.adapters.socket_url import first_url
from bot.adapters.store import Store, StoreUnavailable, default_url
from bot.app import build
from bot.config import ConfigError, load_config
from bot.environment import Environment
from bot.log import configure
from bot.runbooks import check_runbooks, runbooks_beside

log = logging.getLogger("chatops")


def serve(args: argparse.Namespace) -> int:
    json_logs = os.environ.get("CHATOPS_LOG_FORMAT", "json" if not sys.stdout.isatty() else "text") == "json"
    redact = configure(json_output=json_logs)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.critical("cannot start: %s", exc)
        return 2
    runbooks = runbooks_beside(Path(args.config))
    problems = check_runbooks(config, runbooks)
    if problems:
        log.critical("cannot start: %s: %s", args.config, "; ".join(str(p) for p in problems))
        return 2
    env = Environment.from_env()
    try:
        store = Store(env.database_url or default_url())
    except StoreUnavailable as exc:
        log.critical("cannot start: %s", exc)
        return 2
    if os.environ.get("K_SERVICE") and store.embedded:
        log.critical("cannot start: on Cloud Run (K_SERVICE=%s) the database must be PostgreSQL: set "
                     "CHATOPS_DATABASE_URL=postgresql+psycopg://USER:PASSWORD@/DB?host=/cloudsql/INSTANCE. SQLite "
                     "there lives on an in-memory disk, lost at every restart, and each instance would have its own",
                     os.environ["K_SERVICE"])
        return 2
    try:
        credentials = fetch_credentials(config, env, socket_mode=args.socket_mode)
    except SecretsUnavailable as exc:
        log.critical("cannot start: %s", exc)
        return 1
    redact.add(credentials.values())
    try:
        store.migrate()
    except StoreUnavailable as exc:
        log.critical("cannot start: %s", exc)
        return 1
    public_url = env.public_url or f"http://127.0.0.1:{args.port}"
    # Leases are held by this name. Random unless given: Cloud Run instances may share a hostname and port, and
    # two instances under one name would both act on a rollout. A process restarted under the same given name
    # (the sandbox does this) takes its rollouts back at once instead of after the lease runs out.
    owner = os.environ.get("CHATOPS_INSTANCE_ID") or f"{socket.gethostname()}:{args.port}:{secrets.token_hex(4)}"
    socket_url: str | None = None
    if credentials.app_token is not None:
        try:
            socket_url = first_url(credentials.app_token, env.slack_api_url, config.secrets.slack_app_token)
        except SecretsUnavailable as exc:
            log.critical("cannot start: %s", exc)
            return 1
    bot = build(config, env, credentials, store, runbooks, public_url=public_url, owner=owner, socket_url=socket_url)
    log.info("serving %d services of %s/%s on port %d%s", len(config.services), config.project, config.region,
             args.port, "; Slack's requests over Socket Mode" if socket_url else "")
    # What start-up made (modules, clients, the config: some 165,000 objects) lives as long as the process. Left in
    # the collector's oldest generation, every full collection scanned it all, stopping every thread, the web
    # server's loop included, for over 100 ms while a large fleet was probed; frozen, those scan what came after.
    gc.collect()
    gc.freeze()
    # On SIGTERM, requests in flight get 3 s: Slack waits no longer for an ack ("you only have 3 seconds to respond",
    # https://docs.slack.dev/tools/bolt-python/concepts/acknowledge), and Cloud Run kills the instance 10 s after
    # SIGTERM, so the rest (bot/app.py, SHUTDOWN_S) needs the time.
    uvicorn.run(bot.web, host=args.host, port=args.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=3)
    return 0
