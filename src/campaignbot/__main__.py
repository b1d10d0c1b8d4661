"""Allow `python -m campaignbot`."""

from __future__ import annotations

from campaignbot.cli import main

main()
