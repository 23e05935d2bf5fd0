"""The `chatops` command line: serve | sandbox | check-config | migrate."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bot.config import ConfigError, load_config, summary


def _check_config(args: argparse.Namespace) -> int:
    from bot.runbooks import check_runbooks, runbooks_beside

    try:
        config = load_config(args.file)
        runbooks = runbooks_beside(Path(args.file))
        problems = check_runbooks(config, runbooks)
        if problems:
            raise ConfigError(args.file, problems)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.file}: OK: {summary(config)}; {len(runbooks.services())} runbooks, every link resolves")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from bot.serve import serve

    return serve(args)


def _migrate(args: argparse.Namespace) -> int:
    from bot.adapters.store import default_url, migrate_command

    return migrate_command(args.database_url or default_url())


def _sandbox(args: argparse.Namespace) -> int:
    from sandbox.runner import main as run_sandbox

    return run_sandbox(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chatops", description="Operate Cloud Run services from Slack.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve Slack on PORT; secrets from Secret Manager")
    serve.add_argument("--config", default=os.environ.get("CHATOPS_CONFIG", "chatops.yaml"))
    serve.add_argument("--host", default="0.0.0.0", help="default 0.0.0.0, as Cloud Run routes to the container")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    serve.add_argument("--socket-mode", action="store_true",
                       help="take Slack's requests over Socket Mode (app-level token from secrets.slack_app_token), "
                            "for a laptop or a network with no public URL")
    serve.set_defaults(handler=_serve)
    migrate = commands.add_parser("migrate", help="bring the database to the latest schema")
    migrate.add_argument("--database-url", help="default: CHATOPS_DATABASE_URL, else sqlite:///chatops.db")
    migrate.set_defaults(handler=_migrate)
    check = commands.add_parser("check-config", help="validate a fleet config; exit 2 and list every problem")
    check.add_argument("file")
    check.set_defaults(handler=_check_config)
    sandbox = commands.add_parser("sandbox", help="run the emulated Google and Slack world on 127.0.0.1")
    from sandbox.runner import add_arguments

    add_arguments(sandbox)
    sandbox.set_defaults(handler=_sandbox)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
