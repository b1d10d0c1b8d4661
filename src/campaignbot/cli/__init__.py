"""The `campaignbot` command line: one module per command group."""

from __future__ import annotations

import sys

from campaignbot.cli.common import EXIT_FAILURE, cli, err_console

# Each import registers its commands on `cli`.
from campaignbot.cli import admin, bounces, check, db, plan, preview  # noqa: F401  # isort: skip
from campaignbot.cli import run, send, status, subscribers, web  # noqa: F401  # isort: skip
from campaignbot.cli import init  # noqa: F401  # isort: skip
from campaignbot.cli import suppress  # noqa: F401  # isort: skip


def debug_first(args: list[str]) -> list[str]:
    """`campaignbot check --debug` works like `campaignbot --debug check`: the flag is
    global, but people type it at the end."""
    if "--debug" in args[1:] and "--" not in args:
        return ["--debug", *(arg for arg in args if arg != "--debug")]
    return args


def main() -> None:
    """Console-script entry point."""
    try:
        cli(args=debug_first(sys.argv[1:]), prog_name="campaignbot")
    except Exception as err:  # a bug: still one line, unless --debug asks for the traceback
        if "--debug" in sys.argv[1:]:
            raise
        err_console.print(
            f"error: internal error: {type(err).__name__}: {err}", markup=False, highlight=False
        )
        err_console.print("hint: run again with --debug for the traceback", markup=False)
        sys.exit(EXIT_FAILURE)
