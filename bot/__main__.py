"""The `chatops` command line: check-config | sandbox."""

from __future__ import annotations

import argparse
import sys

from bot.config import ConfigError, load_config, summary


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.file}: OK: {summary(config)}")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from sandbox.runner import main as run_sandbox

    return run_sandbox(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chatops", description="Operate Cloud Run services from Slack.")
    commands = parser.add_subparsers(dest="command", required=True)
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
