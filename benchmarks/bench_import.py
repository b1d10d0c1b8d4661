"""Time `campaignbot subscribers import` on a generated CSV (default 100,000 rows).

Runs the real command in a subprocess against a fresh SQLite file and, when
CAMPAIGNBOT_TEST_POSTGRES_URL is set, against a PostgreSQL database it creates and
drops. Each backend imports the file twice: the first run adds every row, the second
must find every row unchanged. Prints rows/s, seconds and the peak RSS of each child (its own rusage, from wait4).

    python benchmarks/bench_import.py [--rows N] [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "campaign.toml"
POSTGRES_ENV = "CAMPAIGNBOT_TEST_POSTGRES_URL"

LOCALES = ["", "en", "fi", "pl", "sv", "et", "lt", "lv", "de"]
ZONES = ["", "Europe/Helsinki", "Europe/Warsaw", "Europe/Vilnius", "Europe/Riga", "UTC"]
COUNTRIES = ["FI", "PL", "LT", "LV", "EE", "SE", "DE"]
TOPICS = ["mine-ban-treaty", "cluster-munitions", "elections"]
FIRST = ["Anna", "Jan", "Mikko", "Aino", "Ona", "Jānis", "Kasia", "Piotr", "Liisa", "Tõnu"]
DOMAINS = ["example.org", "example.fi", "example.pl", "przykład.pl", "example.lt"]


def write_csv(path: Path, rows: int, seed: int) -> None:
    """`rows` distinct subscribers, reproducible from `seed`."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "name", "locale", "timezone", "countries", "topics"])
        for i in range(rows):
            first = rng.choice(FIRST)
            countries = rng.sample(COUNTRIES, rng.choice([0, 0, 1, 1, 2]))
            topics = rng.sample(TOPICS, rng.choice([0, 1, 1, 2]))
            writer.writerow(
                [
                    f"{first.lower()}.{i}@{rng.choice(DOMAINS)}",
                    f"{first} {rng.choice(FIRST)}son",
                    rng.choice(LOCALES),
                    rng.choice(ZONES),
                    ";".join(countries),
                    ";".join(topics),
                ]
            )


def campaignbot() -> list[str]:
    exe = Path(sys.executable).with_name("campaignbot")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "campaignbot"]


def run_import(csv_path: Path, database_url: str, workdir: Path) -> tuple[float, float, str]:
    """Seconds, peak RSS in MiB and the summary line of one import in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNBOT_")}
    env.update(CAMPAIGNBOT_CONFIG=str(CONFIG), CAMPAIGNBOT_DATABASE_URL=database_url)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            [*campaignbot(), "subscribers", "import", str(csv_path)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=err,
        )
        # wait4 gives this child's own rusage; getrusage(RUSAGE_CHILDREN) would report
        # the largest child so far
        _pid, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"import failed ({child.returncode}):\n{err.read()}")
        summary = out.read().strip().rsplit(": ", 1)[-1]
    return seconds, usage.ru_maxrss / 1024, summary  # ru_maxrss is in KiB on Linux


async def _admin(url: str, sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def postgres_database(base: str) -> Iterator[str]:
    from sqlalchemy.engine import make_url

    name = f"campaignbot_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def bench(label: str, csv_path: Path, url: str, rows: int, workdir: Path) -> None:
    for attempt in ("first import", "re-import"):
        seconds, rss_mib, summary = run_import(csv_path, url, workdir)
        print(
            f"{label:9} {attempt:12} {rows:>7} rows {seconds:6.2f} s "
            f"{rows / seconds:>7,.0f} rows/s  peak RSS {rss_mib:5.1f} MiB  ({summary})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20251)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="campaignbot-bench-") as tmp:
        workdir = Path(tmp)
        csv_path = workdir / "subscribers.csv"
        write_csv(csv_path, args.rows, args.seed)
        size_mib = csv_path.stat().st_size / 2**20
        print(f"{csv_path.name}: {args.rows} rows, {size_mib:.1f} MiB, seed {args.seed}")
        bench("sqlite", csv_path, f"sqlite:///{workdir / 'bench.db'}", args.rows, workdir)
        base = os.environ.get(POSTGRES_ENV)
        if base:
            with postgres_database(base) as url:
                bench("postgres", csv_path, url, args.rows, workdir)
        else:
            print(f"postgres: skipped ({POSTGRES_ENV} is not set)")


if __name__ == "__main__":
    main()
