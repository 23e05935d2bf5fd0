"""Log lines are JSON Cloud Logging understands, and no secret the bot holds ever reaches one."""

from __future__ import annotations

import json
import logging
import secrets

from bot.log import REDACTED, CloudLoggingFormatter, Redactor, trace_context


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("chatops", logging.ERROR, __file__, 1, message, args, exc_info)


def test_lines_carry_severity_message_and_the_request_trace() -> None:
    formatter = CloudLoggingFormatter(Redactor())
    token = trace_context.set("projects/p/traces/abc")
    try:
        line = json.loads(formatter.format(record("deploy of %s failed", "prediction-worker")))
    finally:
        trace_context.reset(token)
    assert line["severity"] == "ERROR"
    assert line["message"] == "deploy of prediction-worker failed"
    assert line["logging.googleapis.com/trace"] == "projects/p/traces/abc"


def test_secrets_are_redacted_from_messages_arguments_and_tracebacks() -> None:
    token = f"xoxb-{secrets.token_hex(12)}"
    signing = secrets.token_hex(16)
    redact = Redactor()
    redact.add([token, signing])
    formatter = CloudLoggingFormatter(redact)
    try:
        raise RuntimeError(f"Slack refused token {token}")
    except RuntimeError as exc:
        failure = exc
    lines = [formatter.format(record("calling with %s", token)),
             formatter.format(record(f"secret is {signing}")),
             formatter.format(record("it failed", exc=failure))]
    for line in lines:
        assert token not in line and signing not in line
        assert REDACTED in line
