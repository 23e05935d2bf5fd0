"""Logs on stdout as one JSON object a line, in the shape Cloud Logging parses on Cloud Run
(severity, message, trace), with every secret the bot holds replaced before anything is written."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime

trace_context: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="")
"""`projects/P/traces/T` of the request being handled, from Cloud Run's X-Cloud-Trace-Context."""

REDACTED = "[redacted]"
QUIET = ("slack_bolt", "slack_sdk", "uvicorn.access", "google", "urllib3", "httpx", "aiohttp.access")
"""Libraries that log every request (URLs with their query strings, bodies) below WARNING: kept to WARNING and up."""


class Redactor:
    """Holds the values that must never reach a log line; filled once the secrets are read."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, values: Iterable[str]) -> None:
        self._secrets.extend(v for v in values if len(v) >= 8)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "severity": "WARNING" if record.levelname == "WARN" else record.levelname,
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        if record.exc_info:
            entry["message"] = f"{message}\n{''.join(traceback.format_exception(*record.exc_info))}"
        trace = trace_context.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        for key in ("service", "rollout", "user", "command"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        return self.redact(json.dumps(entry, default=str))


class PlainFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def configure(*, json_output: bool, level: int = logging.INFO) -> Redactor:
    redact = Redactor()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(redact) if json_output else PlainFormatter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return redact
