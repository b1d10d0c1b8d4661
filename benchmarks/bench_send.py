"""Throughput of the whole delivery pipeline against a loopback SMTP sink.

    python benchmarks/bench_send.py [--n 10000] [--connections 1,8,32] [--rss-n 100000]

campaignbot runs in ONE process per measurement: a fresh SQLite ledger with N
subscribers, one alert fired, then the sender (claim, per-subscriber rendering, SMTP,
batched outcome writes) until everything is accepted. The same messages also go out
with mailmerge (its CLI, one SMTP connection per message) and with a bare aiosmtplib
sender (32 connections, campaignbot's own messages built before the clock starts, no
rendering, no database);
campaignbot's throughput is printed as a ratio to both. Each measurement runs in its
own process so that peak RSS (ru_maxrss) is that measurement's alone.

The sink is Postfix's `smtp-sink` when installed (`apt-get install postfix`; the
daemon is not needed), else aiosmtpd's Sink handler in a separate process.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sink import LOCALES, ZONES, start_sink

REPO = Path(__file__).resolve().parent.parent


# -- campaignbot, in a child process --------------------------------------------------


def _campaign() -> Any:
    from campaignbot.campaign.model import parse_campaign

    when = datetime.now(UTC) + timedelta(days=30)
    return parse_campaign(
        {
            "campaign": {
                "name": "Stay in the Mine Ban Treaty",
                "sender": "Mine Ban Alerts <alerts@example.org>",
                "timezone": "Europe/Helsinki",
            },
            "events": [
                {
                    "id": "fi-final-vote",
                    "title": {
                        "en": "Finland: final vote on leaving the Mine Ban Treaty",
                        "fi": "Eduskunta äänestää Ottawan sopimuksesta eroamisesta",
                        "pl": "Finlandia: ostateczne głosowanie nad wystąpieniem z traktatu",
                    },
                    "when": when.isoformat(timespec="seconds"),
                    "summary": "Parliament votes a final time on the withdrawal bill.",
                    "action": {"text": "Write to your MP", "url": "https://example.org/act/fi"},
                    "links": ["https://example.org/briefing/fi"],
                    "reminders": ["1d", "0"],
                }
            ],
        },
        source="bench.toml",
    )


def _renderer(campaign: Any) -> Any:
    from campaignbot.email.render import Renderer
    from campaignbot.email.tokens import LinkSigner

    signer = LinkSigner("benchmark-secret-key")
    return Renderer(
        REPO / "templates", campaign, signer=signer, public_url="https://alerts.example.org"
    )


async def _add_subscribers(db: Any, n: int) -> None:
    from sqlalchemy import insert

    from campaignbot.storage.tables import subscribers

    now = datetime.now(UTC)
    async with db.engine.begin() as conn:
        for start in range(0, n, 5000):  # streamed: never all rows in memory
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


async def run_campaignbot(n: int, connections: int, port: int, profile: bool) -> dict[str, Any]:
    from campaignbot.campaign.planning import alerts_for_event
    from campaignbot.delivery.ledger import Ledger
    from campaignbot.delivery.sender import Sender
    from campaignbot.delivery.transport import SMTPTransport
    from campaignbot.settings import Settings, SMTPSettings, TLSMode
    from campaignbot.storage.database import open_database
    from campaignbot.subscribers.store import audience_clause

    folder = Path(tempfile.mkdtemp(prefix="bench-send-"))
    try:
        db = open_database(f"sqlite:///{folder / 'bench.db'}")
        await db.upgrade()
        await _add_subscribers(db, n)
        campaign = _campaign()
        renderer = _renderer(campaign)
        event = campaign.events[0]
        alert = next(a for a in alerts_for_event(event, campaign.campaign.send_at))
        smtp = SMTPSettings(
            host="127.0.0.1", port=port, tls=TLSMode.NONE, max_connections=connections
        )
        settings = Settings(smtp=smtp, lease_s=600)
        transport = SMTPTransport(smtp)
        ledger = Ledger(db, owner="bench")
        sender = Sender(
            ledger, transport, lambda: (renderer, campaign), clock=lambda: datetime.now(UTC),
            settings=settings,
        )  # fmt: skip
        profiler = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="enabled")
            profiler.start()
        started, cpu = time.perf_counter(), _cpu_s()
        fired = await ledger.fire_alert(
            alert, audience_clause(event.audience), now=datetime.now(UTC)
        )
        totals = await sender.run_until_idle()
        elapsed = time.perf_counter() - started
        cpu_us = (_cpu_s() - cpu) / n * 1e6
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
        await transport.aclose()
        await db.dispose()
        if totals.get("sent") != n or fired.deliveries != n:
            raise SystemExit(f"expected {n} sent, got {dict(totals)}")
        return {"seconds": elapsed, "rate": n / elapsed, "rss_mb": _peak_rss_mb(), "cpu_us": cpu_us}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cpu_s() -> float:
    """This process's CPU time (user + system): steadier than msg/s on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- bare aiosmtplib, in a child process --------------------------------------------


def _messages(n: int) -> tuple[list[bytes], Any]:
    """The bytes campaignbot's sender hands the transport for subscribers 0..n-1 (the
    per-subscriber fast path, `Renderer.wire_alert`), and one EmailMessage like them."""
    from campaignbot.email.render import Recipient

    campaign = _campaign()
    renderer = _renderer(campaign)
    event, now = campaign.events[0], datetime.now(UTC)
    data = [
        renderer.wire_alert(
            event,
            "1d",
            Recipient(i, f"subscriber{i}@example.org", f"Subscriber {i}", LOCALES[i % 3],
                      ZONES[i % 3]),
            now=now,
        ).data
        for i in range(n)
    ]  # fmt: skip
    one = renderer.render_alert(
        event,
        "1d",
        Recipient(1, "subscriber1@example.org", "Subscriber 1", "en", "Europe/Helsinki"),
        now=now,
    )
    return data, one


def _shrunk(data: bytes, size: int) -> bytes:
    """`data` with its body cut to make `size` bytes in all (the headers kept)."""
    head, _, body = data.partition(b"\r\n\r\n")
    room = max(0, size - len(head) - 4)
    return head + b"\r\n\r\n" + body[:room].rpartition(b"\r\n")[0] + b"\r\n"


async def run_bare(n: int, connections: int, port: int, variant: str) -> dict[str, Any]:
    """A bare aiosmtplib sender: `connections` sessions, `sendmail` of ready bytes.

    Variants (the levers): `bytes`, campaignbot's own per-subscriber messages, built
    before the clock starts; `flatten`, one EmailMessage handed to `send_message`
    (aiosmtplib flattens it for every send); `small`, the same bytes cut to 3,000 B
    (the size of the peers' messages)."""
    import aiosmtplib

    messages, one = _messages(n)
    if variant == "small":
        messages = [_shrunk(m, 3000) for m in messages]
    numbers = iter(range(n))

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, start_tls=False, local_hostname="localhost"
        )
        await smtp.connect()
        for i in numbers:
            to = f"subscriber{i}@example.org"
            if variant == "flatten":
                await smtp.send_message(one, sender="alerts@example.org", recipients=[to])
            else:
                await smtp.sendmail("alerts@example.org", [to], messages[i])
        await smtp.quit()

    started, cpu = time.perf_counter(), _cpu_s()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    cpu_us = (_cpu_s() - cpu) / n * 1e6
    size = sum(len(m) for m in messages) // n
    return {
        "seconds": elapsed,
        "rate": n / elapsed,
        "rss_mb": _peak_rss_mb(),
        "bytes": size,
        "cpu_us": cpu_us,
    }


# -- mailmerge ------------------------------------------------------------------------


def run_mailmerge(n: int, port: int) -> dict[str, Any]:
    mailmerge = Path(sys.executable).parent / "mailmerge"
    if not mailmerge.exists():
        return {"error": "mailmerge not installed (pip install mailmerge)"}
    folder = Path(tempfile.mkdtemp(prefix="bench-mailmerge-"))
    try:
        (folder / "template.txt").write_text(
            "TO: {{email}}\nSUBJECT: Tomorrow: Finland's final vote on leaving the Mine Ban "
            "Treaty\nFROM: Mine Ban Alerts <alerts@example.org>\n\nHi {{name}},\n\n"
            + "Parliament votes a final time on the withdrawal bill. Write to your MP.\n"
            * 40
        )
        with (folder / "database.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["email", "name"])
            for i in range(n):
                writer.writerow([f"subscriber{i}@example.org", f"Subscriber {i}"])
        (folder / "server.conf").write_text(
            f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\nratelimit = 0\n"
        )
        command = [
            str(mailmerge),
            "--no-dry-run",
            "--no-limit",
            "--output-format", "raw",
            "--template", str(folder / "template.txt"),
            "--database", str(folder / "database.csv"),
            "--config", str(folder / "server.conf"),
        ]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=folder)
        elapsed = time.perf_counter() - started
        return {"seconds": elapsed, "rate": n / elapsed}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- driver ---------------------------------------------------------------------------


def child(kind: str, **options: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; returns its JSON result."""
    command = [sys.executable, __file__, "--child", kind]
    for key, value in options.items():
        if value is True:
            command.append(f"--{key}")
        elif value is not False:
            command += [f"--{key}", str(value)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="subscribers (default 10000)")
    parser.add_argument("--connections", default="1,8,32", help="campaignbot connection counts")
    parser.add_argument("--mailmerge-n", type=int, default=None, help="messages for mailmerge")
    parser.add_argument("--rss-n", type=int, default=0, help="also measure RSS at this N")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the 8-conn run")
    parser.add_argument(
        "--levers",
        type=int,
        default=0,
        help="rounds of bare aiosmtplib with ready bytes / flattened / 3 kB messages",
    )
    parser.add_argument("--variant", default="bytes", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        conns = int(args.connections)
        if args.child == "campaignbot":
            result = asyncio.run(run_campaignbot(args.n, conns, args.port, args.profile))
        else:
            result = asyncio.run(run_bare(args.n, conns, args.port, args.variant))
        print(json.dumps(result))
        return

    sink, port, sink_name = start_sink()
    try:
        print(f"sink: {sink_name} on 127.0.0.1:{port}; N = {args.n}; {os.cpu_count()} CPUs")
        ours: dict[int, dict[str, Any]] = {}
        for conns in (int(c) for c in args.connections.split(",")):
            profile = args.profile
            ours[conns] = child(
                "campaignbot", n=args.n, connections=conns, port=port, profile=profile
            )
            r = ours[conns]
            print(
                f"campaignbot  {conns:>2} conn: {r['rate']:7.0f} msg/s, "
                f"{r['seconds']:6.2f} s fire->last accepted, {r['cpu_us']:.0f} us CPU/msg, "
                f"peak RSS {r['rss_mb']:.0f} MB"
            )
        bare = child("bare", n=args.n, connections=32, port=port)
        print(
            f"aiosmtplib   32 conn: {bare['rate']:7.0f} msg/s, {bare['seconds']:6.2f} s "
            f"(campaignbot's messages, pre-built, {bare['bytes']} B on average), "
            f"{bare['cpu_us']:.0f} us CPU/msg, peak RSS {bare['rss_mb']:.0f} MB"
        )
        if args.levers:
            # interleaved rounds: on a shared machine only figures taken side by side compare
            print(
                f"levers, bare aiosmtplib, {args.levers} interleaved rounds: ready bytes, "
                "one EmailMessage flattened per send, the bytes cut to 3,000 B"
            )
            for round_ in range(1, args.levers + 1):
                runs = {
                    variant: child("bare", n=args.n, connections=32, port=port, variant=variant)
                    for variant in ("bytes", "flatten", "small")
                }
                print(
                    f"  round {round_}: "
                    + ", ".join(
                        f"{variant} {r['rate']:.0f} msg/s {r['cpu_us']:.0f} us CPU/msg"
                        for variant, r in runs.items()
                    )
                )
        mm_n = args.mailmerge_n or args.n
        mm = run_mailmerge(mm_n, port)
        if "error" in mm:
            print(f"mailmerge: {mm['error']}")
        else:
            print(
                f"mailmerge     1 conn: {mm['rate']:7.0f} msg/s, {mm['seconds']:6.2f} s for {mm_n}"
            )
        best = max(ours.values(), key=lambda r: r["rate"])
        print(
            f"campaignbot best / aiosmtplib bare: {best['rate'] / bare['rate']:.2f} "
            f"(by CPU per message: {bare['cpu_us'] / best['cpu_us']:.2f})"
        )
        if "rate" in mm:
            print(f"campaignbot best / mailmerge: {best['rate'] / mm['rate']:.1f}x")
        if args.rss_n:
            big = child("campaignbot", n=args.rss_n, connections=8, port=port)
            small = ours.get(8) or child("campaignbot", n=args.n, connections=8, port=port)
            print(
                f"peak RSS at N={args.rss_n}: {big['rss_mb']:.0f} MB "
                f"({big['rss_mb'] / small['rss_mb']:.2f}x N={args.n}), {big['rate']:.0f} msg/s"
            )
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
