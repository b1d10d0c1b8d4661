"""XOAUTH2 access tokens from a file or a command, fetched again when the relay says expired.

OAuth access tokens live about an hour. campaignbot does not run the OAuth flow
itself: an operator's tool (oauth2ms, mutt_oauth2.py, a cron job) keeps a fresh
token in a file, or prints one on demand. That is msmtp's `passwordeval` model:
the command runs once, its token is reused by every new session, and only when
the relay rejects it (334 challenge then 535) is it run again.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from campaignbot.errors import DeliveryError

logger = logging.getLogger(__name__)

#: a token command that hangs must not hold a connection slot forever
COMMAND_TIMEOUT_S = 30.0


class TokenSource:
    """The current access token; `refresh()` after the relay has refused it."""

    def __init__(self, *, file: Path | None = None, command: str | None = None) -> None:
        if (file is None) == (command is None):
            raise ValueError("exactly one of file and command")
        self._file = file
        self._command = command
        self._token: str | None = None
        self._lock = asyncio.Lock()  # concurrent sessions share one command run
        #: how often the token was fetched (the command run or the file read)
        self.fetches = 0

    async def token(self) -> str:
        """The cached token, fetched the first time."""
        async with self._lock:
            if self._token is None:
                self._token = await self._fetch()
            return self._token

    async def refresh(self, rejected: str) -> str:
        """Fetch a new token unless another session already replaced `rejected`."""
        async with self._lock:
            if self._token is None or self._token == rejected:
                logger.info(
                    "XOAUTH2 token rejected by the relay: fetching a new one",
                    extra={"action": "oauth_token_refresh"},
                )
                self._token = await self._fetch()
            return self._token

    async def _fetch(self) -> str:
        self.fetches += 1
        if self._file is not None:
            try:
                text = await asyncio.to_thread(self._file.read_text, encoding="utf-8")
            except OSError as err:
                raise DeliveryError(
                    f"CAMPAIGNBOT_SMTP__OAUTH_TOKEN_FILE {self._file}: cannot read: {err}"
                ) from err
            where = f"CAMPAIGNBOT_SMTP__OAUTH_TOKEN_FILE {self._file}"
        else:
            assert self._command is not None
            text = await _run(self._command)
            where = "CAMPAIGNBOT_SMTP__OAUTH_TOKEN_COMMAND"
        token = text.strip()
        if not token or any(c.isspace() for c in token):
            raise DeliveryError(f"{where}: expected one access token, got {len(text)} characters")
        return token


async def _run(command: str) -> str:
    """Run the token command through the shell (like passwordeval); its stdout is the token."""
    what = "CAMPAIGNBOT_SMTP__OAUTH_TOKEN_COMMAND"
    process = await asyncio.create_subprocess_shell(
        command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    except TimeoutError as timeout:
        process.kill()
        await process.wait()
        raise DeliveryError(f"{what}: no token after {COMMAND_TIMEOUT_S:g} s") from timeout
    if process.returncode != 0:
        # stderr, not stdout: stdout might hold a partial secret
        detail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise DeliveryError(f"{what}: exited with {process.returncode}: {detail[0]}")
    return out.decode(errors="replace")
