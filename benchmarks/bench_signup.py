"""Time POST /subscribe for a known (active) and a new address, interleaved in pairs.

Issue 14 (M4): the answer's timing must not tell whether an address is subscribed.
The app runs in-process over httpx's ASGI transport with a fresh SQLite file (and
PostgreSQL when CAMPAIGNBOT_TEST_POSTGRES_URL is set), the sign-up drain turned off so
only the request itself is timed. Prints quartiles per kind and how often the known
address was the slower one of a pair (about half means nothing to see).

    python benchmarks/bench_signup.py [--pairs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from campaignbot.service.runtime import Service
from campaignbot.settings import Settings
from campaignbot.subscribers.model import SubscriberInput
from campaignbot.web.app import create_app

POSTGRES_ENV = "CAMPAIGNBOT_TEST_POSTGRES_URL"


async def measure(database_url: str, pairs: int, var: Path) -> tuple[list[float], list[float]]:
    settings = Settings(
        config=REPO / "config" / "campaign.toml",
        templates=REPO / "templates",
        database_url=database_url,
        maildir=var / "outbox",
        secret_key="benchmark-secret-key-0123456789abcdef",  # type: ignore[arg-type]
        public_url="http://testserver",
        var_dir=var,
    )
    service = Service(settings, clock=lambda: datetime.now(UTC), web=False)
    await service.db.upgrade()
    app = create_app(service.web_context(), subscribe_limit=(10**9, 60.0), drain_signups=False)
    known = [f"known{n}@example.org" for n in range(pairs)]
    for email in known:
        entry = SubscriberInput.create(email, locale="en", timezone="UTC")
        await service.store.add(entry, now=datetime.now(UTC), source="bench")
    times: dict[str, list[float]] = {"known": [], "new": []}
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            page = await c.get("/")
            match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert match
            token = match.group(1)

            async def post(email: str) -> float:
                data = {"csrf_token": token, "email": email, "locale": "en"}
                start = time.perf_counter()
                response = await c.post("/subscribe", data=data)
                elapsed = time.perf_counter() - start
                assert response.status_code == 200, response.status_code
                return elapsed

            for _ in range(5):  # warm up
                await post(f"warm{uuid.uuid4().hex}@example.org")
            for n in range(pairs):
                order = [("known", known[n]), ("new", f"new{n}-{uuid.uuid4().hex}@example.org")]
                if n % 2:
                    order.reverse()
                for kind, email in order:
                    times[kind].append(await post(email))
    finally:
        await service.transport.aclose()
        await service.db.dispose()
    return times["known"], times["new"]


def report(name: str, known: list[float], new: list[float]) -> None:
    def q(values: list[float]) -> str:
        a, b, c = statistics.quantiles(values, n=4)
        return f"{a * 1000:.1f} / {b * 1000:.1f} / {c * 1000:.1f} ms"

    slower = sum(k > n for k, n in zip(known, new, strict=True))
    print(f"{name}: known {q(known)}; new {q(new)}; known slower in {slower} of {len(known)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        var = Path(folder)
        known, new = asyncio.run(measure(f"sqlite:///{var / 'bench.db'}", args.pairs, var))
        report("sqlite", known, new)
        base = os.environ.get(POSTGRES_ENV)
        if base:
            sys.path.insert(0, str(REPO))
            from tests.fixtures.db import _admin  # the tests' create/drop helper

            name = f"campaignbot_bench_{uuid.uuid4().hex[:8]}"
            asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
            try:
                url = base.rsplit("/", 1)[0] + "/" + name
                known, new = asyncio.run(measure(url, args.pairs, var))
                report("postgresql", known, new)
            finally:
                asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
