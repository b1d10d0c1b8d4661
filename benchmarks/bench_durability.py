"""What the crash bound costs: sender throughput with and without per-connection durability.

    python benchmarks/bench_durability.py [--n 3000] [--connections 4,8] [--postgres URL] [--runs 3]

Per-connection durability (the default, `Sender(durable_each=True)`): every outcome is
committed before its connection gets the next message, the commits of all connections
shared (group commit). The comparison (`durable_each=False`) is the former behaviour:
outcomes written every 50 messages, so a kill -9 may repeat up to that many. Same
pipeline as bench_send.py (fresh ledger, one alert fired, `run_until_idle` with the real
transport against a loopback sink), in this process, alternating the two modes.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_send import _add_subscribers, _campaign, _renderer
from sink import start_sink


async def _postgres_db(base: str) -> tuple[str, Any]:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"campaignbot_bench_{uuid.uuid4().hex[:10]}"
    admin = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    return make_url(base).set(database=name).render_as_string(hide_password=False), drop


async def measure(
    n: int, connections: int, port: int, durable: bool, postgres: str | None
) -> float:
    from campaignbot.campaign.planning import alerts_for_event
    from campaignbot.delivery.ledger import Ledger
    from campaignbot.delivery.sender import Sender
    from campaignbot.delivery.transport import SMTPTransport
    from campaignbot.settings import Settings, SMTPSettings, TLSMode
    from campaignbot.storage.database import open_database
    from campaignbot.subscribers.store import audience_clause

    folder = Path(tempfile.mkdtemp(prefix="bench-durability-"))
    drop = None
    try:
        if postgres:
            url, drop = await _postgres_db(postgres)
        else:
            url = f"sqlite:///{folder / 'bench.db'}"
        db = open_database(url)
        await db.upgrade()
        await _add_subscribers(db, n)
        campaign = _campaign()
        renderer = _renderer(campaign)
        event = campaign.events[0]
        alert = next(iter(alerts_for_event(event, campaign.campaign.send_at)))
        smtp = SMTPSettings(
            host="127.0.0.1", port=port, tls=TLSMode.NONE, max_connections=connections
        )
        transport = SMTPTransport(smtp)
        ledger = Ledger(db, owner="bench")
        sender = Sender(
            ledger, transport, lambda: (renderer, campaign), clock=lambda: datetime.now(UTC),
            settings=Settings(smtp=smtp, lease_s=600), durable_each=durable,
        )  # fmt: skip
        started = time.perf_counter()
        await ledger.fire_alert(alert, audience_clause(event.audience), now=datetime.now(UTC))
        totals = await sender.run_until_idle()
        elapsed = time.perf_counter() - started
        await transport.aclose()
        await db.dispose()
        if totals.get("sent") != n:
            raise SystemExit(f"expected {n} sent, got {dict(totals)}")
        return n / elapsed
    finally:
        if drop is not None:
            await drop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--connections", default="4,8")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", help="postgresql://... (a database is created and dropped)")
    args = parser.parse_args()
    sink, port, sink_name = start_sink()
    print(f"sink: {sink_name}", flush=True)
    try:
        backend = "postgresql" if args.postgres else "sqlite"
        for connections in (int(c) for c in args.connections.split(",")):
            rates: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.runs):
                for durable in (False, True):
                    rates[durable].append(
                        asyncio.run(measure(args.n, connections, port, durable, args.postgres))
                    )
            before = " ".join(f"{r:.0f}" for r in rates[False])
            after = " ".join(f"{r:.0f}" for r in rates[True])
            best_b, best_a = max(rates[False]), max(rates[True])
            print(
                f"{backend} N={args.n} connections={connections}: "
                f"per-50 flush {before} msg/s | per-connection group commit {after} msg/s "
                f"(best {best_a / best_b:.2f}x)",
                flush=True,
            )
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
