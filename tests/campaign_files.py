"""Write small campaign files with events placed relative to a given instant."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

HEADER = """\
[campaign]
name = "Stay in the Mine Ban Treaty"
sender = "Mine Ban Alerts <alerts@example.org>"
default_locale = "en"
timezone = "Europe/Helsinki"
send_at = "09:00"
reminders = ["1d", "0"]
catch_up = "{catch_up}"
"""


def event_toml(
    event_id: str,
    when: datetime,
    *,
    reminders: list[str] | None = None,
    countries: list[str] | None = None,
    status: str = "scheduled",
) -> str:
    lines = [
        "[[events]]",
        f'id = "{event_id}"',
        f'title = {{ en = "Vote {event_id}", fi = "Äänestys {event_id}", pl = "Głosowanie {event_id}" }}',
        f"when = {when.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
        'timezone = "Europe/Helsinki"',
        f'status = "{status}"',
        'action = { text = "Write to your MP", url = "https://example.org/act" }',
    ]
    if reminders is not None:
        lines.append("reminders = [" + ", ".join(f'"{r}"' for r in reminders) + "]")
    if countries is not None:
        lines.append("audience = { countries = [" + ", ".join(f'"{c}"' for c in countries) + "] }")
    return "\n".join(lines) + "\n"


def write_campaign(path: Path, *events: str, catch_up: str = "6h") -> Path:
    text = HEADER.format(catch_up=catch_up) + "\n" + "\n".join(events)
    # write-then-rename, as editors do, so a watcher never sees half a file
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
