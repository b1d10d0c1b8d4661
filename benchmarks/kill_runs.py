"""The crash bound, repeated: SIGKILL `campaignbot run` at 40 % of 3,000 messages, ten times.

    python benchmarks/kill_runs.py [--runs 10] [--n 3000] [--connections 4] [--postgres URL]

Each run: a fresh database (SQLite file, or a PostgreSQL database created and dropped),
a slow loopback SMTP server (aiosmtpd, 10 ms per DATA), `campaignbot run` SIGKILLed
once 40 % of the messages arrived, restarted after its lease expired, run to the end.
Prints what arrived twice each time; the spec allows at most MAX_CONNECTIONS. Run it
from the repository root (it uses the test suite's SMTP server and scenario).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the tests package: the scenario and the SMTP server

from tests.fixtures.db import _admin
from tests.fixtures.smtp import ThreadedSMTPServer
from tests.kill_scenario import kill_run


def _postgres(base: str) -> tuple[str, str]:
    from sqlalchemy.engine import make_url

    name = f"campaignbot_kill_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    return make_url(base).set(database=name).render_as_string(hide_password=False), name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--postgres", help="postgresql://... (databases created and dropped)")
    args = parser.parse_args()
    backend = "postgresql" if args.postgres else "sqlite"
    worst = 0
    for run in range(1, args.runs + 1):
        server = ThreadedSMTPServer()
        server.start()
        dropped = None
        try:
            with tempfile.TemporaryDirectory(prefix="kill-run-") as folder:
                if args.postgres:
                    url, dropped = _postgres(args.postgres)
                else:
                    url = f"sqlite:///{folder}/campaignbot.db"
                result = kill_run(
                    server, url, Path(folder), n=args.n, max_connections=args.connections
                )
        finally:
            server.close()
            if dropped is not None:
                asyncio.run(
                    _admin(args.postgres, f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)')
                )
        worst = max(worst, result.duplicates)
        print(
            f"{backend} run {run}: killed after {result.received_at_kill} of {result.subscribers}, "
            f"{result.duplicates} duplicates, {result.lost} lost, "
            f"at most {result.max_concurrent} connections at once",
            flush=True,
        )
    ok = worst <= args.connections
    print(
        f"{backend}: worst {worst} duplicates (bound {args.connections}): {'OK' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
