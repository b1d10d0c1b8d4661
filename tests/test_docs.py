"""Every command has help text and is documented in the README (as sqlite-utils does)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

import campaignbot.cli  # noqa: F401  (registers every command)
from campaignbot.cli.common import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix}{name} "))
    return found


COMMANDS = _commands(cli)


def test_the_spec_commands_exist() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"check", "plan", "preview", "send", "run", "status", "subscribers"} <= names


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_command_has_help_and_is_in_the_readme(name: str, command: click.Command) -> None:
    assert command.help and command.help.strip(), f"{name} has no help text"
    top = name.split()[0]
    assert f"campaignbot {top}" in README, f"`campaignbot {top}` is not in the README"


def test_readme_lists_every_setting() -> None:
    from campaignbot.settings import Settings, SMTPSettings

    variables = [
        f"CAMPAIGNBOT_{n.upper()}" for n in Settings.model_fields if n not in ("smtp", "http")
    ]
    variables += [f"__{n.upper()}" for n in SMTPSettings.model_fields]
    missing = [v for v in variables if v not in README]
    assert not missing, missing
