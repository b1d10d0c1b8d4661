"""Logging set-up: readable lines for people, `--log-format json` for machines."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# attributes every LogRecord has; anything else came in through `extra=`
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the record's `extra` fields (e.g. `action`)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        # structured extras (dicts of counts, lists) stay JSON; anything else that JSON
        # cannot hold (datetimes, paths, enums) is written as its str()
        try:
            return json.dumps(entry, ensure_ascii=False, default=str)
        except (TypeError, ValueError):  # e.g. tuple keys or a cycle: never lose the line
            flat = {
                k: v if isinstance(v, str | int | float | bool | None) else str(v)
                for k, v in entry.items()
            }
            return json.dumps(flat, ensure_ascii=False)


def configure_logging(*, level: int, json_format: bool) -> None:
    """Send every log line to stderr, as text or (for machines) one JSON object each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_format
        else logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # third-party chatter stays at warnings
    for name in (
        "alembic",
        "apscheduler",
        "aiosqlite",
        "asyncio",
        "watchfiles",
        "uvicorn",
        "mail.log",
    ):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
