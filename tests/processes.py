"""`campaignbot run` as a child process, for end-to-end tests (one or several at once)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_WARM = False  # once per test session


def warm_up() -> None:
    """Import the service once so the first timed start does not also compile every
    module of a fresh virtualenv to bytecode (seconds on a busy 2-core machine)."""
    global _WARM
    if not _WARM:
        modules = "campaignbot.cli.run, campaignbot.service.runtime, campaignbot.web.app, campaignbot.delivery.sender"
        # write the bytecode even where the environment says not to (this machine's does)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([sys.executable, "-c", f"import {modules}"], check=True, env=env)
        _WARM = True


class RunningBot:
    """One `campaignbot run` process; its stderr is collected line by line."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        warm_up()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "campaignbot", "run"],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, text: str, *, timeout_s: float = 20, count: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(text in line for line in self.lines) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged {count}x; log:\n{self.log}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.proc.stderr.close()
            # pytest shows captured output of failing tests only: the log of every bot
            print(f"--- campaignbot run (pid {self.proc.pid}) ---\n{self.log}")


@contextmanager
def served(argv: list[str], *, cwd: Path, env: dict[str, str], ready_url: str) -> Iterator[None]:
    """Run `argv` (a campaignbot server) until the block ends; enter once `ready_url`
    answers 200 within 30 s, else fail with the process's output."""
    import httpx
    import pytest

    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"{argv[3:]} exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{ready_url} did not answer 200 within 30 s")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
