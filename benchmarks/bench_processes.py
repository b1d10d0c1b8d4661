"""Throughput of 1, 2 and 3 `campaignbot run` processes sharing one PostgreSQL ledger.

    python benchmarks/bench_processes.py [--n 20000] [--processes 1,2,3]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

For each process count: a fresh PostgreSQL database (created from --database-url or
CAMPAIGNBOT_BENCH_POSTGRES_URL, dropped afterwards) with N active subscribers
(locales en/fi/pl, three time zones), a campaign with one alert falling due a few
seconds after the processes have started, and k real `campaignbot run` processes
(8 SMTP connections each, the default) against one loopback SMTP sink. The alert is
fired once (by whichever process gets there first) and the processes claim batches
of it with SKIP LOCKED. The clock runs from the alert's `fired_at` to the last
delivery's `sent_at` in the ledger; `sent_at` is written when a sender flushes its
outcomes (every 50 deliveries), so it trails the sink's acceptance by at most one
flush. Each process's share comes from its own /metrics.

The sink is Postfix's `smtp-sink` when installed (`apt-get install postfix`; the
daemon is not needed), else aiosmtpd's Sink handler in a separate process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sink import LOCALES, ZONES, free_port, start_sink

REPO = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: the alert falls due this long after every process has logged "started"
LEAD_S = 3.0

CAMPAIGN = """\
[campaign]
name = "Stay in the Mine Ban Treaty"
sender = "Mine Ban Alerts <alerts@example.org>"
timezone = "Europe/Helsinki"
catch_up = "6h"

[[events]]
id = "fi-final-vote"
title = {{ en = "Finland: final vote on leaving the Mine Ban Treaty", \
fi = "Eduskunta äänestää Ottawan sopimuksesta eroamisesta", \
pl = "Finlandia: ostateczne głosowanie nad wystąpieniem z traktatu" }}
when = {when:%Y-%m-%dT%H:%M:%SZ}
timezone = "Europe/Helsinki"
summary = "Parliament votes a final time on the withdrawal bill."
action = {{ text = "Write to your MP", url = "https://example.org/act/fi" }}
links = ["https://example.org/briefing/fi"]
reminders = ["0"]
"""


# -- the database ---------------------------------------------------------------------


async def _admin(base_url: str, sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(base_url).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _prepare(url: str, n: int) -> None:
    """Migrate and insert N active subscribers (streamed, 5,000 rows per INSERT)."""
    from sqlalchemy import insert

    from campaignbot.storage.database import open_database
    from campaignbot.storage.tables import subscribers

    db = open_database(url)
    try:
        await db.upgrade()
        now = datetime.now(UTC)
        async with db.engine.begin() as conn:
            for start in range(0, n, 5000):
                rows = [
                    {
                        "email": f"subscriber{i}@example.org",
                        "email_key": f"subscriber{i}@example.org",
                        "name": f"Subscriber {i}",
                        "locale": LOCALES[i % 3],
                        "timezone": ZONES[i % 3],
                        "countries": ";FI;",
                        "topics": ";mine-ban-treaty;",
                        "follows_all": False,
                        "status": "active",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(n, start + 5000))
                ]
                await conn.execute(insert(subscribers), rows)
    finally:
        await db.dispose()


async def _progress(url: str) -> tuple[int, datetime | None, datetime | None]:
    """(sent deliveries, when the alert fired, the last sent_at)."""
    from sqlalchemy import func, select

    from campaignbot.storage.database import open_database
    from campaignbot.storage.tables import alerts, deliveries

    db = open_database(url, pool_size=1)
    try:
        async with db.engine.connect() as conn:
            sent, last = (
                await conn.execute(
                    select(func.count(), func.max(deliveries.c.sent_at)).where(
                        deliveries.c.status == "sent"
                    )
                )
            ).one()
            fired = (await conn.execute(select(func.min(alerts.c.fired_at)))).scalar()
        return int(sent), fired, last
    finally:
        await db.dispose()


# -- the processes --------------------------------------------------------------------


class Bot:
    """One `campaignbot run`; its log goes to a file (no pipe to drain)."""

    def __init__(self, env: dict[str, str], folder: Path, index: int) -> None:
        self.port = free_port()
        self.log_path = folder / f"run{index}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "campaignbot", "run"],
                env=env
                | {
                    "CAMPAIGNBOT_HTTP__PORT": str(free_port()),
                    "CAMPAIGNBOT_ADMIN__PORT": str(self.port),  # /metrics
                },
                cwd=folder,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_started(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while "started" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"campaignbot run did not start:\n{self.log()}")
            time.sleep(0.05)

    def sent(self) -> int:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        match = re.search(
            r'^campaignbot_sender_outcomes_total\{outcome="sent"\} (\S+)$', text, re.MULTILINE
        )
        return int(float(match.group(1))) if match else -1

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory (VmHWM), while it still runs."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) / 1024 if match else -1.0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def measure(k: int, n: int, base_url: str, smtp_port: int, timeout_s: float) -> dict[str, Any]:
    """One measurement: k processes, N subscribers, a fresh database."""
    from sqlalchemy.engine import make_url

    name = f"campaignbot_bench_{uuid.uuid4().hex[:10]}"
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    folder = Path(tempfile.mkdtemp(prefix="bench-processes-"))
    asyncio.run(_admin(base_url, f'CREATE DATABASE "{name}"'))
    bots: list[Bot] = []
    try:
        asyncio.run(_prepare(url, n))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
        env.update(
            CAMPAIGNBOT_CONFIG=str(folder / "campaign.toml"),
            CAMPAIGNBOT_TEMPLATES=str(REPO / "templates"),
            CAMPAIGNBOT_DATABASE_URL=url,
            CAMPAIGNBOT_SECRET_KEY="benchmark-secret-key-0123456789abcdef",
            CAMPAIGNBOT_PUBLIC_URL="https://alerts.example.org",
            CAMPAIGNBOT_SMTP__HOST="127.0.0.1",
            CAMPAIGNBOT_SMTP__PORT=str(smtp_port),
            CAMPAIGNBOT_SMTP__TLS="none",
        )
        # the alert is placed in the future, so no process fires it before all started
        due = datetime.now(UTC) + timedelta(seconds=30)
        (folder / "campaign.toml").write_text(CAMPAIGN.format(when=due), encoding="utf-8")
        bots = [Bot(env, folder, i) for i in range(k)]
        for bot in bots:
            bot.wait_started()
        # ... then moved to LEAD_S from now; every process reloads and fires it (once)
        due = datetime.now(UTC) + timedelta(seconds=LEAD_S)
        tmp = folder / "campaign.tmp"
        tmp.write_text(CAMPAIGN.format(when=due), encoding="utf-8")
        tmp.replace(folder / "campaign.toml")
        deadline = time.monotonic() + LEAD_S + timeout_s
        while True:
            sent, fired, last = asyncio.run(_progress(url))
            if sent >= n:
                break
            for bot in bots:
                if bot.proc.poll() is not None:
                    raise SystemExit(f"campaignbot run exited early:\n{bot.log()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"only {sent} of {n} sent after {timeout_s} s")
            time.sleep(0.25)
        assert fired is not None and last is not None
        shares = [bot.sent() for bot in bots]
        rss_mb = max(bot.peak_rss_mb() for bot in bots)
        codes = [bot.stop() for bot in bots]
        seconds = (last - fired).total_seconds()
        return {
            "seconds": seconds,
            "rate": n / seconds,
            # the organizer's view: from the alert's due time to the last message accepted
            "due_s": (last - due).total_seconds(),
            "rss_mb": rss_mb,
            "shares": shares,
            "codes": codes,
        }
    finally:
        for bot in bots:
            bot.stop()
        asyncio.run(_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="subscribers (default 20000)")
    parser.add_argument("--processes", default="1,2,3", help="process counts (default 1,2,3)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CAMPAIGNBOT_BENCH_POSTGRES_URL", DEFAULT_URL),
        help="PostgreSQL server to create the benchmark databases on",
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    args = parser.parse_args()

    sink, port, sink_name = start_sink()
    try:
        print(f"sink: {sink_name} on 127.0.0.1:{port}; N = {args.n}; {os.cpu_count()} CPUs")
        first: dict[str, Any] | None = None
        for k in (int(p) for p in args.processes.split(",")):
            r = measure(k, args.n, args.database_url, port, args.timeout)
            shares = " / ".join(str(s) for s in r["shares"])
            first = first or r
            print(
                f"{k} process{'es' if k > 1 else '  '}: {r['rate']:6.0f} msg/s "
                f"({r['rate'] / first['rate']:.2f}x the first), {r['seconds']:6.2f} s fired -> "
                f"last accepted, {r['due_s']:6.2f} s due -> last accepted; peak RSS "
                f"{r['rss_mb']:.0f} MB; sent per process {shares}; exit codes {r['codes']}",
                flush=True,
            )
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
