"""Log lines to stderr, one per line, flushed at once so that `docker logs` shows them live.

Two formats: plain text (the default) and JSON, one object per line. Structured fields are
passed as `extra={"fields": {...}}` and appear as `key=value` pairs or JSON members.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

LOGGER_NAME = "longpoll"


def _timestamp(record: logging.LogRecord) -> str:
    seconds = int(record.created)
    millis = int((record.created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """`2026-12-03T15:47:25.123Z INFO server: poll answered status=200 event=full`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        pairs = "".join(f" {key}={value}" for key, value in fields.items())
        line = f"{_timestamp(record)} {record.levelname} {record.name.rpartition('.')[2]}: {record.getMessage()}{pairs}"
        if record.exc_info:
            line += " error=" + repr(str(record.exc_info[1]))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line with time, level, logger, message and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["error"] = str(record.exc_info[1])
        return json.dumps(entry, default=str)


class _FlushingHandler(logging.StreamHandler):
    """Writes each record and flushes, whatever buffering the stream has."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:  # pragma: no cover - logging must never take the service down
            self.handleError(record)


def configure_logging(log_format: str, stream: TextIO | None = None) -> logging.Logger:
    """Send the service's records (and aiohttp's warnings) to `stream` in `log_format`."""
    handler = _FlushingHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    library = logging.getLogger("aiohttp")
    for each, level in ((logger, logging.INFO), (library, logging.WARNING)):
        each.handlers[:] = [handler]
        each.setLevel(level)
        each.propagate = False
    return logger
