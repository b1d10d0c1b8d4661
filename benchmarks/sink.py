"""What the send benchmarks share: a loopback SMTP sink and the subscribers' mix.

The sink is Postfix's `smtp-sink` (C, event-driven) when installed
(`apt-get install postfix`; the daemon is not needed), else aiosmtpd's Sink handler
in a separate process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

SMTP_SINK = "/usr/sbin/smtp-sink"
#: subscriber i gets LOCALES[i % 3] and ZONES[i % 3]
LOCALES = ("en", "fi", "pl")
ZONES = ("Europe/Helsinki", "Europe/Warsaw", "Europe/Vilnius")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"127.0.0.1:{port}: {name} did not start") from None
            time.sleep(0.05)


def start_sink() -> tuple[subprocess.Popen[bytes], int, str]:
    """Start a sink on a free loopback port: (process, port, its name)."""
    port = free_port()
    if Path(SMTP_SINK).exists():
        command = [SMTP_SINK]
        if os.geteuid() == 0:
            command += ["-u", "postfix"]  # smtp-sink refuses to run as root otherwise
        command += [f"127.0.0.1:{port}", "1000"]
        name = "postfix smtp-sink"
    else:
        command = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
        command += ["-c", "aiosmtpd.handlers.Sink"]
        name = "aiosmtpd Sink"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process, name)
    return process, port, name
