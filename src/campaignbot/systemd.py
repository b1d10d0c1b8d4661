"""systemd's notify protocol: READY, STOPPING and watchdog pings (`Type=notify`).

The protocol is one datagram per state to the socket named by `$NOTIFY_SOCKET`
(sd_notify(3)); outside systemd the variable is unset and every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

logger = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False when not run under Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket: its name starts with a NUL byte
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as err:
        logger.warning("cannot notify systemd at %s: %s", address, err)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of `$WATCHDOG_USEC` (the ping interval sd_watchdog_enabled(3) advises), or
    None when no watchdog is set for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec), 1) / 2_000_000
    except ValueError:
        return None


async def keep_watchdog_fed(interval_s: float) -> None:
    """Ping the watchdog from the event loop: a blocked loop misses pings, and systemd
    restarts the service, which is what the watchdog is for."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)
