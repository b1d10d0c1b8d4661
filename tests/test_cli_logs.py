"""`run --log-format json`: one JSON object per line, structured fields kept as JSON."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from campaignbot.logs import JsonFormatter


def _line(**extra: object) -> dict[str, object]:
    record = logging.makeLogRecord(
        {"name": "campaignbot.test", "levelname": "INFO", "msg": "alert done", **extra}
    )
    parsed = json.loads(JsonFormatter().format(record))
    assert isinstance(parsed, dict)
    return parsed


def test_dict_and_list_extras_are_json_not_python_repr() -> None:
    entry = _line(action="alert_completed", counts={"sent": 3, "failed": 1}, keys=["a:1d"])
    assert entry["counts"] == {"sent": 3, "failed": 1}
    assert entry["keys"] == ["a:1d"]
    assert entry["action"] == "alert_completed" and entry["message"] == "alert done"


def test_values_json_cannot_hold_are_written_as_text() -> None:
    when = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    entry = _line(due=when, path=Path("var/outbox"), odd={("a", 1): 2})
    assert entry["due"] == "2026-06-01 09:00:00+00:00"
    assert entry["path"] == "var/outbox"
    assert entry["odd"] == "{('a', 1): 2}"
